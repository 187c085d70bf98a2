"""When a job is tried again, and whether the try counts: every retry rule in one place.

The engine only reports what it saw when it stopped a worker (``engine.interface``): the job ran
past its limit (``WorkerTimedOut``), outgrew the memory limit (``WorkerOverMemory``), or went
down with the worker (``WorkerCrashed``), and whether other documents were in that worker
(``shared``) or the worker was stopped for one of them (``innocent``). These rules turn that
into the job's next step:

- an innocent bystander goes round again at once, with the attempt it was charged given back;
- after a shared failure (a crash, or a timeout, among several documents) the job goes round
  again alone, the attempt given back: alone, a crash or a timeout is its own;
- a job's own crash goes round again while attempts are left, then fails ``worker_crashed``;
- a job's own timeout, or its memory over the limit, fails at once: the same file would only
  hit the same limit;
- a job already started ``retry.max_attempts`` times and never finished (the daemon stopped
  each time) fails ``worker_crashed`` without another try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sir_convert_a_lot.engine.interface import WorkerCrashed, WorkerOverMemory, WorkerTimedOut
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.jobs.custody import Custody
from sir_convert_a_lot.jobs.job import Job


@dataclass(frozen=True)
class TryAgain:
    """The same job goes round once more (``alone``: with no other document in the worker)."""

    alone: bool = False


class RetryRules:
    """The rules above, applied to one attempt. ``max_attempts`` is read at each use (a reload
    may change ``retry.max_attempts``); an attempt given back is written through ``custody``."""

    def __init__(self, custody: Custody, max_attempts: Callable[[], int]) -> None:
        self.custody = custody
        self.max_attempts = max_attempts

    def past_attempts(self, job: Job) -> JobFailure | None:
        """A job started ``max_attempts`` times that never finished is not started again."""
        limit = self.max_attempts()
        if job.attempts < limit:
            return None
        return JobFailure(
            ErrorCode.WORKER_CRASHED,
            f"Conversion was started {job.attempts} times and never finished (the worker or "
            "the daemon stopped each time); the file can be retried.",
            attempts=job.attempts,
            max_attempts=limit,
        )

    def after_stopped(
        self, job: Job, bound: Any, alone: bool, stopped: WorkerTimedOut | WorkerOverMemory
    ) -> tuple[Job, JobFailure | TryAgain]:
        """The worker was stopped at a limit while converting ``job`` (``bound``: its logger;
        ``alone``: it was converting alone). The job as now recorded, and what comes next."""
        if isinstance(stopped, WorkerTimedOut) and stopped.shared and not alone:
            # Part of its time was its neighbours': it goes round again alone, uncounted.
            job = self._give_back_attempt(job)
            bound.info(
                "conversion_timeout_shared",
                effect="tried again at once, alone",
                attempt_counted=False,
            )
            return job, TryAgain(alone=True)
        return job, _stopped_by_a_limit(stopped)

    def after_crash(
        self, job: Job, bound: Any, crash: WorkerCrashed
    ) -> tuple[Job, JobFailure | TryAgain]:
        """The worker went away with ``job`` in it. The job as now recorded, and what comes
        next: a neighbour's fault never brings a job to ``worker_crashed``."""
        if crash.innocent or crash.shared:
            job = self._give_back_attempt(job)
            bound.info(
                "worker_stopped_for_another_job" if crash.innocent else "worker_crashed_shared",
                exitcode=crash.exitcode,
                effect="tried again at once, alone" if crash.shared else "tried again at once",
                attempt_counted=False,
            )
            return job, TryAgain(alone=crash.shared)
        bound.warning("worker_crashed", attempt=job.attempts, exitcode=crash.exitcode)
        if job.attempts < self.max_attempts():
            return job, TryAgain()
        return job, JobFailure(
            ErrorCode.WORKER_CRASHED,
            f"The converter crashed on this file {job.attempts} times; it was set aside "
            "and can be retried.",
            attempts=job.attempts,
            exitcode=crash.exitcode,
        )

    def _give_back_attempt(self, job: Job) -> Job:
        return self.custody.update(job, attempts=max(0, job.attempts - 1))


def _stopped_by_a_limit(stopped: WorkerTimedOut | WorkerOverMemory) -> JobFailure:
    if isinstance(stopped, WorkerTimedOut):
        return JobFailure(
            ErrorCode.CONVERSION_TIMEOUT,
            f"The conversion took longer than its limit of {stopped.seconds:g} seconds and "
            "was stopped; it can be retried, or the limit raised for large files.",
            timeout_seconds=stopped.seconds,
        )
    return JobFailure(
        ErrorCode.WORKER_CRASHED,
        "The converter needed more than this service's memory limit of "
        f"{stopped.limit_bytes // (1024 * 1024)} MiB for this file and was stopped; split "
        "the file, or ask the operator to raise the limit.",
        reason="memory_limit_exceeded",
        max_worker_memory_bytes=stopped.limit_bytes,
        worker_memory_bytes=stopped.rss_bytes,
    )
