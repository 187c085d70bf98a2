"""Has a dropped file finished arriving? Two cheap looks, neither of which parses the PDF.

``writer_on_this_host`` asks the kernel whether any process on this host still holds the file
open for writing: a read lease (``F_SETLEASE F_RDLCK``) cannot be taken while one does. Samba's
smbd, FTP servers and local copies hold the file open while they write. It cannot see a client
of the kernel NFS server (nfsd does not hold the file open across the client's pauses; NFSv3 has
no open at all), nor writers on other hosts of a CIFS or NFS *client* mount; for those the
stability window, the completeness check below and the verification after conversion remain.

``missing_part`` looks at the bytes: a PDF writer writes the header first and ``%%EOF`` last, so
an empty file, a head of zeros (a preallocated file whose data has not come), a tail without
``%%EOF``, or a last ``startxref`` that points past the end or into zeros means the rest is
still on its way.

``Arrivals`` turns those looks into a schedule: wait with back-off while the end is missing,
give up after ``watch.incomplete_wait_seconds`` without change (the file then fails as
truncated), and wait for as long as a writer holds the file open.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
_F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
# A lease break is announced by a signal; SIGURG's default action is to ignore it, so a writer
# opening the file in the instant we hold the lease can never kill the daemon.
_LEASE_BREAK_SIGNAL = signal.SIGURG

_HEAD_BYTES = 1024
_TAIL_BYTES = 2048  # where %%EOF must lie: the last kilobyte, with slack for padding after it
_PDF_MAGIC = b"%PDF-"
_STARTXREF = re.compile(rb"startxref\s+(\d{1,20})")

# Why a file's bytes look unfinished; also the ``missing`` detail of a ``truncated`` failure.
EMPTY = "empty_file"
HEAD_NOT_ARRIVED = "head_not_arrived"
NO_EOF_MARKER = "no_eof_marker"
XREF_NOT_ARRIVED = "xref_not_arrived"

WRITER_OPEN = "open_for_writing"

_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


# What the checks look at: a path (tests, one-shot files) or an opener that walks a share by
# descriptor (the daemon's inbox, where a folder on the way may be swapped for a link).
Source = Path | Callable[[], int]


def _open(source: Source) -> int:
    if isinstance(source, Path):
        return os.open(source, _NO_FOLLOW)
    return source()


class LeaseUnavailable(Exception):
    """The kernel will not tell: no CAP_LEASE for a file another user owns, a filesystem without
    leases (CIFS/NFS client mounts), or leases switched off (fs.leases-enable = 0)."""


def writer_on_this_host(path: Source) -> bool:
    """True while any process on this host holds ``path`` open for writing. Not a regular file,
    or gone: False (preflight deals with it). Raises LeaseUnavailable when it cannot tell."""
    try:
        fd = _open(path)
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


def missing_part(path: Source) -> str | None:
    """Which part of a PDF has not arrived yet, or None when its ends are in place (or it is not
    a PDF at all, which preflight reports). Never follows links; unreadable counts as None."""
    try:
        fd = _open(path)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return _missing_in(fd, info.st_size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _missing_in(fd: int, size: int) -> str | None:
    if size == 0:
        return EMPTY
    head = os.pread(fd, _HEAD_BYTES, 0)
    if not head.strip(b"\0"):
        return HEAD_NOT_ARRIVED
    if _PDF_MAGIC not in head:
        return None  # not a PDF: nothing to wait for
    tail_start = max(0, size - _TAIL_BYTES)
    tail = os.pread(fd, _TAIL_BYTES, tail_start)
    eof = tail.rfind(b"%%EOF")
    if eof < 0:
        return NO_EOF_MARKER
    offsets = _STARTXREF.findall(tail[:eof])
    if not offsets:
        return None  # hand-made files without startxref are complete; the parser rebuilds
    offset = int(offsets[-1])
    if offset >= size:
        return XREF_NOT_ARRIVED
    landing = os.pread(fd, 32, offset)
    if not landing.strip(b"\0"):
        return XREF_NOT_ARRIVED  # a hole: the writer has not filled this part yet
    return None


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
        bytes_check: Callable[[Source], str | None] = missing_part,
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
        missing = self.bytes_check(path)
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
