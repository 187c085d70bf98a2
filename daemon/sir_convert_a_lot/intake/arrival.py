"""Has a dropped file finished arriving? Two cheap looks, neither of which parses the document.

``writer_on_this_host`` asks the kernel whether any process on this host still holds the file
open for writing: a read lease (``F_SETLEASE F_RDLCK``) cannot be taken while one does. Samba's
smbd, FTP servers and local copies hold the file open while they write. It cannot see a client
of the kernel NFS server (nfsd does not hold the file open across the client's pauses; NFSv3 has
no open at all), nor writers on other hosts of a CIFS or NFS *client* mount; for those the
stability window, the completeness check below and the verification after conversion remain.

``missing_part`` (``source_file``, shared with the claim-time checks) looks at the bytes of the
format the name promises: a PDF writer writes the header first and ``%%EOF`` last, a ZIP writer
its directory last, a PNG its ``IEND``, so a file whose ends are not in place is still on its
way.

``Arrivals`` turns those looks into a schedule: wait with back-off while the end is missing,
give up after ``watch.incomplete_wait_seconds`` without change (the file then fails as
truncated), and wait for as long as a writer holds the file open.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from sir_convert_a_lot.source_file import Source, missing_part, open_source

_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
_F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
# A lease break is announced by a signal; SIGURG's default action is to ignore it, so a writer
# opening the file in the instant we hold the lease can never kill the daemon.
_LEASE_BREAK_SIGNAL = signal.SIGURG

WRITER_OPEN = "open_for_writing"


class LeaseUnavailable(Exception):
    """The kernel will not tell: no CAP_LEASE for a file another user owns, a filesystem without
    leases (CIFS/NFS client mounts), or leases switched off (fs.leases-enable = 0)."""


def writer_on_this_host(path: Source) -> bool:
    """True while any process on this host holds ``path`` open for writing. Not a regular file,
    or gone: False (preflight deals with it). Raises LeaseUnavailable when it cannot tell."""
    try:
        fd = open_source(path)
    except (OSError, ValueError):
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.fcntl(fd, _F_SETSIG, _LEASE_BREAK_SIGNAL)
            fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return True
            raise LeaseUnavailable(f"{errno.errorcode.get(exc.errno or 0, exc.errno)}") from None
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


Clock = Callable[[], float]


@dataclass(frozen=True)
class Verdict:
    """What to do with a stable file: claim it, or look again after ``wait_seconds``.

    ``give_up`` marks a file whose end never came within the limit: it is claimed so that it
    fails as truncated. ``first`` is True the first time a file waits for this reason, so that
    the daemon logs it once, not at every look."""

    claim: bool
    reason: str | None = None
    wait_seconds: float = 0.0
    waited_seconds: float = 0.0
    give_up: bool = False
    first: bool = False


@dataclass
class _Waiting:
    size: int
    mtime_ns: int
    reason: str
    since: float
    backoff: float
    warned_long: bool = False


class Arrivals:
    """Per-file waiting for files that are stable but not yet complete.

    The limit counts from the last time the file changed (or began waiting for a new reason), so
    a writer that keeps adding bytes is never failed while it writes."""

    MAX_BACKOFF_SECONDS = 60.0  # bytes arriving again restart the stability window anyway

    def __init__(
        self,
        window: float,
        incomplete_wait: float,
        clock: Clock = time.monotonic,
        writer_check: Callable[[Source], bool] = writer_on_this_host,
        bytes_check: Callable[[Source, str], str | None] = missing_part,
    ) -> None:
        self.window = window
        self.incomplete_wait = incomplete_wait
        self.clock = clock
        self.writer_check = writer_check
        self.bytes_check = bytes_check
        self.lease_problem: str | None = None  # set once when the kernel cannot tell
        self._waiting: dict[str, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def waiting(self) -> dict[str, str]:
        """Relative path -> why it waits, for status."""
        return {path: entry.reason for path, entry in self._waiting.items()}

    def forget(self, relative_path: str) -> None:
        self._waiting.pop(relative_path, None)

    def writer_holds(self, path: Source) -> bool:
        """The lease check alone (also used right before a claim). When the kernel cannot tell,
        say so once (``lease_problem``) and answer False: the other checks still stand."""
        try:
            return self.writer_check(path)
        except LeaseUnavailable as exc:
            if self.lease_problem is None:
                self.lease_problem = str(exc)
            return False

    def judge(self, relative_path: str, path: Source, size: int, mtime_ns: int) -> Verdict:
        if self.writer_holds(path):
            return self._wait(relative_path, size, mtime_ns, WRITER_OPEN, limit=None)
        missing = self.bytes_check(path, os.path.basename(relative_path))
        if missing is None:
            self._waiting.pop(relative_path, None)
            return Verdict(claim=True)
        return self._wait(relative_path, size, mtime_ns, missing, limit=self.incomplete_wait)

    def _wait(
        self, relative_path: str, size: int, mtime_ns: int, reason: str, limit: float | None
    ) -> Verdict:
        now = self.clock()
        entry = self._waiting.get(relative_path)
        first = entry is None or (entry.size, entry.mtime_ns, entry.reason) != (
            size,
            mtime_ns,
            reason,
        )
        if entry is None or first:
            entry = _Waiting(size, mtime_ns, reason, now, max(self.window, 1.0))
            self._waiting[relative_path] = entry
        elif limit is not None:
            # A writer closing the file changes nothing a watcher sees, so that check keeps its
            # short interval; missing bytes back off, since their arrival is an event of its own.
            entry.backoff = min(entry.backoff * 2, self.MAX_BACKOFF_SECONDS)
        waited = now - entry.since
        if limit is not None and waited >= limit:
            self._waiting.pop(relative_path, None)
            return Verdict(claim=True, reason=reason, waited_seconds=waited, give_up=True)
        wait = entry.backoff if limit is None else min(entry.backoff, limit - waited)
        return Verdict(
            claim=False, reason=reason, wait_seconds=wait, waited_seconds=waited, first=first
        )

    def long_writer(self, relative_path: str) -> float | None:
        """Seconds a writer has held this file open, once it is past the incomplete limit and
        not yet reported (so the daemon warns once); else None."""
        entry = self._waiting.get(relative_path)
        if entry is None or entry.reason != WRITER_OPEN or entry.warned_long:
            return None
        waited = self.clock() - entry.since
        if waited < self.incomplete_wait:
            return None
        entry.warned_long = True
        return waited
