"""``sir-convert retry``: what ``--all``, ``--code`` and ``--include-permanent`` move back into
the inbox, what they leave in ``failed/``, and that every decision is printed with its reason."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.folders import prepare
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.sharefs import file_id
from tests.helpers import files_under, load_config, make_pdf, write_config

FAILURES = {
    "crashed.pdf": "worker_crashed",  # retryable
    "nogpu.pdf": "gpu_not_available",  # retryable
    "broken.pdf": "pdf_unreadable",  # permanent
    "locked.pdf": "pdf_encrypted",  # permanent
}


def _failed(tmp_path: Path) -> tuple[Path, Config]:
    """A spool with one real failure per entry of FAILURES, each in failed/ with its record."""
    config_path = write_config(tmp_path)
    config = load_config(tmp_path)
    prepare(config.paths)
    spool = Spool(config.paths, "test-instance")
    spool.ensure_layout()
    for name, code in FAILURES.items():
        seen = file_id(make_pdf(config.paths.inbox / "team" / name).stat())
        job = spool.claims.claim(f"team/{name}", None, ConversionOptions(), 1, 1, seen)
        assert job is not None
        spool.disposal.fail(job, {"code": code, "message": "test"}, None)
    assert len(files_under(config.paths.failed)) == len(FAILURES)
    return config_path, config


def _retry(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--config", str(config), "retry", *args])
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_all_alone_moves_only_retryable_failures_and_says_why_it_skips_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, config = _failed(tmp_path)

    code, out = _retry(config_path, capsys, "--all")

    assert code == 0, out
    assert sorted(files_under(config.paths.inbox)) == ["team/crashed.pdf", "team/nogpu.pdf"]
    assert sorted(files_under(config.paths.failed)) == ["team/broken.pdf", "team/locked.pdf"]
    assert "team/broken.pdf: skipped: pdf_unreadable is permanent" in out
    assert "team/locked.pdf: skipped: pdf_encrypted is permanent" in out
    assert "--include-permanent" in out
    assert "team/crashed.pdf: back in the inbox as team/crashed.pdf" in out
    assert out.rstrip().endswith("moved 2, skipped 2, not retried 0")
    # the skipped stay retryable later: their records are kept
    code, out = _retry(config_path, capsys, "--all", "--include-permanent")
    assert code == 0, out
    assert files_under(config.paths.failed) == []
    assert out.rstrip().endswith("moved 2, skipped 0, not retried 0")


@pytest.mark.parametrize(
    ("codes", "moved"),
    [
        (["pdf_unreadable"], ["team/broken.pdf"]),
        (["pdf_unreadable", "worker_crashed"], ["team/broken.pdf", "team/crashed.pdf"]),
        (["too_many_pages"], []),
    ],
)
def test_code_moves_exactly_the_failures_with_those_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codes: list[str], moved: list[str]
) -> None:
    config_path, config = _failed(tmp_path)

    code, out = _retry(config_path, capsys, *[arg for c in codes for arg in ("--code", c)])

    assert code == 0, out
    assert sorted(files_under(config.paths.inbox)) == moved
    assert len(files_under(config.paths.failed)) == len(FAILURES) - len(moved)
    assert "skipped" not in out.replace("skipped 0", "")


def test_a_name_retries_a_permanent_failure_as_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, config = _failed(tmp_path)

    code, out = _retry(config_path, capsys, "broken.pdf")

    assert code == 0, out
    assert files_under(config.paths.inbox) == ["team/broken.pdf"]


@pytest.mark.parametrize(
    "args", [["--code", "no_such_code"], [], ["--include-permanent"], ["--code"]]
)
def test_bad_retry_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    config_path, config = _failed(tmp_path)

    try:
        code = main(["--config", str(config_path), "retry", *args])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)

    assert code == 2
    assert capsys.readouterr().err.strip()
    assert len(files_under(config.paths.failed)) == len(FAILURES)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_folders_retry_makes_in_the_inbox_belong_to_the_inboxs_owner_and_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, config = _failed(tmp_path)
    (config.paths.inbox / "team").rmdir()
    os.chown(config.paths.inbox, 65534, 4242)
    config.paths.inbox.chmod(0o2775)

    code, out = _retry(config_path, capsys, "crashed.pdf")

    assert code == 0, out
    made = os.stat(config.paths.inbox / "team")
    assert (made.st_uid, made.st_gid, stat.S_IMODE(made.st_mode)) == (65534, 4242, 0o2775)


@pytest.mark.skipif(os.geteuid() != 0, reason="root's retry is the case: it must not follow")
def test_roots_retry_refuses_an_inbox_folder_swapped_for_a_link_and_moves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, config = _failed(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (config.paths.inbox / "team").rmdir()
    (config.paths.inbox / "team").symlink_to(elsewhere, target_is_directory=True)

    code, out = _retry(config_path, capsys, "crashed.pdf")

    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("team/crashed.pdf")]
    assert (
        "refused: in the inbox" in line and "symbolic link" in line and "nothing was moved" in line
    )
    assert list(elsewhere.iterdir()) == []
    assert len(files_under(config.paths.failed)) == len(FAILURES)


_AS_SHARE_USER = """
import os, sys
from sir_convert_a_lot.ops.cli import main
# Everything imported while still root: the interpreter's own files may be root's alone.
import secrets, tomllib, binascii, json, hashlib, socket, shutil  # shutil: argparse, lazily
import sir_convert_a_lot.ops.retry, sir_convert_a_lot.ops.commands.retry, sir_convert_a_lot.config
os.setgroups([4242]); os.setgid(4242); os.setuid(65534)
sys.exit(main(["--config", sys.argv[1], "retry", "--all"]))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a share-group member")
def test_a_share_group_member_may_not_retry_and_nothing_moves(
    request: pytest.FixtureRequest,
) -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="sca-retry-"))
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    root.chmod(0o755)
    config_path, config = _failed(root)
    config_path.chmod(0o644)
    for folder in (config.paths.state, config.paths.state / "failures"):
        os.chown(folder, 0, 4242)  # the group may read what failed, as status needs
        folder.chmod(0o750)

    done = subprocess.run(
        [sys.executable, "-c", _AS_SHARE_USER, str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "retry runs as root or as the service user" in done.stderr
    assert "nothing was moved" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert len(files_under(config.paths.failed)) == len(FAILURES)
    assert files_under(config.paths.inbox) == []
