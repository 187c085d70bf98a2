"""The share is a trust boundary (contract section 3): every path under a share folder is walked
by descriptor, so a folder swapped for a symbolic link, before or after its file was seen,
never leads the daemon outside the share; what is claimed is the very file that was seen."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.intake.dispatch import Dispatcher
from sir_convert_a_lot.intake.queue import Intake
from sir_convert_a_lot.intake.watch import look, scan
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.service import startup
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import load_config, make_pdf, pdf_bytes, wait_for


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` with its sha256: what must not change."""
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _files(root: Path) -> list[Path]:
    """Every file below ``root``, links not followed."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _lookalike(original: Path, outside: Path) -> Path:
    """A file outside the share with the same name, size and mtime as ``original``: the
    attacker's best case, where size and mtime cannot tell them apart."""
    outside.mkdir(mode=0o750, exist_ok=True)
    secret = outside / original.name
    size = original.stat().st_size
    secret.write_bytes(b"S" * size)
    info = original.stat()
    os.utime(secret, ns=(info.st_atime_ns, info.st_mtime_ns))
    return secret


def _swap_for_link(folder: Path, target: Path) -> None:
    """What the share user does: move the real folder away and put a link in its place."""
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.symlink_to(target, target_is_directory=True)


# -- the walk itself ----------------------------------------------------------------------------


def test_a_link_anywhere_on_the_way_stops_every_look(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    make_pdf(outside / "secret.pdf")
    inbox.mkdir()
    (inbox / "team").mkdir()
    (inbox / "team" / "linked").symlink_to(outside, target_is_directory=True)

    assert sharefs.lstat(inbox, "team/linked/secret.pdf") is None
    assert look(inbox, "team/linked/secret.pdf") is None
    assert [seen.relative_path for seen in scan(inbox, ())] == ["team/linked"]
    with pytest.raises(sharefs.NotAFolder, match="team/linked"):
        sharefs.open_file(inbox, "team/linked/secret.pdf")
    link = look(inbox, "team/linked")  # the link itself is an entry (preflight refuses it)
    assert link is not None and not link.is_regular


def test_a_claim_takes_only_the_very_file_that_was_seen(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    original = make_pdf(inbox / "a.pdf")
    seen = sharefs.file_id(original.stat())
    original.rename(tmp_path / "kept.pdf")  # kept, so that its inode is not reused at once
    make_pdf(inbox / "a.pdf", text="another file under the same name")
    (tmp_path / "into").mkdir()

    with sharefs.folder(tmp_path, ("into",)) as into, pytest.raises(sharefs.Swapped):
        sharefs.take(inbox, "a.pdf", seen, into, "taken")

    assert (inbox / "a.pdf").exists()
    assert not (tmp_path / "into" / "taken").exists()


def test_placing_never_replaces_and_takes_the_next_free_name(tmp_path: Path) -> None:
    (tmp_path / "from").mkdir()
    (tmp_path / "to").mkdir()
    (tmp_path / "to" / "a.pdf").write_bytes(b"first")
    (tmp_path / "to" / "a (2).pdf").write_bytes(b"second")
    (tmp_path / "from" / "x").write_bytes(b"third")

    with sharefs.folder(tmp_path, ("from",)) as source:
        placed = sharefs.place(source, "x", tmp_path, ("to",), "a.pdf", sharefs.FolderMode(0o755))

    assert placed == "to/a (3).pdf"
    assert [(tmp_path / "to" / n).read_bytes() for n in ("a.pdf", "a (2).pdf", "a (3).pdf")] == [
        b"first",
        b"second",
        b"third",
    ]


def test_folders_made_in_the_share_get_the_asked_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        with sharefs.folder(tmp_path, ("a", "b"), sharefs.FolderMode(0o755)):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o755


# -- the attack from the issue, through intake and dispatch -------------------------------------


class Claims:
    """Intake and dispatch over real folders, driven by hand like the daemon's loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.config: Config = load_config(tmp_path)
        self.spool = Spool(self.config.paths, self.config.instances.name)
        startup.prepare_folders(self.config, self.spool)
        self.clock = [0.0]
        self.intake = Intake(self.config, lambda: self.clock[0], lambda: None)
        self.claimed: list[Job] = []
        self.dispatcher = Dispatcher(
            self.config, self.intake, self.spool.claims, lambda: self.clock[0], self.claimed.append
        )

    def see_all(self) -> int:
        return self.intake.scan_all()

    def settle_and_claim(self) -> None:
        self.clock[0] += 60
        self.intake.settle_due()
        self.dispatcher.dispatch(lambda: [], threading.Event())


def test_a_folder_swapped_for_a_link_after_its_file_was_seen_leads_nowhere(
    tmp_path: Path,
) -> None:
    claims = Claims(tmp_path)
    inbox = claims.config.paths.inbox
    dropped = make_pdf(inbox / "sub" / "secret.pdf")
    make_pdf(inbox / "other.pdf")
    assert claims.see_all() == 2
    outside = tmp_path / "service-only"
    secret = _lookalike(dropped, outside)
    before = _tree(outside)

    _swap_for_link(inbox / "sub", outside)
    with capture_logs() as logged:
        claims.settle_and_claim()

    assert [job.relative_path for job in claims.claimed] == ["other.pdf"]
    assert _tree(outside) == before and secret.exists()
    swapped = [e for e in logged if e["event"] == "source_swapped"]
    assert [(e["source"], e["log_level"]) for e in swapped] == [("sub/secret.pdf", "warning")]
    state_files = _files(claims.config.paths.state)
    assert not any(
        p.name == "source" and p.read_bytes() == secret.read_bytes() for p in state_files
    )


def test_the_file_itself_replaced_under_its_name_is_left_alone(tmp_path: Path) -> None:
    claims = Claims(tmp_path)
    inbox = claims.config.paths.inbox
    first = make_pdf(inbox / "a.pdf")
    claims.see_all()
    claims.clock[0] += 60
    claims.intake.settle_due()  # a candidate now, with the first file's identity
    replacement = tmp_path / "replacement.pdf"
    replacement.write_bytes(first.read_bytes())
    os.utime(replacement, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns))
    os.replace(replacement, first)  # same size, same mtime, another inode

    with capture_logs() as logged:
        claims.dispatcher.dispatch(lambda: [], threading.Event())

    assert claims.claimed == []
    # A new file under a seen name is routine on a share (the same name dropped again): said at
    # info, not as a warning, unlike a folder turned into a link.
    swapped = [e["log_level"] for e in logged if e["event"] == "source_swapped"]
    assert swapped == ["info"]
    assert (inbox / "a.pdf").exists()


def test_a_job_given_back_never_goes_through_a_swapped_folder(tmp_path: Path) -> None:
    claims = Claims(tmp_path)
    inbox = claims.config.paths.inbox
    make_pdf(inbox / "sub" / "a.pdf")
    claims.see_all()
    claims.settle_and_claim()
    [job] = claims.claimed
    outside = tmp_path / "outside"
    outside.mkdir()
    _swap_for_link(inbox / "sub", outside)

    back = claims.spool.disposal.return_to_inbox(job)

    assert back == inbox / "a.pdf"  # the inbox itself, never the link's target
    assert list(outside.iterdir()) == []


def test_archive_and_failed_folders_are_made_without_group_write_under_umask_0002(
    tmp_path: Path,
) -> None:
    old = os.umask(0o002)
    try:
        claims = Claims(tmp_path)
        inbox = claims.config.paths.inbox
        make_pdf(inbox / "team" / "a.pdf")
        make_pdf(inbox / "team" / "b.pdf")
        claims.see_all()
        claims.settle_and_claim()
        claims.settle_and_claim()
        first, second = claims.claimed
        claims.spool.disposal.archive(first, "archive")
        claims.spool.disposal.fail(second, {"code": "pdf_unreadable", "message": "x"}, None)
    finally:
        os.umask(old)
    paths = claims.config.paths
    for folder in (paths.archive, paths.archive / "team", paths.failed, paths.failed / "team"):
        assert folder.stat().st_mode & 0o022 == 0, folder
    assert (paths.archive / "team" / "a.pdf").exists()
    assert (paths.failed / "team" / "b.pdf").exists()


# -- the daemon as a user meets it --------------------------------------------------------------


@pytest.mark.slow
def test_the_running_daemon_moves_nothing_out_of_a_swapped_or_linked_folder(
    tmp_path: Path,
) -> None:
    """Both cases of the acceptance list, while the daemon converts other files meanwhile: a
    folder linked from the start, and a folder swapped for a link after its file was seen (a
    lookalike of the same size and mtime waiting behind it, in a 0750 folder of the service
    user's)."""
    config = load_config(tmp_path, watch={"stability_seconds": 1.5, "mode": "polling"})
    inbox = config.paths.inbox
    service_only = tmp_path / "service-only"
    linked_target = tmp_path / "linked-target"
    make_pdf(linked_target / "from-the-start.pdf")
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        assert service.ready.wait(60)
        (inbox / "linked").symlink_to(linked_target, target_is_directory=True)
        dropped = inbox / "swap" / "secret.pdf"
        dropped.parent.mkdir()
        dropped_bytes = pdf_bytes(text="dropped by the share user")
        dropped.write_bytes(dropped_bytes)
        wait_for(lambda: "swap/secret.pdf" in service.intake.files, timeout=10)
        _lookalike(dropped, service_only)
        protected = {"service-only": _tree(service_only), "linked": _tree(linked_target)}
        _swap_for_link(inbox / "swap", service_only)
        (inbox / "meanwhile.pdf").write_bytes(pdf_bytes(text="converted meanwhile"))
        wait_for(lambda: (config.paths.outbox / "meanwhile.json").exists(), timeout=60)
        time.sleep(3)  # past the swapped file's window: it would have been claimed by now
    finally:
        service.request_stop()
        thread.join(60)
    assert {"service-only": _tree(service_only), "linked": _tree(linked_target)} == protected
    published = sorted(str(p.relative_to(config.paths.outbox)) for p in _files(config.paths.outbox))
    # The user's own file, moved aside inside the share, is theirs to have converted; the two
    # folder links are entries themselves, failed as unsupported_media_type (the polling watcher
    # sees a link as the entry it is, never walking into it).
    assert published == [
        "linked.error.json",
        "meanwhile.json",
        "meanwhile.md",
        "swap.error.json",
        "swap.moved/secret.json",
        "swap.moved/secret.md",
    ]
    assert sorted(p.name for p in config.paths.failed.iterdir() if p.is_symlink()) == [
        "linked",
        "swap",
    ]
    secret_bytes = (service_only / "secret.pdf").read_bytes()
    for folder in (config.paths.archive, config.paths.failed, config.paths.state):
        for path in _files(folder):
            assert path.read_bytes() != secret_bytes, path
    sidecar = json.loads((config.paths.outbox / "swap.moved" / "secret.json").read_text())
    assert sidecar["source"]["sha256"] == hashlib.sha256(dropped_bytes).hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second, share user")
def test_a_share_user_swapping_a_folder_for_the_service_users_folder_gets_nothing(
    request: pytest.FixtureRequest,
) -> None:
    """The walkthrough's case: a share-group user (here uid nobody) swaps an inbox folder for a
    link to a 0750 folder of the service user's; nothing of it is moved, converted or
    published."""
    import subprocess
    import sys

    root = Path(tempfile.mkdtemp(prefix="sca-share-"))  # pytest's own tmp is 0700 to others
    root.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    config = load_config(root, watch={"stability_seconds": 1.5, "mode": "polling"})
    inbox = config.paths.inbox
    private = root / "private"
    make_pdf(private / "payroll.pdf")
    private.chmod(0o750)
    protected = _tree(private)
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    share_user = (
        "import os, sys, time; os.setgid(65534); os.setuid(65534); inbox = sys.argv[1]; "
        "os.mkdir(f'{inbox}/hr', 0o777); open(f'{inbox}/hr/payroll.pdf', 'wb').write("
        "open(sys.argv[3], 'rb').read()); time.sleep(0.5); "
        "os.rename(f'{inbox}/hr', f'{inbox}/hr.old'); os.symlink(sys.argv[2], f'{inbox}/hr')"
    )
    try:
        assert service.ready.wait(60)
        inbox.chmod(0o777)  # the share: its users may write it
        sample = root / "sample.pdf"
        sample.write_bytes(pdf_bytes(text="alice's decoy"))
        sample.chmod(0o644)
        subprocess.run(
            [sys.executable, "-c", share_user, str(inbox), str(private), str(sample)], check=True
        )
        (inbox / "meanwhile.pdf").write_bytes(pdf_bytes(text="converted meanwhile"))
        wait_for(lambda: (config.paths.outbox / "meanwhile.json").exists(), timeout=60)
        time.sleep(3)
    finally:
        service.request_stop()
        thread.join(60)
    assert _tree(private) == protected
    payroll = (private / "payroll.pdf").read_bytes()
    for folder in (config.paths.archive, config.paths.failed, config.paths.state):
        for path in _files(folder):
            assert path.read_bytes() != payroll, path
    for sidecar in config.paths.outbox.rglob("payroll.json"):  # only ever the decoy's
        source = json.loads(sidecar.read_text())["source"]
        assert source["sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()


def test_an_instance_that_names_outputs_otherwise_than_a_live_one_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One instance with ``replace`` beside one with ``suffix`` would overwrite what the other
    numbers: the second to start refuses (exit 2), naming the key and the other instance."""
    from sir_convert_a_lot.ops.cli import main
    from tests.helpers import write_config

    config = load_config(tmp_path)
    spool = Spool(config.paths, "gpu-host-b")
    startup.prepare_folders(config, spool)
    spool.instances.heartbeat({"naming": {"output.on_collision": "replace"}})  # alive, just now

    code = main(["--config", str(write_config(tmp_path)), "run"])

    err = capsys.readouterr().err
    assert code == 2
    assert "output.on_collision" in err and "'gpu-host-b'" in err and "'replace'" in err
    assert list(config.paths.outbox.iterdir()) == []
