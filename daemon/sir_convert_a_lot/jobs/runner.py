"""Carrying one claimed job to its end: checks, the lock policy, the worker, publish, disposal.

The runner never touches the inbox except to give a job back (stop, or a file still being
written), and never decides policy itself: it asks the engine, which asks ``policy.decide``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.policy import Refused
from sir_convert_a_lot.engine.protocol import Converted, Failed
from sir_convert_a_lot.engine.supervisor import (
    Engine,
    WorkerCrashed,
    WorkerOverMemory,
    WorkerTimedOut,
)
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.intake.preflight import SourceFacts, inspect_source, sha256_of
from sir_convert_a_lot.jobs.publish import (
    ERROR,
    MARKDOWN,
    SIDECAR,
    choose_stem,
    output_folder,
    remove_superseded_error,
    remove_temporaries,
    sidecar_bytes,
    write_outputs,
)
from sir_convert_a_lot.jobs.sidecar import Execution, SourceInfo, error_document, success_document
from sir_convert_a_lot.jobs.spool import Job, Spool
from sir_convert_a_lot.ops import logs
from sir_convert_a_lot.versions import component_versions

log = logs.get()


@dataclass(frozen=True)
class Outcome:
    """How a job ended, for the service's bookkeeping and the tests."""

    job_id: str
    status: str  # succeeded | failed | returned | requeued
    code: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)


class StopRequested(Exception):
    """The service is stopping and this job must go back to the inbox uncounted."""


class JobRunner:
    def __init__(
        self,
        config: Config,
        governance: Governance,
        spool: Spool,
        engine: Engine,
        clock: Any = time.time,
    ) -> None:
        self.config = config
        self.governance = governance
        self.spool = spool
        self.engine = engine
        self.clock = clock
        self.abandon = False  # set by the service when the stop grace ran out
        self._versions: dict[str, str] | None = None

    @property
    def versions(self) -> dict[str, str]:
        if self.engine.info is not None:
            return self.engine.info.versions
        if self._versions is None:
            self._versions = component_versions()
        return self._versions

    # -- the job ------------------------------------------------------------------------------

    def run(self, job: Job) -> Outcome:
        started = self.clock()
        bound = log.bind(job_id=job.job_id, source=job.relative_path, instance=self.spool.instance)
        if job.phase == "published":
            self.spool.archive(job, self.config.output.source_after_success)
            self._release(job)
            bound.info("job_disposed_after_restart")
            return Outcome(job.job_id, "succeeded")
        if job.phase == "failed_published":
            self.spool.fail(job, job.outcome, self._error_json_of(job))
            self._release(job)
            bound.info("job_failed_disposed_after_restart")
            return Outcome(job.job_id, "failed", job.outcome.get("code"))
        if job.attempts >= self.config.retry.max_attempts:
            failure = JobFailure(
                ErrorCode.WORKER_CRASHED,
                f"Conversion was started {job.attempts} times and never finished (the worker or "
                "the daemon stopped each time); the file can be retried.",
                attempts=job.attempts,
                max_attempts=self.config.retry.max_attempts,
            )
            return self._fail(job, failure, None, started, {}, bound)
        try:
            facts = inspect_source(
                self.spool.source_path(job), job.name, self.config.conversion.max_file_bytes
            )
        except JobFailure as rejected:
            return self._fail(job, rejected, None, started, {}, bound)
        changed = self._change_since_claim(job, facts.sha256)
        if changed:
            return self._give_back(job, bound, "source_changed_after_claim", **changed)
        if job.claimed_sha256 is None:
            job = self.spool.update(job, claimed_sha256=facts.sha256)
        decision = self.engine.decide(job.options)
        if isinstance(decision, Refused):
            return self._fail(job, decision.as_failure(), facts, started, {}, bound)
        job = self.spool.begin_attempt(job)
        bound.info(
            "conversion_started",
            attempt=job.attempts,
            device=decision.device,
            backend=job.options.backend,
        )
        try:
            answer = self.engine.convert(
                job.job_id,
                str(self.spool.source_path(job)),
                job.options,
                decision,
                source_name=job.relative_path,
            )
        except (WorkerTimedOut, WorkerOverMemory) as stopped:
            if self.abandon:
                return self._give_back(job, bound, "stopped_during_conversion")
            return self._fail(job, _stopped_by_a_limit(stopped), facts, started, {}, bound)
        except WorkerCrashed as crash:
            if self.abandon:
                return self._give_back(job, bound, "stopped_during_conversion")
            bound.warning("worker_crashed", attempt=job.attempts, exitcode=crash.exitcode)
            if job.attempts >= self.config.retry.max_attempts:
                failure = JobFailure(
                    ErrorCode.WORKER_CRASHED,
                    f"The converter crashed on this file {job.attempts} times; it was set aside "
                    "and can be retried.",
                    attempts=job.attempts,
                    exitcode=crash.exitcode,
                )
                return self._fail(job, failure, facts, started, {}, bound)
            return Outcome(job.job_id, "requeued")
        if self.abandon:
            return self._give_back(job, bound, "stopped_during_conversion")
        changed = self._change_since_claim(job, sha256_of(self.spool.source_path(job)))
        if changed:
            # Nothing is published from bytes that moved under the converter: the file waits
            # for stability again, and the new claim starts with no attempt counted.
            return self._give_back(job, bound, "source_changed_during_conversion", **changed)
        if not self.spool.still_mine(job):
            bound.warning("job_taken_over_by_another_instance")
            return Outcome(job.job_id, "returned")
        if isinstance(answer, Failed):
            failure = JobFailure(ErrorCode(answer.code), answer.message, **answer.details)
            return self._fail(job, failure, facts, started, answer.timings_ms, bound, answer.pages)
        return self._succeed(job, answer, facts, started, bound, decision.warnings)

    def fail_unexpected(self, job: Job, error: Exception) -> Outcome:
        """A bug or an environment fault (not the file's) ended the job: retryable failure."""
        failure = JobFailure(
            ErrorCode.CONVERSION_INTERNAL_ERROR,
            "The daemon hit an unexpected error while handling this file; it can be retried, "
            "and the operator finds the details in the log.",
            exception=type(error).__name__,
            error=str(error)[:500],
        )
        bound = log.bind(job_id=job.job_id, source=job.relative_path, instance=self.spool.instance)
        return self._fail(job, failure, None, self.clock(), {}, bound)

    # -- endings ------------------------------------------------------------------------------

    def _succeed(
        self,
        job: Job,
        answer: Converted,
        facts: SourceFacts,
        started: float,
        bound: Any,
        policy_warnings: tuple[str, ...],
    ) -> Outcome:
        publish_started = time.monotonic()
        folder = output_folder(self.config.paths.outbox, job.folder_parts)
        job = self._with_stem(job, folder)
        assert job.output_stem is not None
        markdown = answer.markdown.encode("utf-8")
        warnings = list(policy_warnings) + list(answer.warnings)
        timings = dict(answer.timings_ms)
        timings["queue_wait_ms"] = round(max(0.0, started - job.claimed_at) * 1000, 1)
        finished = self.clock()
        timings["publish_ms"] = round((time.monotonic() - publish_started) * 1000, 1)
        timings["total_ms"] = round((finished - job.claimed_at) * 1000, 1)
        device = self._device(answer.acceleration_used, answer.peak_gpu_memory_bytes)
        document = success_document(
            job_id=job.job_id,
            source=SourceInfo(job.relative_path, facts.size_bytes, facts.sha256, answer.pages),
            markdown_filename=job.output_stem + MARKDOWN,
            markdown_size=len(markdown),
            markdown_sha256=hashlib.sha256(markdown).hexdigest(),
            options=job.options,
            backend_used=answer.backend_used,
            acceleration_used=answer.acceleration_used,
            ocr_enabled=answer.ocr_enabled,
            warnings=warnings,
            execution=self._execution(job, started, finished, timings, device, answer.thread_id),
            governance=self.governance,
            versions=self.versions,
        )
        published = write_outputs(
            folder,
            job.output_stem,
            job.job_id,
            [(MARKDOWN, markdown), (SIDECAR, sidecar_bytes(document))],
        )
        remove_superseded_error(folder, job.output_stem, job.relative_path)
        job = self.spool.update(job, phase="published")
        self.spool.archive(job, self.config.output.source_after_success)
        self.spool.release_reservation(folder, published.stem, job.job_id)
        bound.info(
            "job_succeeded",
            pages=answer.pages,
            markdown=str(published.paths[MARKDOWN]),
            acceleration_used=answer.acceleration_used,
            backend=answer.backend_used,
            seconds=round(timings["total_ms"] / 1000, 3),
            warnings=warnings,
        )
        return Outcome(job.job_id, "succeeded", outputs=published.paths)

    def _fail(
        self,
        job: Job,
        failure: JobFailure,
        facts: SourceFacts | None,
        started: float,
        timings: dict[str, float],
        bound: Any,
        pages: int | None = None,
    ) -> Outcome:
        if facts is None:
            facts = self._facts_anyway(job)
        folder = output_folder(self.config.paths.outbox, job.folder_parts)
        job = self._with_stem(job, folder)
        assert job.output_stem is not None
        finished = self.clock()
        document = error_document(
            job_id=job.job_id,
            source=SourceInfo(job.relative_path, facts.size_bytes, facts.sha256, pages),
            code=failure.code,
            message=failure.message,
            details=failure.details,
            execution=self._execution(job, started, finished, timings, None, None),
            governance=self.governance,
            versions=self.versions,
        )
        published = write_outputs(
            folder, job.output_stem, job.job_id, [(ERROR, sidecar_bytes(document))]
        )
        error = document["error"]
        job = self.spool.update(job, phase="failed_published", outcome=error)
        self.spool.fail(job, error, published.paths[ERROR])
        self.spool.release_reservation(folder, published.stem, job.job_id)
        bound.warning(
            "job_failed",
            code=failure.code.value,
            retryable=failure.code.retryable,
            message=failure.message,
            details=failure.details,
        )
        return Outcome(job.job_id, "failed", failure.code.value, published.paths)

    def _give_back(self, job: Job, bound: Any, reason: str, **details: Any) -> Outcome:
        target = self.spool.return_to_inbox(job)
        bound.info("job_returned_to_inbox", reason=reason, path=str(target), **details)
        return Outcome(job.job_id, "returned", reason)

    # -- helpers ------------------------------------------------------------------------------

    def _output_folder_path(self, job: Job) -> Path:
        return self.config.paths.outbox.joinpath(*job.folder_parts)

    def _release(self, job: Job) -> None:
        if job.output_stem is not None:
            self.spool.release_reservation(
                self._output_folder_path(job), job.output_stem, job.job_id
            )

    def _error_json_of(self, job: Job) -> Path | None:
        if job.output_stem is None:
            return None
        return self._output_folder_path(job) / (job.output_stem + ERROR)

    def _with_stem(self, job: Job, folder: Path) -> Job:
        if job.output_stem is not None:
            remove_temporaries(folder, job.job_id)
            return job
        stem = choose_stem(
            folder,
            job.name,
            job.relative_path,
            on_collision=self.config.output.on_collision,
            reserve=lambda where, key: self.spool.reserve(where, key, job.job_id),
        )
        return self.spool.update(job, output_stem=stem)

    def _change_since_claim(self, job: Job, sha256: str | None) -> dict[str, Any]:
        """What differs from the claim (size, mtime, SHA-256), for the log; empty when the
        claimed file is still exactly what was claimed."""
        try:
            info = os.lstat(self.spool.source_path(job))
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

    def _facts_anyway(self, job: Job) -> SourceFacts:
        path = self.spool.source_path(job)
        try:
            size: int | None = os.lstat(path).st_size
        except OSError:
            size = None
        digest = None
        if size is not None and size <= self.config.conversion.max_file_bytes:
            digest = sha256_of(path)
        return SourceFacts(size_bytes=size or 0, sha256=digest)

    def _device(self, acceleration_used: str, peak: int | None) -> dict[str, Any] | None:
        probe = self.engine.probe
        if acceleration_used != "cuda" or probe is None or probe.device is None:
            return None
        return {**probe.device.to_dict(), "memory_peak_bytes": peak}

    def _execution(
        self,
        job: Job,
        started: float,
        finished: float,
        timings: dict[str, float],
        device: dict[str, Any] | None,
        thread_id: int | None,
    ) -> Execution:
        worker: dict[str, Any] = {}
        if self.engine.info is not None:
            worker = {"pid": self.engine.info.pid, "starts": self.engine.starts}
            if thread_id is not None:
                worker["conversion_thread"] = thread_id
            probe = self.engine.info.probe
            worker["gpu_probe"] = probe.reason
        return Execution(
            acceleration_policy=job.options.acceleration_policy,
            profile=job.profile,
            attempt=job.attempts,
            instance=self.spool.instance,
            device=device,
            started_at=started,
            finished_at=finished,
            timings_ms=timings,
            worker=worker,
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


def cleanup_after_restart(spool: Spool, config: Config, job: Job) -> None:
    """Remove temporary files a killed attempt of ``job`` left in its output folder."""
    if job.output_stem is None:
        return
    folder = config.paths.outbox.joinpath(*job.folder_parts)
    with contextlib.suppress(OSError):
        removed = remove_temporaries(folder, job.job_id)
        if removed:
            log.info("stale_temporaries_removed", job_id=job.job_id, count=removed)
