"""Jobs that could not even be failed (the outbox, or archive/ or failed/, unwritable): they
stay claimed and are tried again a while later, until the share lets them end.

The lifecycle ends such a job with ``defer`` (a ``deferred`` outcome carrying the job as last
recorded); the service hands each deferred outcome to its ``Deferrals`` and, on every turn of
its loop, runs again the jobs whose wait is over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sir_convert_a_lot import logs
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.outcome import Outcome, Status

log = logs.get()

DEFER_SECONDS = 60.0  # a job that could not even be failed waits this long before a new try


@dataclass(frozen=True)
class Deferred:
    """One job waiting for its next try (``next_try`` on the service clock), and why."""

    next_try: float
    job: Job
    why: str


def defer(job: Job, event: str, error: Exception, effect: str) -> Outcome:
    """End this try of ``job`` as deferred: logged as ``event``, the job kept claimed."""
    log.error(
        event,
        job_id=job.job_id,
        source=job.relative_path,
        error=f"{type(error).__name__}: {error}",
        retry_in_seconds=DEFER_SECONDS,
        effect=effect,
    )
    return Outcome(
        job.job_id, Status.DEFERRED, f"{event}: {type(error).__name__}: {error}", job=job
    )


class Deferrals:
    """The deferred jobs of one service. Changed by the main thread only; other threads (the
    heartbeat) read ``waiting``, a tuple replaced whole on every change."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.waiting: tuple[Deferred, ...] = ()

    def add(self, outcome: Outcome) -> None:
        """Keep a deferred outcome's job for a new try in ``DEFER_SECONDS``; other outcomes
        are not deferrals and are ignored."""
        if outcome.status is not Status.DEFERRED or outcome.job is None:
            return
        entry = Deferred(self.clock() + DEFER_SECONDS, outcome.job, outcome.code or "deferred")
        self.waiting = (*self.waiting, entry)

    def due(self) -> list[Job]:
        """The jobs whose wait is over, now out of the list (the caller runs them again)."""
        now = self.clock()
        due = [entry.job for entry in self.waiting if entry.next_try <= now]
        if due:
            self.waiting = tuple(entry for entry in self.waiting if entry.next_try > now)
        return due
