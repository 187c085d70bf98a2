"""Every command with missing, wrong and hostile arguments, as root and as a user without
privileges: the contract's exit code (2 usage or config, 1 runtime), never a traceback, and one
line on stderr that names the problem and what to do about it.

The unprivileged user is ``nobody`` where the interpreter is reachable by others; elsewhere it is
root without the capabilities that let it ignore file modes (which is what matters here: another
user's files and folders refuse it). Nothing here starts a daemon that gets ready: every ``run``
case is refused before the converter starts.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sir_convert_a_lot.config.sections import PATH_KEYS
from tests.daemon import can_obey_permissions, drop_permission_override
from tests.helpers import REPO, VENV_BIN, config_document, make_pdf

OTHER_UID = 4242  # owns the spool and a few files: "the service user", not the caller
NOBODY = 65534
AS_ROOT = os.geteuid() == 0


def _reachable_by_others(path: Path) -> bool:
    """Whether a user outside root's group could execute ``path`` (every folder above it
    searchable by others, the file executable by others)."""
    real = Path(os.path.realpath(path))
    folders_ok = all(os.stat(p).st_mode & stat.S_IXOTH for p in real.parents)
    return folders_ok and bool(os.stat(real).st_mode & stat.S_IXOTH)


def _become_unprivileged() -> None:
    """Runs in the child before exec."""
    if _reachable_by_others(VENV_BIN / "python"):
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    else:
        drop_permission_override()


USERS = ["root", "user"]


def _skip_user_reason() -> str | None:
    if not AS_ROOT:
        return "needs root to act as another user and to give files to another owner"
    if not (_reachable_by_others(VENV_BIN / "python") or can_obey_permissions()):
        return "neither nobody can run the interpreter nor can root drop its overrides"
    return None


@dataclass(frozen=True)
class Expect:
    """The exit code, and words of the problem and of the fix that the stderr line holds."""

    code: int
    problem: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    root: Expect | None  # None: not a failure as root (it would really do the work)
    user: Expect | None = None  # None: the same as root

    def expect(self, who: str) -> Expect | None:
        return self.root if who == "root" or self.user is None else self.user


def _write(path: Path, data: str | bytes, mode: int = 0o644, owner: int | None = None) -> None:
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    path.chmod(mode)
    if owner is not None and AS_ROOT:
        os.chown(path, owner, owner)


def _config(base: Path, name: str, **sections: dict[str, Any]) -> None:
    _write(base / name, tomli_w.dumps(config_document(base, **sections)))


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A spool set up as the daemon leaves it, plus every kind of wrong argument."""
    with tempfile.TemporaryDirectory(prefix="sca-cli-") as name:
        base = Path(name)
        base.chmod(0o755)  # nobody must reach the configs in it
        for folder in ("inbox", "outbox", "state", "failed", "archive", "folder", "models"):
            (base / folder).mkdir()
        if AS_ROOT:  # the state folder belongs to the service user alone
            os.chown(base / "state", OTHER_UID, OTHER_UID)
            (base / "state").chmod(0o700)
            (base / "locked").mkdir()
            os.chown(base / "locked", OTHER_UID, OTHER_UID)
        _config(base, "config.toml")
        _config(base, "unknown.toml", watch={"bogus_key": 1})
        _config(base, "wrongtype.toml", watch={"stability_seconds": "soon"})
        _config(
            base,
            "docling.toml",
            conversion={"backend_strategy": "docling"},
            gpu={"models_path": str(base / "models")},
        )
        mount = {k: str(base / "mnt" / k) for k in ("inbox", "outbox", "state")}
        _config(base, "share.toml", paths=mount, watch={"sentinel": ".sir-convert-share"})
        fresh = {k: str(base / "fresh" / k) for k in PATH_KEYS}  # none of them made
        _config(base, "fresh.toml", paths=fresh)
        _config(base, "nomodels.toml", gpu={"models_path": "/proc/nope/models"})
        _write(base / "bad.toml", "[watch\nmode = \n")
        _write(base / "latin1.toml", b"# caf\xe9\n")
        _write(base / "private.toml", (base / "config.toml").read_text(), 0o600, OTHER_UID)
        make_pdf(base / "a.pdf")
        _write(base / "other.pdf", (base / "a.pdf").read_bytes(), 0o600, OTHER_UID)
        os.mkfifo(base / "fifo.pdf")
        (base / "link.pdf").symlink_to(base / "a.pdf")
        _write(base / "plain", "not a folder\n")
        yield base


def _run(world: Path, argv: tuple[str, ...], who: str) -> subprocess.CompletedProcess[str]:
    args = [str(VENV_BIN / "sir-convert"), *(a.format(w=world) for a in argv)]
    try:
        return subprocess.run(
            args,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            preexec_fn=_become_unprivileged if who == "user" else None,
        )
    except subprocess.TimeoutExpired:
        # A refusal is immediate: a command still going after this long did the work instead.
        return subprocess.CompletedProcess(args, -9, "", "still running after 30 s\n")


CFG = ("--config", "{w}/config.toml")
USAGE_HELP = "--help"
DENIED = Expect(1, "permission denied", "service user")

CASES: dict[str, Case] = {
    # --config: missing, a folder, unreadable, not TOML, not UTF-8, an unknown key, a wrong type
    "config-missing": Case(
        ("--config", "{w}/nope.toml", "status"), Expect(2, "not found", "init-config")
    ),
    "config-folder": Case(
        ("--config", "{w}/folder", "status"), Expect(2, "is a folder", "name the file")
    ),
    "config-unreadable": Case(
        ("--config", "{w}/private.toml", "retry", "x.pdf"),
        Expect(1, "no failed file matches", "sir-convert status"),
        Expect(2, "may not read the config", "run as a user who may"),
    ),
    "config-not-toml": Case(
        ("--config", "{w}/bad.toml", "doctor", "--quick"),
        Expect(2, "not valid TOML", "fix the syntax"),
    ),
    "config-not-utf8": Case(
        ("--config", "{w}/latin1.toml", "status"), Expect(2, "not UTF-8", "save it as UTF-8")
    ),
    "config-unknown-key": Case(
        ("--config", "{w}/unknown.toml", "run"), Expect(2, "watch.bogus_key: unknown key", "remove")
    ),
    "config-wrong-type": Case(
        ("--config", "{w}/wrongtype.toml", "convert", "{w}/a.pdf"),
        Expect(2, "watch.stability_seconds", "expected"),
    ),
    # convert: a missing file, a folder, a FIFO, a symlink, another user's file, bad --out
    "convert-missing": Case(
        (*CFG, "convert", "{w}/missing.pdf"), Expect(2, "no such file", "check the name")
    ),
    "convert-folder": Case(
        (*CFG, "convert", "{w}/folder"), Expect(2, "is a folder", "name the PDF files")
    ),
    "convert-fifo": Case(
        (*CFG, "convert", "{w}/fifo.pdf"), Expect(2, "named pipe", "save the PDF to a file")
    ),
    "convert-symlink": Case(
        (*CFG, "convert", "{w}/link.pdf"), Expect(2, "symbolic link", "name the file itself")
    ),
    "convert-unreadable": Case(
        (*CFG, "convert", "{w}/other.pdf"),
        None,
        Expect(1, "may not read it", "make it readable"),
    ),
    "convert-out-unwritable": Case(
        (*CFG, "convert", "{w}/a.pdf", "--out", "{w}/locked/results"),
        None,
        Expect(1, "may not create", "choose a folder you may write"),
    ),
    "convert-out-a-file": Case(
        (*CFG, "convert", "{w}/a.pdf", "--out", "{w}/plain"),
        Expect(2, "is not a folder", "choose a folder"),
    ),
    "convert-no-file": Case((*CFG, "convert"), Expect(2, "required: FILE", USAGE_HELP)),
    # retry
    "retry-unknown-name": Case(
        (*CFG, "retry", "never-failed.pdf"),
        Expect(1, "no failed file matches never-failed.pdf", "sir-convert status"),
        DENIED,
    ),
    "retry-nothing-named": Case((*CFG, "retry"), Expect(2, "name the failed files", "--all")),
    "retry-unknown-code": Case(
        (*CFG, "retry", "--code", "bogus"), Expect(2, "invalid choice: 'bogus'", USAGE_HELP)
    ),
    # init-config
    "init-config-missing-folder": Case(
        ("init-config", "--output", "{w}/locked/new/config.toml"),
        None,
        Expect(1, "cannot write", "--output"),
    ),
    "init-config-unwritable-folder": Case(
        ("init-config", "--output", "{w}/locked/config.toml"),
        None,
        Expect(1, "cannot write", "--output"),
    ),
    "init-config-existing": Case(
        ("init-config", "--output", "{w}/config.toml"), Expect(2, "exists", "--force")
    ),
    "init-config-folder": Case(
        ("init-config", "--output", "{w}/folder"), Expect(2, "is a folder", "--output")
    ),
    # models
    "models-check-empty": Case(
        ("--config", "{w}/docling.toml", "models", "check"),
        Expect(1, "missing under gpu.models_path", "models download"),
    ),
    "models-download-unusable-folder": Case(
        ("--config", "{w}/nomodels.toml", "models", "download"),
        Expect(1, "the models into /proc/nope/models", "runuser -u sir-convert -- sir-convert"),
    ),
    "models-no-action": Case((*CFG, "models"), Expect(2, "required: ACTION", USAGE_HELP)),
    "models-unknown-action": Case((*CFG, "models", "fetch"), Expect(2, "invalid choice", "--help")),
    # unknown commands and options
    "unknown-command": Case((*CFG, "frobnicate"), Expect(2, "invalid choice", USAGE_HELP)),
    "unknown-option": Case((*CFG, "status", "--verbose"), Expect(2, "unrecognized", USAGE_HELP)),
    "no-command": Case(CFG, Expect(2, "required: COMMAND", USAGE_HELP)),
    "mistyped-option-no-command": Case(  # named, not "COMMAND is required"
        ("--versoin",), Expect(2, "unrecognized arguments: --versoin", USAGE_HELP)
    ),
    "gpu-not-a-number": Case((*CFG, "run", "--gpu", "one"), Expect(2, "invalid int", USAGE_HELP)),
    "gpu-negative": Case((*CFG, "run", "--gpu", "-1"), Expect(2, "--gpu", "0 or more")),
    # run --instance: the name becomes file names in the state folder
    "instance-path": Case(
        (*CFG, "run", "--instance", "../../etc/x"), Expect(2, "--instance", "letters, digits")
    ),
    "instance-empty": Case(
        (*CFG, "run", "--instance", ""), Expect(2, "--instance", "letters, digits")
    ),
    "instance-long": Case((*CFG, "run", "--instance", "g" * 101), Expect(2, "--instance", "100")),
    # run with the share not mounted: refused before anything is created
    "run-share-missing": Case(
        ("--config", "{w}/share.toml", "run"), Expect(1, "share_missing", "mount it")
    ),
    # doctor and status on a spool this user may not read
    "doctor-problems": Case(
        ("--config", "{w}/share.toml", "doctor", "--quick"), Expect(1, "problem", "fix")
    ),
    "status-spool": Case((*CFG, "status"), None, Expect(1, "cannot read", "service user")),
    # a fresh config (init-config) whose folders do not exist yet
    "status-json-folders-missing": Case(
        ("--config", "{w}/fresh.toml", "status", "--json"),
        Expect(1, "paths.inbox {w}/fresh/inbox is missing", "create it or mount"),
    ),
    "doctor-json-folders-missing": Case(
        ("--config", "{w}/fresh.toml", "doctor", "--json"),
        Expect(1, "first paths.inbox: {w}/fresh/inbox does not exist", "says its fix"),
    ),
}


def _skip_reason(name: str, who: str) -> str | None:
    if who == "user" and (reason := _skip_user_reason()):
        return reason
    if CASES[name].expect(who) is None:
        return "not a failure for this user: the command would do its work"
    return None


@pytest.fixture(scope="module")
def results(world: Path) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every case's command, run a few at a time: each spends most of its time starting
    Python, and no case changes the world (each is refused before it does anything)."""
    wanted = [(n, w) for n in CASES for w in USERS if _skip_reason(n, w) is None]
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda key: _run(world, CASES[key[0]].argv, key[1]), wanted)
        return dict(zip(wanted, done, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("name", list(CASES))
def test_a_wrong_argument_gets_its_exit_code_and_one_line_with_the_fix(
    results: dict[tuple[str, str], subprocess.CompletedProcess[str]],
    world: Path,
    name: str,
    who: str,
) -> None:
    if reason := _skip_reason(name, who):
        pytest.skip(reason)
    expect = CASES[name].expect(who)
    assert expect is not None
    result = results[(name, who)]
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == expect.code, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    problem, fix = (words.format(w=world) for words in (expect.problem, expect.fix))
    assert problem in lines[0] and fix in lines[0], shown
    if name == "run-share-missing":
        assert not (world / "mnt").exists(), "created folders on the empty mount point"


def test_version_names_the_installed_version_and_the_build(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sir_convert_a_lot
    from sir_convert_a_lot.ops.cli import main
    from sir_convert_a_lot.versions import build_id

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    version = sir_convert_a_lot.__version__
    assert version and version != "0.0.0+unknown"  # the installed package's, read lazily
    assert capsys.readouterr().out == f"sir-convert {version} (build {build_id()})\n"
    with pytest.raises(AttributeError, match="no attribute 'version'"):
        sir_convert_a_lot.version  # noqa: B018 - only __version__ is worked out on demand
