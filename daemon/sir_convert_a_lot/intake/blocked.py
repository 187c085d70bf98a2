"""Inbox files the service user cannot move: each waits alone with a growing back-off (the
file's row in ``intake.inbox_files`` is ``BLOCKED`` meanwhile).

One file in a folder the daemon may not write must not hold up the others, nor flood the log:
it is logged once per cause, tried again after 10 s, 20 s, ... 10 min, and shown by status.
"""

from __future__ import annotations

import time
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


def blocked_again(seen: Seen, exc: SourceBlocked, before: Blocked | None, now: float) -> Blocked:
    """The record of a file the service user cannot move (``now``: the service clock), one try
    on from ``before``; logged once per cause, not at every try."""
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
        retry_at=now + delay,
    )
    if before is None or before.errno_name != entry.errno_name:
        log.error(
            "claim_failed",
            source=seen.relative_path,
            errno=entry.errno_name,
            error=entry.error,
            folder=entry.folder,
            fix=entry.fix,
            retry_in_seconds=delay,
            effect="this file stays in the inbox untouched and is tried again with a "
            "growing back-off (up to 10 min); the other files are claimed as usual",
        )
    return entry


def say_unblocked(relative: str, job: Job | None = None, gone: bool = False) -> None:
    """A blocked file was claimed (or lost to another instance), or left the inbox."""
    if gone:
        log.info("claim_unblocked", source=relative, reason="the file left the inbox")
    else:
        log.info("claim_unblocked", source=relative, job_id=job.job_id if job else None)
