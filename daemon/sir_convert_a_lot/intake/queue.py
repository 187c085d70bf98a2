"""From watch hints to files ready for a claim, all on the main thread: every file's state is a
row of one table (``intake.inbox_files``: settling, incomplete, blocked, claimable), moved on
by the looks taken here.

A hint (a watcher event or a scan) makes a file seen; once its size and mtime hold still for
the window and it has arrived (no writer on this host, a document's ends present), it is
claimable.
Dispatch takes claimable files in line and checks them once more before claiming.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable

from sir_convert_a_lot import logs, sharefs
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.formats import format_of_name
from sir_convert_a_lot.intake.arrival import WRITER_OPEN, Arrivals
from sir_convert_a_lot.intake.blocked import blocked_again, say_unblocked
from sir_convert_a_lot.intake.inbox_files import FileState, InboxFiles
from sir_convert_a_lot.intake.watch import Seen, look, scan
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.source_blocked import SourceBlocked
from sir_convert_a_lot.names import is_ignored_path

log = logs.get()


class Intake:
    """The inbox as the daemon knows it (``files``, one row per file) and the looks that move
    each file on. ``on_change`` wakes the heartbeat so that status shows a change at once."""

    def __init__(
        self, config: Config, clock: Callable[[], float], on_change: Callable[[], None]
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_change = on_change
        self.files = InboxFiles(config.watch.stability_seconds, clock)
        self.arrivals = Arrivals(
            config.watch.stability_seconds, config.watch.incomplete_wait_seconds, clock
        )
        self.next_rescan = 0.0
        self._lease_problem_reported = False

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: new windows apply to the next observation."""
        self.config = config
        self.files.window = config.watch.stability_seconds
        self.arrivals.window = config.watch.stability_seconds
        self.arrivals.incomplete_wait = config.watch.incomplete_wait_seconds

    # -- hints --------------------------------------------------------------------------------

    def look_at(self, absolute: str, is_folder: bool) -> None:
        """A watcher hint: a path under the inbox changed (or a folder appeared)."""
        inbox = str(self.config.paths.inbox)
        if not absolute.startswith(inbox + os.sep):
            return
        relative = absolute[len(inbox) + 1 :]
        if is_ignored_path(tuple(relative.split("/")), self.config.watch.ignore):
            return
        if is_folder:
            for found in scan(self.config.paths.inbox, self.config.watch.ignore, relative):
                self.observe(found)
            return
        info = sharefs.lstat(self.config.paths.inbox, relative) if relative else None
        if info is not None and stat.S_ISDIR(info.st_mode):
            for found in scan(self.config.paths.inbox, self.config.watch.ignore, relative):
                self.observe(found)
            return
        seen = None if info is None else Seen.of(relative, info)
        if seen is None:
            self.forget(relative)
            return
        self.observe(seen)

    def gone(self, relative: str) -> None:
        """A watched file is no longer there. When a folder on its way became a link, it was
        swapped (``source_swapped``): said, and nothing is followed through it."""
        if sharefs.through_link(self.config.paths.inbox, relative):
            log.warning(
                "source_swapped",
                source=relative,
                reason="a folder on its way was replaced by a link or a file",
                effect="left alone; nothing was moved, read or converted through it",
            )
        self.forget(relative)

    def forget(self, relative: str) -> None:
        self.arrivals.forget(relative)
        if self.files.forget(relative) is not None:
            say_unblocked(relative, gone=True)
            self.on_change()

    def observe(self, seen: Seen) -> None:
        self.files.observe(seen)

    def watching(self) -> int:
        """Files settling or waiting to arrive, for status and the metrics."""
        return self.files.count(FileState.SETTLING, FileState.INCOMPLETE)

    def claimable(self) -> int:
        return self.files.count(FileState.CLAIMABLE)

    def scan_all(self) -> int:
        """Observe every file in the inbox; the count, for the start-up log."""
        count = 0
        for seen in scan(self.config.paths.inbox, self.config.watch.ignore):
            self.observe(seen)
            count += 1
        return count

    def rescan_if_due(self, now: float) -> None:
        """The periodic full scan catches whatever the watcher missed."""
        if now >= self.next_rescan:
            self.next_rescan = now + self.config.watch.rescan_interval_seconds
            self.scan_all()

    def events_lost(self) -> None:
        """The watcher's queue overflowed: only a full scan, now, knows the inbox."""
        log.warning("inbox_events_lost", cause="inotify queue overflow", effect="rescanning now")
        self.next_rescan = self.clock()

    def next_deadline(self) -> float:
        """The service clock at which intake next has work without a hint."""
        stable_at = self.files.next_deadline()
        return self.next_rescan if stable_at is None else min(self.next_rescan, stable_at)

    # -- settling -----------------------------------------------------------------------------

    def settle_due(self) -> None:
        """Files whose stability window is over become candidates once they have arrived."""
        inbox = self.config.paths.inbox
        arriving = self.arrivals.waiting()
        for relative in self.files.due():
            seen = look(inbox, relative)
            if seen is None:
                self.gone(relative)
                continue
            if not self.files.settle(seen):
                continue
            if self._has_arrived(seen):
                self.files.queue(seen)
        if self.arrivals.waiting() != arriving:
            self.on_change()  # status shows what is arriving without a lease's delay

    def _has_arrived(self, seen: Seen) -> bool:
        """A stable file is claimed once no writer on this host holds it open and its bytes look
        complete; until then it waits (with back-off), and a document whose end never comes is
        claimed after ``watch.incomplete_wait_seconds`` so that it fails as truncated."""
        relative = seen.relative_path
        if not seen.is_regular or format_of_name(relative) is None:
            return True  # preflight refuses it with its own code; nothing to wait for
        verdict = self.arrivals.judge(relative, self._opener(relative), seen.size, seen.mtime_ns)
        self._report_lease_problem()
        if verdict.give_up:
            log.warning(
                "incomplete_wait_expired",
                source=relative,
                missing=verdict.reason,
                waited_seconds=round(verdict.waited_seconds, 1),
                effect="claimed now, to fail as truncated (pdf_unreadable or document_unreadable)",
            )
        if verdict.claim:
            return True
        if verdict.first:
            self._log_waiting(relative, verdict.reason, seen.size)
        held = self.arrivals.long_writer(relative)
        if held is not None:
            log.warning(
                "writer_holds_file_open",
                source=relative,
                seconds=round(held),
                effect="still waiting: a process on this host keeps the file open for writing",
            )
        self.files.wait(seen, verdict.wait_seconds)
        return False

    def _opener(self, relative: str) -> Callable[[], int]:
        """Opens the inbox file by descriptor walk: the checks never read through a link."""
        return functools.partial(sharefs.open_file, self.config.paths.inbox, relative)

    def _log_waiting(self, relative: str, reason: str | None, size: int) -> None:
        if reason == WRITER_OPEN:
            log.info("waiting_for_writer", source=relative, size_bytes=size)
        else:
            log.info(
                "waiting_for_end_of_file",
                source=relative,
                missing=reason,
                size_bytes=size,
                gives_up_after_seconds=self.arrivals.incomplete_wait,
            )

    def _report_lease_problem(self) -> None:
        problem = self.arrivals.lease_problem
        if problem is None or self._lease_problem_reported:
            return
        self._lease_problem_reported = True
        log.warning(
            "open_writer_check_unavailable",
            reason=problem,
            effect="writers on this host are not seen; the stability window, the end-of-file "
            "check and the check after conversion still apply. The unit grants CAP_LEASE; a "
            "CIFS/NFS client mount has no leases at all",
        )

    def retry_blocked(self) -> None:
        """Blocked files whose back-off is over go through the stability window again, like
        any file seen anew (observing an unchanged file again does not restart its window)."""
        for relative in self.files.unblocked_due():
            current = look(self.config.paths.inbox, relative)
            if current is None:
                self.forget(relative)
                continue
            self.files.observe(current)

    # -- the candidates, for dispatch ---------------------------------------------------------

    def next_candidate(self) -> Seen | None:
        return self.files.take()

    def put_back(self, seen: Seen) -> None:
        """A candidate that could not be claimed for a reason not its own goes first next time."""
        self.files.put_back(seen)

    def block(self, seen: Seen, exc: SourceBlocked) -> None:
        """The service user cannot move (claim) the file: it waits alone, with a growing
        back-off, and is logged once per cause; every other file is still claimed."""
        row = self.files.get(seen.relative_path)
        before = row.blocked if row is not None else None
        self.files.block(seen, blocked_again(seen, exc, before, self.clock()))
        self.on_change()

    def claimed(self, relative: str, job: Job | None) -> None:
        """The file was claimed (``job``), or lost to another instance (None)."""
        if self.files.claimed(relative) is not None:
            say_unblocked(relative, job)
            self.on_change()

    def still_settled(self, seen: Seen) -> Seen | None:
        """The candidate as it is now, when it is still what settled and no writer holds it;
        otherwise None, and the file is gone or back in the stability window."""
        relative = seen.relative_path
        current = look(self.config.paths.inbox, relative)
        if current is None:
            self.gone(relative)
            return None
        if current.identity != seen.identity:
            log.info(  # routine on a share: the same name dropped again (a folder swap warns)
                "source_swapped",
                source=relative,
                reason="another file took its name since it was seen",
                effect="the file seen is not taken; the one there now is watched anew",
            )
        if current.state != seen.state:
            self.files.observe(current)
            return None
        if current.is_regular and self.arrivals.writer_holds(self._opener(relative)):
            # Opened for writing again since it settled: back to waiting.
            self._log_waiting(relative, WRITER_OPEN, current.size)
            self.files.observe(current)
            return None
        self.arrivals.forget(relative)
        return current
