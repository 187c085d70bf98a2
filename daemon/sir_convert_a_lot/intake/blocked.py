"""Inbox files the service user cannot move: each waits alone with a growing back-off.

One file in a folder the daemon may not write must not hold up the others, nor flood the log:
it is logged once per cause, tried again after 10 s, 20 s, ... 10 min, and shown by status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.intake.watch import Seen
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.source_blocked import SourceBlocked
from sir_convert_a_lot.names import display

log = logs.get()

BLOCKED_FIRST_SECONDS = 10.0
BLOCKED_MAX_SECONDS = 600.0
BLOCKED_SHOWN = 50  # at most this many blocked files in the lease (status shows the count too)


def blocked_delay(tries: int) -> float:
    """The wait before try ``tries + 1`` of a blocked file: doubling, capped."""
    return float(min(BLOCKED_MAX_SECONDS, BLOCKED_FIRST_SECONDS * 2 ** max(0, tries - 1)))


@dataclass(frozen=True)
class Blocked:
    """An inbox file the service user cannot move (claim), and when to try it again."""

    seen: Seen
    errno_name: str
    error: str
    folder: str
    fix: str
    since: float  # wall clock, for people
    tries: int
    retry_at: float  # the service clock

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "source": display(self.seen.relative_path),
            "errno": self.errno_name,
            "error": self.error,
            "folder": self.folder,
            "fix": self.fix,
            "since": self.since,
            "tries": self.tries,
            "retry_in_seconds": round(max(0.0, self.retry_at - now), 1),
        }


class BlockedFiles:
    """The blocked files by relative path. Changed by the main thread only; the heartbeat
    thread reads ``view``, a tuple replaced whole on every change."""

    def __init__(self, clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        self.clock = clock
        self.on_change = on_change
        self.entries: dict[str, Blocked] = {}
        self.view: tuple[Blocked, ...] = ()

    def block(self, seen: Seen, exc: SourceBlocked) -> None:
        """One file cannot be moved by the service user: it waits alone, with a growing
        back-off, and is logged once per cause; every other file is still claimed."""
        relative = seen.relative_path
        before = self.entries.get(relative)
        tries = before.tries + 1 if before else 1
        delay = blocked_delay(tries)
        entry = Blocked(
            seen=seen,
            errno_name=exc.errno_name,
            error=exc.error.strerror or str(exc.error),
            folder=display(str(exc.folder)),
            fix=exc.fix,
            since=before.since if before else time.time(),
            tries=tries,
            retry_at=self.clock() + delay,
        )
        if before is None or before.errno_name != entry.errno_name:
            log.error(
                "claim_failed",
                source=relative,
                errno=entry.errno_name,
                error=entry.error,
                folder=entry.folder,
                fix=entry.fix,
                retry_in_seconds=delay,
                effect="this file stays in the inbox untouched and is tried again with a "
                "growing back-off (up to 10 min); the other files are claimed as usual",
            )
        self.entries[relative] = entry
        self._publish()

    def unblock(self, relative: str, job: Job | None) -> None:
        """The file was claimed (or lost to another instance): it is no longer blocked."""
        if self.entries.pop(relative, None) is None:
            return
        log.info("claim_unblocked", source=relative, job_id=job.job_id if job else None)
        self._publish()

    def left_inbox(self, relative: str) -> None:
        """The file is gone from the inbox: nothing is blocked any more."""
        if self.entries.pop(relative, None) is not None:
            log.info("claim_unblocked", source=relative, reason="the file left the inbox")
            self._publish()

    def _publish(self) -> None:
        self.view = tuple(self.entries.values())
        self.on_change()
