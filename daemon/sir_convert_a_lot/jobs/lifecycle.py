"""A claimed job's whole life, decided in one place: ``JobRunner.run`` loops until the job
reaches a terminal ``Outcome``.

One attempt is a pipeline of steps over an ``Attempt``, ``JobRunner.STEPS`` in this order; each
step either lets the job go on (None) or ends the attempt::

    give_back_if_stopping  the service is stopping: the original goes back, uncounted
    dispose_after_restart  outputs already committed before a crash or a takeover: only place
                           them and move the original (``jobs.endings``)
    refuse_past_attempts   started max_attempts times and never finished: worker_crashed
    inspect                still the file that was claimed, and a file we may convert
    decide                 the GPU-first lock (``engine.policy``), asked through the engine
    convert                the worker converts (an attempt is counted); when the worker is
                           stopped or crashes, ``jobs.retries`` says whether the job fails or
                           goes round again (``TryAgain``), and whether alone
    recheck_source         the claim still holds: the bytes did not move under the converter,
                           and no other instance took the job over
    publish                Markdown and sidecar, or the error envelope (``jobs.endings``)

A ``TryAgain`` is not an outcome: ``run`` reloads the job's record and starts the next attempt.
A fault of the lifecycle itself fails the job ``conversion_internal_error``, or, when even that
cannot be written, defers it (``jobs.deferral``). The lifecycle never touches the inbox except
to give a job back (stopping, or a file that changed), and never decides policy itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

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
from sir_convert_a_lot.jobs.deferral import defer
from sir_convert_a_lot.jobs.endings import Endings
from sir_convert_a_lot.jobs.job import Job, Phase
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.jobs.retries import RetryRules, TryAgain
from sir_convert_a_lot.jobs.source_checks import SourceFacts, inspect_source, sha256_of

log = logs.get()


@dataclass
class Attempt:
    """One pass of a job through the steps: what each step found, for the next."""

    job: Job
    started: float
    bound: Any  # the structlog logger bound to this job
    facts: SourceFacts | None = None  # inspect
    decision: RunOn | None = None  # decide
    answer: Converted | Failed | None = None  # convert
    timings: dict[str, float] | None = None  # what the worker measured, for a failure's record
    pages: int | None = None
    alone: bool = False  # convert with no other document in the worker (after a shared failure)


Step = Callable[["JobRunner", Attempt], "Outcome | TryAgain | None"]


class JobRunner:
    """Carries claimed jobs to their outcomes, one ``run`` per job; several job threads share
    one runner. It owns the steps; the endings (``jobs.endings``) write what a job leaves, the
    retry rules (``jobs.retries``) say when it goes round again, and ``custody`` says where its
    original is. ``abandon`` is set by the service when its stop grace ran out."""

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
        self.retries = RetryRules(custody, lambda: self.config.retry.max_attempts)

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
        for step in self.STEPS:
            ended = step(self, attempt)
            if ended is not None:
                return ended
        raise AssertionError("the publish step always ends the attempt")

    # -- the steps, in order ------------------------------------------------------------------

    def give_back_if_stopping(self, attempt: Attempt) -> Outcome | None:
        if not self.stopping.is_set():
            return None
        return self.endings.give_back(attempt, "stopping")

    def dispose_after_restart(self, attempt: Attempt) -> Outcome | None:
        return self.endings.dispose_after_restart(attempt)

    def refuse_past_attempts(self, attempt: Attempt) -> Outcome | None:
        failure = self.retries.past_attempts(attempt.job)
        return None if failure is None else self.endings.fail(attempt, failure)

    def inspect(self, attempt: Attempt) -> Outcome | None:
        job = attempt.job
        try:
            facts = inspect_source(
                self.custody.source_path(job),
                job.name,
                self.config.conversion.max_file_bytes,
                job.options,
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

    def decide(self, attempt: Attempt) -> Outcome | None:
        decision = self.engine.decide(attempt.job.options, attempt.job.name)
        if isinstance(decision, Refused):
            return self.endings.fail(attempt, decision.as_failure())
        attempt.decision = decision
        return None

    def convert(self, attempt: Attempt) -> Outcome | TryAgain | None:
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
            attempt.answer = self.engine.convert(
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
            return self._next(
                attempt, *self.retries.after_stopped(job, attempt.bound, attempt.alone, stopped)
            )
        except WorkerCrashed as crash:
            if self.abandon:
                return self.endings.give_back(attempt, "stopped_during_conversion")
            return self._next(attempt, *self.retries.after_crash(job, attempt.bound, crash))
        if self.abandon:
            return self.endings.give_back(attempt, "stopped_during_conversion")
        return None

    def recheck_source(self, attempt: Attempt) -> Outcome | None:
        job = attempt.job
        changed = self._change_since_claim(job, sha256_of(self.custody.source_path(job)))
        if changed:
            # Nothing is published from bytes that moved under the converter: the file waits
            # for stability again, and the new claim starts with no attempt counted.
            return self.endings.give_back(attempt, "source_changed_during_conversion", **changed)
        if not self.custody.still_mine(job):
            return self._lease_lost(job, None)
        return None

    def publish(self, attempt: Attempt) -> Outcome:
        answer, decision = attempt.answer, attempt.decision
        assert answer is not None and decision is not None
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

    STEPS: ClassVar[tuple[Step, ...]] = (
        give_back_if_stopping,
        dispose_after_restart,
        refuse_past_attempts,
        inspect,
        decide,
        convert,
        recheck_source,
        publish,
    )

    def _next(
        self, attempt: Attempt, job: Job, verdict: JobFailure | TryAgain
    ) -> Outcome | TryAgain:
        """Apply a retry rule's verdict: fail the job now, or let it go round again."""
        attempt.job = job
        return self.endings.fail(attempt, verdict) if isinstance(verdict, JobFailure) else verdict

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
            return defer(current, "job_disposal_deferred", error, effect)
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
            return defer(current, "job_deferred", second, effect)

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
