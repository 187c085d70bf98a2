"""paths.state belongs to the service user alone, whatever the umask, and no path read from it
is used before it is proven to lie inside its folder (issue 12: a share user forged a failure
record and root's ``retry`` moved a private file into the share)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import prepare
from sir_convert_a_lot.fsutil import OutsideFolder, write_json_atomic
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.spool import RECORD, SOURCE, Spool
from sir_convert_a_lot.ops import doctor
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.sharefs import file_id
from tests.daemon import Daemon
from tests.helpers import files_under, load_config, make_pdf, wait_for, write_config

SHARE_UID = 65534  # "nobody": a share user
SHARE_GID = 4242  # the share group; it need not exist in /etc/group
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")
WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH


@pytest.fixture
def share() -> Iterator[Path]:
    """A folder the share user can reach (pytest's own tmp folders are 0700): setgid, owned
    by root and the share group, group-writable, as a Samba share root is."""
    base = Path(tempfile.mkdtemp(prefix="sca-share-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "share"
    root.mkdir()
    if os.geteuid() == 0:
        os.chown(root, 0, SHARE_GID)
    root.chmod(0o2775)
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _share_user_writes(folders: list[Path]) -> dict[str, str]:
    """Try to create a file in each folder as the share user (uid nobody, in the share group),
    in a forked child (no interpreter to exec that the user may not be able to reach)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome: dict[str, str] = {}
        try:
            os.setgroups([SHARE_GID])
            os.setgid(SHARE_GID)
            os.setuid(SHARE_UID)
            for folder in folders:
                try:
                    fd = os.open(folder / ".forged-probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                except OSError as exc:
                    outcome[str(folder)] = type(exc).__name__
                else:
                    os.close(fd)
                    outcome[str(folder)] = "written"
            os.write(write_end, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, str] = json.loads(data)
    return result


def _modes(root: Path) -> dict[str, int]:
    """Every folder and spool-written file under ``root`` with its permission bits."""
    found = {}
    for top, folders, files in os.walk(root):
        for name in [*folders, *files]:
            path = Path(top) / name
            if name == SOURCE:  # a claimed original keeps the mode its writer gave it
                continue
            with contextlib.suppress(FileNotFoundError):  # a job that finished meanwhile
                found[str(path.relative_to(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    found["."] = stat.S_IMODE(os.lstat(root).st_mode)
    return found


def _umask_0002() -> None:
    os.umask(0o002)  # the unit's UMask=, so that share users can use what the daemon creates


# -- the state folder is the daemon's alone ------------------------------------------------------


@pytest.mark.slow
@AS_ROOT
def test_a_daemon_under_umask_0002_keeps_the_share_group_out_of_its_state(share: Path) -> None:
    config = write_config(share)
    # A state folder left from before: created under UMask=0002 in the setgid share folder.
    for folder in (share / "state", share / "state" / "failures"):
        folder.mkdir(mode=0o2775)
        os.chown(folder, 0, SHARE_GID)
        folder.chmod(0o2775)
    daemon = Daemon(config, quick=True)
    daemon.preexec = _umask_0002
    with daemon.start():
        fixed = daemon.wait_event("state_permissions_fixed")[0]
        assert str(share / "state") in fixed["folders"]
        make_pdf(share / "inbox" / "good.pdf")
        (share / "inbox" / "bad.pdf").write_bytes(b"not a pdf")
        wait_for(lambda: (share / "outbox" / "bad.error.json").exists(), timeout=60)
        wait_for(lambda: (share / "outbox" / "good.json").exists(), timeout=60)
        state = share / "state"
        modes = _modes(state)
        assert "failures" in modes and "instances/test-instance.lease" in modes
        assert {p: oct(m) for p, m in modes.items() if m & WRITE_BITS} == {}
        # the spool's own folders (a job's folder may come and go meanwhile)
        folders = [Path(top) for top, _d, _f in os.walk(state) if "job_" not in top]
        assert len(folders) == 8, folders
        attempts = _share_user_writes([share / "inbox", *folders])
        assert attempts.pop(str(share / "inbox")) == "written"  # the share itself works
        assert set(attempts.values()) == {"PermissionError"}, attempts
        assert daemon.terminate() == 0


def test_every_folder_and_record_the_spool_creates_is_private_under_umask_0002(
    tmp_path: Path,
) -> None:
    config = load_config(tmp_path)
    old = os.umask(0o002)
    try:
        prepare(config.paths)
        spool = Spool(config.paths, "test-instance")
        spool.ensure_layout()
        seen = file_id(make_pdf(config.paths.inbox / "team" / "a.pdf").stat())
        job = spool.claims.claim("team/a.pdf", None, ConversionOptions(), 1, 1, seen)
        assert job is not None
        assert spool.reservations.reserve("team", "a", job.job_id)
        spool.instances.heartbeat({"state": "idle"})
        spool.disposal.fail(job, {"code": "pdf_unreadable", "message": "x"}, None)
    finally:
        os.umask(old)
    modes = _modes(config.paths.state)
    assert len(modes) >= 8
    assert {p: oct(m) for p, m in modes.items() if m & WRITE_BITS} == {}


def test_the_start_fixes_a_group_writable_state_and_refuses_one_owned_by_another_user(
    tmp_path: Path,
) -> None:
    config = load_config(tmp_path)
    claimed = config.paths.state / "claimed" / "other"
    claimed.mkdir(parents=True)
    for folder in (config.paths.state, claimed):
        folder.chmod(0o2777)
    record = config.paths.state / "failures" / "job_1.json"
    record.parent.mkdir(mode=0o755)
    record.write_text("{}")
    record.chmod(0o666)
    original = claimed / "job_2" / SOURCE  # the user's file keeps its mode and owner
    original.parent.mkdir(mode=0o755)
    original.write_bytes(b"%PDF")
    original.chmod(0o664)

    fixed = prepare(config.paths)

    assert set(fixed) == {config.paths.state.resolve(), claimed.resolve(), record.resolve()}
    assert stat.S_IMODE(os.stat(claimed).st_mode) == 0o2755
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(original).st_mode) == 0o664
    if os.geteuid() == 0:
        os.chown(original, SHARE_UID, SHARE_GID)
        prepare(config.paths)
        for planted in (record, claimed):
            os.chown(planted, SHARE_UID, SHARE_GID)
            with pytest.raises(ConfigError, match=r"^paths\.state: .*owned by uid 65534.*chown"):
                prepare(config.paths)
            os.chown(planted, 0, 0)


def test_doctor_fails_a_state_folder_others_may_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(tmp_path)
    prepare(config.paths)
    (config.paths.state / "failures").mkdir()
    (config.paths.state / "failures").chmod(0o775)

    checks = doctor.run_checks(config, {}, deep_gpu=False)

    row = next(c for c in checks if c.name == "state permissions")
    assert row.status == doctor.FAIL
    assert "failures is writable by group or others" in row.detail
    assert row.fix.startswith(f"chmod -R go-w {config.paths.state}")
    (config.paths.state / "failures").chmod(0o755)
    checks = doctor.run_checks(config, {}, deep_gpu=False)
    assert next(c for c in checks if c.name == "state permissions").status == doctor.OK


# -- no path from a record leaves its folder ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("relative_path_b64", "/etc/cron.d/evil.pdf"),
        ("relative_path_b64", "../outside.pdf"),
        ("output_stem_b64", "../../etc/evil"),
    ],
)
def test_a_forged_job_record_is_quarantined_and_never_followed(
    tmp_path: Path, key: str, value: str
) -> None:
    config = load_config(tmp_path)
    prepare(config.paths)
    spool = Spool(config.paths, "test-instance")
    spool.ensure_layout()
    seen = file_id(make_pdf(config.paths.inbox / "a.pdf").stat())
    job = spool.claims.claim("a.pdf", None, ConversionOptions(), 1, 1, seen)
    assert job is not None
    folder = spool.job_folder(job)
    record = json.loads((folder / RECORD).read_text())
    record[key] = base64.b64encode(value.encode()).decode()
    write_json_atomic(folder / RECORD, record)

    assert spool.records.recover() == []

    assert files_under(config.paths.failed) == [f"_unrecoverable/{job.job_id}.bin"]
    assert not (tmp_path.parent / "outside.pdf").exists()
    with pytest.raises(OutsideFolder):
        Job.from_record(record)


def _plant_failure(paths: Paths, name: str, failed_path: str, relative: str = "x.pdf") -> Path:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    record = {
        "job_id": name,
        "relative_path": relative,
        "relative_path_b64": b64(relative),
        "failed_path_b64": b64(failed_path),
        "code": "worker_crashed",
        "message": "forged",
        "failed_at": 1.0,
    }
    path = paths.state / "failures" / f"{name}.json"
    write_json_atomic(path, record)
    return path


@pytest.mark.slow
@AS_ROOT
def test_retry_refuses_forged_failure_records_and_moves_nothing(
    share: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(share)
    paths = load_config(share).paths
    prepare(paths)
    Spool(paths, "test-instance").ensure_layout()
    private = share.parent / "root-only"
    private.mkdir(mode=0o700)
    secret = private / "secret.pdf"
    secret.write_bytes(b"%PDF-1.4 private")
    secret.chmod(0o600)
    # The attack of issue 12: the share user cannot even write the forged record now ...
    attempt = _share_user_writes([paths.state / "failures"])
    assert attempt == {str(paths.state / "failures"): "PermissionError"}
    # ... and records that are there anyway (from before the fix) are proven before any move.
    (paths.failed / "team").mkdir()
    (paths.failed / "team" / "link").symlink_to(private)
    _plant_failure(paths, "absolute", str(secret))
    _plant_failure(paths, "climbing", "../../root-only/secret.pdf")
    _plant_failure(paths, "symlinked", "team/link/secret.pdf")
    _plant_failure(paths, "inbox-escape", "team/real.pdf", relative="../../root-only/x.pdf")
    (paths.failed / "team" / "real.pdf").write_bytes(b"%PDF-1.4 failed")
    foreign = _plant_failure(paths, "foreign", "team/real.pdf")
    os.chown(foreign, SHARE_UID, SHARE_GID)

    code = main(["--config", str(config), "retry", "--all"])

    out = capsys.readouterr().out
    assert code == 1
    assert out.count("refused: the failure record") == 5, out
    assert "climbs or has empty parts" in out and "leads through failed/" in out
    assert "not written by the daemon" in out
    assert secret.read_bytes() == b"%PDF-1.4 private"
    assert files_under(paths.inbox) == []
    assert (paths.failed / "team" / "real.pdf").exists()
    assert len(os.listdir(paths.state / "failures")) == 5  # kept for the operator to inspect


def test_retry_refuses_to_act_on_a_state_folder_others_may_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    paths = load_config(tmp_path).paths
    prepare(paths)
    Spool(paths, "test-instance").ensure_layout()
    (paths.failed / "a.pdf").write_bytes(b"%PDF-1.4")
    _plant_failure(paths, "job_a", "a.pdf", relative="a.pdf")
    (paths.state / "failures").chmod(0o777)

    code = main(["--config", str(config), "retry", "--all"])

    err = capsys.readouterr().err
    assert code == 2
    assert "writable by group or others" in err and "retry moved nothing" in err
    assert files_under(paths.inbox) == []


def _status_as(config: Path, groups: list[int]) -> tuple[int, str]:
    """``sir-convert status`` in a forked child as uid nobody with these groups: (exit, stderr)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child ends with _exit
            sys.stderr = os.fdopen(write_end, "w")
            os.setgroups(groups)
            os.setgid(groups[0] if groups else SHARE_UID)
            os.setuid(SHARE_UID)
            code = main(["--config", str(config), "status"])
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        err = pipe.read().decode()
    _pid, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), err


@pytest.mark.slow
@AS_ROOT
def test_status_by_a_user_who_may_not_read_the_state_says_so_in_one_line(share: Path) -> None:
    config = write_config(share)
    paths = load_config(share).paths
    prepare(paths)
    Spool(paths, "test-instance").ensure_layout()

    assert _status_as(config, [SHARE_GID]) == (0, "")  # the group may read it
    code, err = _status_as(config, [])
    assert code == 1
    assert err.startswith(f"sir-convert: status: cannot read {paths.state}")
    assert "service user or a member of its group" in err and len(err.splitlines()) == 1


@AS_ROOT
def test_doctor_fails_a_state_folder_owned_by_another_user_and_warns_of_a_writable_parent(
    share: Path,
) -> None:
    config = load_config(share)
    prepare(config.paths)
    Spool(config.paths, "test-instance").ensure_layout()
    # share/ is 2775: a share user could swap the whole state folder for their own
    row = next(c for c in doctor.run_checks(config, {}, False) if c.name == "state permissions")
    assert row.status == doctor.WARN and row.fix == f"chmod go-w {share}"
    share.chmod(0o2755)
    row = next(c for c in doctor.run_checks(config, {}, False) if c.name == "state permissions")
    assert row.status == doctor.OK, row
    os.chown(config.paths.state / "claimed", SHARE_UID, SHARE_GID)
    row = next(c for c in doctor.run_checks(config, {}, False) if c.name == "state permissions")
    assert row.status == doctor.FAIL
    assert "owned by uid 65534, not by the service user (uid 0)" in row.detail
    assert row.fix == f"chown -R 0 {config.paths.state}"
