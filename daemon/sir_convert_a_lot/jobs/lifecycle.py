"""A claimed job's whole life, decided in one place: ``JobRunner.run`` loops until the job
reaches a terminal ``Outcome``.

One attempt is a pipeline of steps over an ``Attempt``; each step either lets the job go on or
ends the attempt::

    give_back_if_stopping  the service is stopping: the original goes back, uncounted
    dispose_after_restart  outputs already out before a crash: only move the original
    refuse_past_attempts   started max_attempts times and never finished: worker_crashed
    inspect                still the file that was claimed, and a PDF we can read
    decide                 the GPU-first lock (``engine.policy``), asked through the engine
    convert                the worker converts; a crash with attempts left tries again, and
                           a job whose worker was stopped for a neighbour, or went down with
                           others in it, tries again uncounted (then alone)
    recheck_source         the bytes must not have moved under the converter
    publish                Markdown and sidecar, or the error envelope (``jobs.endings``)

The lifecycle never touches the inbox except to give a job back (stop, or a file still being
written), and never decides policy itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends import no_text
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.interface import (
    ConversionEngine,
    EngineStartError,
    WorkerCrashed,
    WorkerOverMemory,
    WorkerTimedOut,
)
from sir_convert_a_lot.engine.policy import Refused, RunOn, stage_refusal
from sir_convert_a_lot.engine.protocol import Converted, Failed
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.jobs.custody import Custody
from sir_convert_a_lot.jobs.endings import Attempt, Endings
from sir_convert_a_lot.jobs.job import Job, Phase
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.jobs.source_checks import inspect_source, sha256_of

log = logs.get()

DEFER_SECONDS = 60.0  # a job that could not even be failed waits this long before a new try


@dataclass(frozen=True)
class TryAgain:
    """The worker crashed with attempts left: the same job goes round once more (``alone``:
    with no other document in the worker)."""

    alone: bool = False


Step = Callable[[Attempt], "Outcome | TryAgain | None"]


class JobRunner:
    def __init__(
        self,
        config: Config,
        governance: Governance,
        custody: Custody,
        engine: ConversionEngine,
        clock: Any = time.time,
        stopping: threading.Event | None = None,
    ) -> None:
        self.custody = custody
        self.engine = engine
        self.clock = clock
        self.stopping = stopping or threading.Event()
        self.abandon = False  # set by the service when the stop grace ran out
        self.endings = Endings(config, governance, custody, engine, clock)

    @property
    def config(self) -> Config:
        return self.endings.config

    def reconfigure(self, config: Config) -> None:
        """A reload hands over the new settings; the next job uses them."""
        self.endings.reconfigure(config)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, job: Job) -> Outcome:
        """Carry ``job`` to a terminal outcome. Raises only EngineStartError (the worker could
        not be restarted: nothing can convert, the service must stop)."""
        alone = False
        while True:
            try:
                ended = self._attempt(self._begin(job, alone))
            except EngineStartError:
                raise
            except Exception as exc:  # noqa: BLE001 - one job's fault must not stop the others
                if not self.custody.still_mine(job):
                    return self._lease_lost(job, exc)
                return self._after_unexpected(job, exc)
            if isinstance(ended, Outcome):
                return ended
            alone = ended.alone
            reloaded = self.custody.reload(job)
            if reloaded is None:
                return Outcome(job.job_id, Status.RETURNED, "vanished")
            job = reloaded

    def _begin(self, job: Job, alone: bool = False) -> Attempt:
        bound = log.bind(
            job_id=job.job_id, source=job.relative_path, instance=self.custody.instance
        )
        return Attempt(job=job, started=self.clock(), bound=bound, alone=alone)

    def _attempt(self, attempt: Attempt) -> Outcome | TryAgain:
        steps: tuple[Step, ...] = (
            self._give_back_if_stopping,
            self.endings.dispose_after_restart,
            self._refuse_past_attempts,
            self._inspect,
            self._decide,
            self._convert,
        )
        for step in steps:
            ended = step(attempt)
            if ended is not None:
                return ended
        raise AssertionError("the convert step always ends the attempt")

    # -- the steps ----------------------------------------------------------------------------

    def _give_back_if_stopping(self, attempt: Attempt) -> Outcome | None:
        if not self.stopping.is_set():
            return None
        return self.endings.give_back(attempt, "stopping")

    def _refuse_past_attempts(self, attempt: Attempt) -> Outcome | None:
        job = attempt.job
        if job.attempts < self.config.retry.max_attempts:
            return None
        failure = JobFailure(
            ErrorCode.WORKER_CRASHED,
            f"Conversion was started {job.attempts} times and never finished (the worker or "
            "the daemon stopped each time); the file can be retried.",
            attempts=job.attempts,
            max_attempts=self.config.retry.max_attempts,
        )
        return self.endings.fail(attempt, failure)

    def _inspect(self, attempt: Attempt) -> Outcome | None:
        job = attempt.job
        try:
            facts = inspect_source(
                self.custody.source_path(job), job.name, self.config.conversion.max_file_bytes
            )
        except JobFailure as rejected:
            return self.endings.fail(attempt, rejected)
        changed = self._change_since_claim(job, facts.sha256)
        if changed:
            return self.endings.give_back(attempt, "source_changed_after_claim", **changed)
        if job.claimed_sha256 is None:
            attempt.job = self.custody.update(job, claimed_sha256=facts.sha256)
        attempt.facts = facts
        return None

    def _decide(self, attempt: Attempt) -> Outcome | None:
        decision = self.engine.decide(attempt.job.options)
        if isinstance(decision, Refused):
            return self.endings.fail(attempt, decision.as_failure())
        attempt.decision = decision
        return None

    def _convert(self, attempt: Attempt) -> Outcome | TryAgain:
        decision = attempt.decision
        assert decision is not None
        job = attempt.job = self.custody.begin_attempt(attempt.job)
        attempt.bound.info(
            "conversion_started",
            attempt=job.attempts,
            device=decision.device,
            backend=job.options.backend,
        )
        try:
            answer = self.engine.convert(
                job.job_id,
                str(self.custody.source_path(job)),
                job.options,
                decision,
                source_name=job.relative_path,
                alone=attempt.alone,
            )
        except (WorkerTimedOut, WorkerOverMemory) as stopped:
            if self.abandon:
                return self.endings.give_back(attempt, "stopped_during_conversion")
            if isinstance(stopped, WorkerTimedOut) and stopped.shared and not attempt.alone:
                return self._after_shared_timeout(attempt)
            return self.endings.fail(attempt, _stopped_by_a_limit(stopped))
        except WorkerCrashed as crash:
            return self._after_crash(attempt, crash)
        return self._publish(attempt, answer, decision)

    def _after_shared_timeout(self, attempt: Attempt) -> TryAgain:
        """Past its limit while other documents shared the worker: part of its time was theirs.
        It goes round again alone with its attempt given back; a timeout alone is its own."""
        job = attempt.job
        attempt.job = self.custody.update(job, attempts=max(0, job.attempts - 1))
        attempt.bound.info(
            "conversion_timeout_shared",
            effect="tried again at once, alone",
            attempt_counted=False,
        )
        return TryAgain(alone=True)

    def _after_crash(self, attempt: Attempt, crash: WorkerCrashed) -> Outcome | TryAgain:
        job = attempt.job
        if self.abandon:
            return self.endings.give_back(attempt, "stopped_during_conversion")
        if crash.innocent or crash.shared:
            # The worker was stopped for a neighbour (a timeout, a restart), or went down with
            # several documents in it: this job goes round again with the attempt it was
            # charged given back, after a shared crash alone (where a crash is its own), so that
            # a neighbour's faults never bring it to worker_crashed.
            attempt.job = self.custody.update(job, attempts=max(0, job.attempts - 1))
            attempt.bound.info(
                "worker_stopped_for_another_job" if crash.innocent else "worker_crashed_shared",
                exitcode=crash.exitcode,
                effect="tried again at once, alone" if crash.shared else "tried again at once",
                attempt_counted=False,
            )
            return TryAgain(alone=crash.shared)
        attempt.bound.warning("worker_crashed", attempt=job.attempts, exitcode=crash.exitcode)
        if job.attempts < self.config.retry.max_attempts:
            return TryAgain()
        failure = JobFailure(
            ErrorCode.WORKER_CRASHED,
            f"The converter crashed on this file {job.attempts} times; it was set aside "
            "and can be retried.",
            attempts=job.attempts,
            exitcode=crash.exitcode,
        )
        return self.endings.fail(attempt, failure)

    def _publish(self, attempt: Attempt, answer: Converted | Failed, decision: RunOn) -> Outcome:
        """Publish what the worker answered, unless the claim no longer holds."""
        job = attempt.job
        if self.abandon:
            return self.endings.give_back(attempt, "stopped_during_conversion")
        changed = self._change_since_claim(job, sha256_of(self.custody.source_path(job)))
        if changed:
            # Nothing is published from bytes that moved under the converter: the file waits
            # for stability again, and the new claim starts with no attempt counted.
            return self.endings.give_back(attempt, "source_changed_during_conversion", **changed)
        if not self.custody.still_mine(job):
            return self._lease_lost(job, None)
        if isinstance(answer, Failed):
            attempt.timings, attempt.pages = answer.timings_ms, answer.pages
            failure = JobFailure(ErrorCode(answer.code), answer.message, **answer.details)
            return self.endings.fail(attempt, failure)
        off_gpu = stage_refusal(decision, answer.stage_devices, self.endings.governance)
        if off_gpu is not None:
            attempt.pages = answer.pages
            return self.endings.fail(attempt, off_gpu.as_failure())
        outcome = self.endings.succeed(attempt, answer, decision.warnings)
        if outcome.status is Status.SUCCEEDED and (textless := no_text.found(answer.warnings)):
            attempt.bound.warning(
                "no_text_found",
                pages_without_text=textless[0],
                pages=textless[1],
                backend=answer.backend_used,
                message=f"{textless[0]} of {textless[1]} pages have no text (a scan?): "
                f"{answer.backend_used} does no OCR, so their Markdown is empty",
                fix=no_text.FIX,
            )
        return outcome

    # -- when the lifecycle itself fails ------------------------------------------------------

    def _lease_lost(self, job: Job, error: Exception | None) -> Outcome:
        """Another instance took this job over while we were presumed dead: it is theirs now.
        Nothing more is published, nothing retried; the job is forgotten here at once."""
        committed = self.endings.forget(job)
        log.warning(
            "lease_lost",
            job_id=job.job_id,
            source=job.relative_path,
            cause=f"{type(error).__name__}: {error}" if error else "taken over before publishing",
            effect="another instance holds this job now; "
            + (
                "it places the outputs committed here before the takeover"
                if committed
                else "nothing published here"
            )
            + "; forgotten here",
        )
        return Outcome(job.job_id, Status.RETURNED, "lease_lost")

    def _after_unexpected(self, job: Job, error: Exception) -> Outcome:
        """A bug or an environment fault (not the file's) ended the job: a retryable failure,
        or, when even failing is impossible, a deferral that keeps the original claimed."""
        try:
            current = self.custody.reload(job) or job
        except OSError:
            current = job
        if current.phase in (Phase.PUBLISHED, Phase.FAILED_PUBLISHED):
            # The outputs are out: only moving the original failed (archive/ or failed/ is not
            # writable). Failing the job now would publish a contradicting error envelope.
            effect = "the outputs are published; the original stays claimed until it can move"
            return _defer(current, "job_disposal_deferred", error, effect)
        log.error(
            "job_error_unexpected",
            job_id=job.job_id,
            source=job.relative_path,
            error=f"{type(error).__name__}: {error}",
            exc_info=error,
        )
        failure = JobFailure(
            ErrorCode.CONVERSION_INTERNAL_ERROR,
            "The daemon hit an unexpected error while handling this file; it can be retried, "
            "and the operator finds the details in the log.",
            exception=type(error).__name__,
            error=str(error)[:500],
        )
        try:
            return self.endings.fail(self._begin(current), failure)
        except Exception as second:  # noqa: BLE001 - e.g. the outbox itself is unwritable
            effect = "the file stays claimed and is tried again later"
            return _defer(current, "job_deferred", second, effect)

    # -- helpers ------------------------------------------------------------------------------

    def _change_since_claim(self, job: Job, sha256: str | None) -> dict[str, Any]:
        """What differs from the claim (size, mtime, SHA-256), for the log; empty when the
        claimed file is still exactly what was claimed."""
        try:
            info = os.lstat(self.custody.source_path(job))
        except OSError:
            return {}
        now = {"size_bytes": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": sha256}
        then = {
            "size_bytes": job.claimed_size,
            "mtime_ns": job.claimed_mtime_ns,
            "sha256": job.claimed_sha256,
        }
        if then["sha256"] is None:
            now["sha256"] = None  # not hashed yet: size and mtime decide
        if now == then:
            return {}
        return {"at_claim": then, "now": now}


def _defer(job: Job, event: str, error: Exception, effect: str) -> Outcome:
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


def _stopped_by_a_limit(stopped: WorkerTimedOut | WorkerOverMemory) -> JobFailure:
    """The supervisor stopped the worker at a limit: the job fails now rather than being tried
    again at once, since the same file would only hit the same limit."""
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
