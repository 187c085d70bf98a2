"""Seeing files: the inbox scan and the watcher."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sir_convert_a_lot.intake.watch import InboxWatcher, Seen, look, scan
from tests.helpers import make_pdf


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now


def seen(path: str = "a.pdf", size: int = 100, mtime_ns: int = 1, inode: int = 7) -> Seen:
    return Seen(path, size, mtime_ns, True, (1, inode))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- scan -------------------------------------------------------------------------------------


def _scan(inbox: Path, ignore: tuple[str, ...] = (), below: str = "") -> dict[str, Seen]:
    return {entry.relative_path: entry for entry in scan(inbox, ignore, below)}


def test_scan_finds_nested_files_with_their_facts(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    top = make_pdf(inbox / "top.pdf")
    deep = make_pdf(inbox / "team" / "2024" / "march" / "deep.pdf")

    found = _scan(inbox)

    assert set(found) == {"top.pdf", "team/2024/march/deep.pdf"}
    info = os.lstat(deep)
    assert found["team/2024/march/deep.pdf"] == Seen(
        "team/2024/march/deep.pdf", info.st_size, info.st_mtime_ns, True, (info.st_dev, info.st_ino)
    )
    assert found["top.pdf"].size == top.stat().st_size


def test_scan_skips_ignored_names_and_folders(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_pdf(inbox / "keep.pdf")
    for name in (
        ".hidden.pdf",
        "download.pdf.part",
        "upload.TMP",
        "browser.pdf.crdownload",
        "~$draft.pdf",
        ".~lock.report.odt#",
        "Thumbs.db",
        "desktop.ini",
        "._keep.pdf",
        "notes.bak",
        "@eaDir/keep.pdf@SynoEAStream",
        "@eaDir/thumb.pdf",
        ".git/objects/x.pdf",
        ".Trash-1000/files/old.pdf",
        "team/@eaDir/keep.pdf",
        "team/.snapshot/copy.pdf",
    ):
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.4\n")
    make_pdf(inbox / "team" / "kept.pdf")

    assert set(_scan(inbox, ("*.bak",))) == {"keep.pdf", "team/kept.pdf"}


def test_scan_honours_ignore_globs_on_folders(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_pdf(inbox / "scratch" / "a.pdf")
    make_pdf(inbox / "team" / "b.pdf")

    assert set(_scan(inbox, ("scratch",))) == {"team/b.pdf"}


def test_scan_below_looks_only_in_that_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_pdf(inbox / "a.pdf")
    make_pdf(inbox / "team" / "b.pdf")
    make_pdf(inbox / "team" / "sub" / "c.pdf")

    assert set(_scan(inbox, below="team")) == {"team/b.pdf", "team/sub/c.pdf"}


def test_scan_reports_a_symlinked_folder_without_entering_it(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    outside = tmp_path / "outside"
    make_pdf(inbox / "a.pdf")
    make_pdf(outside / "secret.pdf")
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    (inbox / "loop").symlink_to(inbox, target_is_directory=True)  # following it never ends

    found = _scan(inbox)

    assert set(found) == {"a.pdf", "linked", "loop"}
    assert found["linked"].is_regular is False
    assert found["loop"].is_regular is False
    assert found["linked"].size == os.lstat(inbox / "linked").st_size  # the link, not the target


def test_scan_reports_a_symlink_to_a_pdf_as_not_regular(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = make_pdf(tmp_path / "outside.pdf")
    (inbox / "link.pdf").symlink_to(target)

    found = _scan(inbox)

    assert found["link.pdf"].is_regular is False
    assert found["link.pdf"].size != target.stat().st_size


def test_scan_of_a_missing_inbox_finds_nothing(tmp_path: Path) -> None:
    assert _scan(tmp_path / "gone") == {}


def test_look_says_what_lstat_says(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    pdf = make_pdf(inbox / "a.pdf")
    (inbox / "folder").mkdir()
    (inbox / "link.pdf").symlink_to(pdf)

    found = look(inbox, "a.pdf")
    assert found is not None
    assert (found.size, found.is_regular) == (pdf.stat().st_size, True)
    link = look(inbox, "link.pdf")
    assert link is not None
    assert link.is_regular is False
    assert look(inbox, "folder") is None
    assert look(inbox, "gone.pdf") is None


def test_the_polling_watcher_sees_links_and_never_walks_through_them(tmp_path: Path) -> None:
    """A share user's folder links (outside, and three loops back to the inbox, which a walk
    that follows them never finishes) are hinted as entries, never entered; a dangling link is
    hinted too; and the watcher still sees a new file and stops at once."""
    import threading
    import time

    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    make_pdf(outside / "secret.pdf")
    inbox.mkdir()
    hints: list[str] = []
    lock = threading.Lock()

    def hint(path: str, _is_folder: bool) -> None:
        with lock:
            hints.append(os.path.relpath(path, inbox))

    watcher = InboxWatcher(inbox, "polling", 0.1, hint)
    watcher.start()
    try:
        (inbox / "linked").symlink_to(outside, target_is_directory=True)
        for name in ("loop-a", "loop-b", "loop-c"):
            (inbox / name).symlink_to(inbox, target_is_directory=True)
        (inbox / "dangling.pdf").symlink_to(tmp_path / "nowhere.pdf")
        time.sleep(0.5)
        make_pdf(inbox / "new.pdf")
        deadline = time.monotonic() + 10
        while "new.pdf" not in hints and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stopper = threading.Thread(target=watcher.stop, daemon=True)  # a walk in a loop hangs it
        stopper.start()
        stopper.join(5)
    assert not stopper.is_alive()
    with lock:
        seen = set(hints)
    assert {"linked", "loop-a", "dangling.pdf", "new.pdf"} <= seen
    assert not [h for h in seen if "/" in h]  # nothing below a link


def test_watchdogs_own_race_at_a_clean_stop_is_no_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """watchdog says "queue_events() called when the thread is inactive" at error level when an
    event lands while its inotify emitter stops: after our stop that one line is dropped, and
    any other error of that logger still shows."""
    watcher = InboxWatcher(tmp_path, "inotify", 1.0, lambda _path, _folder: None)
    watcher.start()
    watcher.stop()
    inotify_log = logging.getLogger("watchdog.observers.inotify")
    with caplog.at_level(logging.ERROR, logger="watchdog.observers.inotify"):
        inotify_log.error("InotifyEmitter.queue_events() called when the thread is inactive")
        inotify_log.error("something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
