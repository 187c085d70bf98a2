"""Seeing files: the inbox scan and the watchdog observer (the stability window is a file's
``SETTLING`` row in ``intake.inbox_files``).

Events are hints; the directory listing is the truth. The observer only tells the service which
path to look at again; a full scan at start and a periodic rescan find whatever events missed
(network mounts, overflowed queues, files present before the daemon started).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserverVFS

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.names import is_ignored_name, is_ignored_path


@dataclass(frozen=True)
class Seen:
    """What ``lstat`` said about an inbox entry; ``identity`` is which file it is (device and
    inode), so that a claim takes this very file and not one swapped in under its name."""

    relative_path: str
    size: int
    mtime_ns: int
    is_regular: bool
    identity: sharefs.FileId

    @classmethod
    def of(cls, relative_path: str, info: os.stat_result) -> Seen:
        return cls(
            relative_path,
            info.st_size,
            info.st_mtime_ns,
            stat.S_ISREG(info.st_mode),
            sharefs.file_id(info),
        )

    @property
    def state(self) -> tuple[int, int, sharefs.FileId]:
        """What must hold still for the file to count as stable."""
        return (self.size, self.mtime_ns, self.identity)


def look(inbox: Path, relative_path: str) -> Seen | None:
    """The entry as it is now, walked by descriptor (None: gone, a folder, or a folder on its
    way is no longer a real folder)."""
    try:
        info = sharefs.lstat(inbox, relative_path)
    except ValueError:
        return None
    if info is None or stat.S_ISDIR(info.st_mode):
        return None
    return Seen.of(relative_path, info)


def scan(inbox: Path, ignore: tuple[str, ...], below: str = "") -> Iterator[Seen]:
    """Every candidate entry under ``inbox/below``, never descending through symlinks and never
    entering ignored folders."""

    def skip(name: str, relative: str) -> bool:
        return is_ignored_name(name, ignore) or is_ignored_path(tuple(relative.split("/")), ignore)

    for entry in sharefs.scan(inbox, skip, below):
        yield Seen.of(entry.relative, entry.info)


Hint = Callable[[str, bool], None]  # (absolute path, is_folder)

# watchdog reports a kernel inotify queue overflow (IN_Q_OVERFLOW: events were dropped) only
# as this warning, so the watcher listens for it.
_INOTIFY_LOGGER = "watchdog.observers.inotify"
_OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
_OVERFLOW_MESSAGE = "Inotify queue overflowed"


class _OverflowAlarm(logging.Handler):
    def __init__(self, on_events_lost: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_events_lost = on_events_lost

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(_OVERFLOW_MESSAGE):
            self.on_events_lost()


class _Handler(FileSystemEventHandler):
    def __init__(self, hint: Hint) -> None:
        self.hint = hint

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        target: Any = getattr(event, "dest_path", "") or event.src_path
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if target:
            self.hint(str(target), bool(event.is_directory))


class InboxWatcher:
    """watchdog's inotify observer, or its polling observer for CIFS/NFS client mounts.

    The polling observer looks with ``lstat``: with watchdog's default ``stat`` it walked into
    every folder link a share user planted (a link to ``/`` is the whole disk each poll, two
    links to the inbox never finish and block the stop) and never saw a dangling link."""

    def __init__(
        self,
        inbox: Path,
        mode: str,
        poll_interval: float,
        hint: Hint,
        on_events_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.inbox = inbox
        self.observer: Any = (
            PollingObserverVFS(os.lstat, os.scandir, polling_interval=poll_interval)
            if mode == "polling"
            else Observer()
        )
        self.observer.schedule(_Handler(hint), str(inbox), recursive=True)
        self._alarm = _OverflowAlarm(on_events_lost)

    def start(self) -> None:
        overflow_log = logging.getLogger(_OVERFLOW_LOGGER)
        if not overflow_log.isEnabledFor(logging.WARNING):
            overflow_log.setLevel(logging.WARNING)  # the root handler still filters what it shows
        overflow_log.addHandler(self._alarm)
        self.observer.start()

    def alive(self) -> bool:
        if not self.observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in self.observer.emitters)

    def stop(self) -> None:
        logging.getLogger(_OVERFLOW_LOGGER).removeHandler(self._alarm)
        logging.getLogger(_INOTIFY_LOGGER).addFilter(_quiet_stop)
        self.observer.stop()
        self.observer.join(timeout=10)


def _quiet_stop(record: logging.LogRecord) -> bool:
    """watchdog's inotify emitter logs "called when the thread is inactive" at error level when
    an event arrives while it is being stopped: a race inside watchdog at our own clean stop,
    not a fault, and an error line in ``journalctl -p err`` for nothing."""
    return "called when the thread is inactive" not in record.getMessage()
