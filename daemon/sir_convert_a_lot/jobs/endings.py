"""A job's two endings, one publish step: name the outputs, stage them, commit, place them,
dispose of the original, release the name.

Success and failure differ only in what they write (Markdown plus sidecar, or the error
envelope), the phase that records it (``published`` / ``failed_published``) and where the
original goes (archive, or failed/). The order is the same, and is what makes a crash at any
point recoverable and a stale holder harmless: the outputs are staged out of sight, then the
phase and the stage are written to the job's record (the commit: it fails once another
instance took the job over), then the staged outputs are placed and the original moved. A
restart or a takeover that finds the phase written only finishes the placing and the move
(``dispose_after_restart``); one that finds it unwritten converts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends.batching import summary
from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.interface import ConversionEngine
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.errors import JobFailure
from sir_convert_a_lot.jobs.artifacts import listing, render
from sir_convert_a_lot.jobs.custody import Custody
from sir_convert_a_lot.jobs.job import Job, Phase
from sir_convert_a_lot.jobs.outcome import Measured, Outcome, Status
from sir_convert_a_lot.jobs.placing import discard, fresh_stage, place, stage_name, taken
from sir_convert_a_lot.jobs.publish import (
    ARTIFACTS,
    DOCLING_JSON,
    ERROR,
    MARKDOWN,
    SIDECAR,
    NameTaken,
    choose_stem,
    folder_key,
    output_folder,
    remove_superseded_error,
    remove_temporaries,
    sidecar_bytes,
    write_outputs,
    write_pictures,
)
from sir_convert_a_lot.jobs.sidecar import Execution, SourceInfo, error_document, success_document
from sir_convert_a_lot.jobs.source_checks import SourceFacts, sha256_of
from sir_convert_a_lot.sharefs import ShareDir
from sir_convert_a_lot.versions import component_versions

if TYPE_CHECKING:
    from sir_convert_a_lot.jobs.lifecycle import Attempt

log = logs.get()

_NAME_TRIES = 5  # final placement found a name taken: choose again, this many times at most


class Endings:
    """What a job leaves behind: its outputs published (``succeed``, ``fail``), its original
    given back (``give_back``), or a committed publish finished after a restart
    (``dispose_after_restart``). The one place outputs are written; see the module's
    docstring for the order that makes a crash at any point recoverable."""

    def __init__(
        self,
        config: Config,
        governance: Governance,
        custody: Custody,
        engine: ConversionEngine,
        clock: Any,
    ) -> None:
        self.config = config
        self.governance = governance
        self.custody = custody
        self.engine = engine
        self.clock = clock
        self._versions: dict[str, str] | None = None
        self._committed: set[str] = set()  # jobs whose outputs this instance committed

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: the next ending uses its output settings."""
        self.config = config

    @property
    def versions(self) -> dict[str, str]:
        if self.engine.info is not None:
            return self.engine.info.versions
        if self._versions is None:
            self._versions = component_versions()
        return self._versions

    # -- the two endings ----------------------------------------------------------------------

    def succeed(
        self, attempt: Attempt, answer: Converted, policy_warnings: tuple[str, ...]
    ) -> Outcome:
        for _try in range(_NAME_TRIES):
            try:
                return self._succeed(attempt, answer, policy_warnings)
            except NameTaken as taken:
                self._rename_after(attempt, taken)
        raise FileExistsError(f"no output name stayed free for {attempt.job.relative_path!r}")

    def _succeed(
        self, attempt: Attempt, answer: Converted, policy_warnings: tuple[str, ...]
    ) -> Outcome:
        publish_started = time.monotonic()
        folder, job = self._named(attempt.job)
        assert job.output_stem is not None and attempt.facts is not None
        rendered = render(answer, job.options.images, job.output_stem)
        markdown = rendered.markdown
        warnings = list(policy_warnings) + list(answer.warnings)
        timings = dict(answer.timings_ms)
        timings["queue_wait_ms"] = round(max(0.0, attempt.started - job.claimed_at) * 1000, 1)
        finished = self.clock()
        timings["publish_ms"] = round((time.monotonic() - publish_started) * 1000, 1)
        timings["total_ms"] = round((finished - job.claimed_at) * 1000, 1)
        device = self._device(answer)
        facts = attempt.facts
        document = success_document(
            job_id=job.job_id,
            source=SourceInfo(job.relative_path, facts.size_bytes, facts.sha256, answer.pages),
            markdown_filename=job.output_stem + MARKDOWN,
            markdown_size=len(markdown),
            markdown_sha256=hashlib.sha256(markdown).hexdigest(),
            artifacts=listing(job.output_stem, rendered),
            options=job.options,
            backend_used=answer.backend_used,
            acceleration_used=answer.acceleration_used,
            stage_devices=answer.stage_devices,
            ocr_enabled=answer.ocr_enabled,
            warnings=warnings,
            execution=self._execution(job, attempt.started, finished, timings, device, answer),
            governance=self.governance,
            versions=self.versions,
        )
        # The pictures, then the docling JSON, the Markdown, and the sidecar last ("complete").
        files = [(MARKDOWN, markdown), (SIDECAR, sidecar_bytes(document))]
        if rendered.docling_json is not None:
            files.insert(0, (DOCLING_JSON, rendered.docling_json))
        paths = self._publish(folder, job, files, Phase.PUBLISHED, {}, rendered.pictures)
        attempt.bound.info(
            "job_succeeded",
            pages=answer.pages,
            markdown=str(paths[MARKDOWN]),
            acceleration_used=answer.acceleration_used,
            backend=answer.backend_used,
            seconds=round(timings["total_ms"] / 1000, 3),
            warnings=warnings,
        )
        return Outcome(
            job.job_id,
            Status.SUCCEEDED,
            outputs=paths,
            measured=_measured(answer, device, finished - attempt.started),
        )

    def fail(self, attempt: Attempt, failure: JobFailure) -> Outcome:
        for _try in range(_NAME_TRIES):
            try:
                return self._fail(attempt, failure)
            except NameTaken as taken:
                self._rename_after(attempt, taken)
        raise FileExistsError(f"no output name stayed free for {attempt.job.relative_path!r}")

    def _rename_after(self, attempt: Attempt, taken: NameTaken) -> None:
        """Just before the commit a name was found taken by a file this job did not write
        (placement never replaces one): the job gives up that stem and the next try chooses a
        free one."""
        job = attempt.job
        if job.output_stem is not None:
            self._release(job)
        attempt.bound.warning("output_name_taken", reason=str(taken), effect="choosing the next")
        attempt.job = self.custody.update(job, output_stem=None)

    def _fail(self, attempt: Attempt, failure: JobFailure) -> Outcome:
        facts = attempt.facts or self.facts_anyway(attempt.job)
        folder, job = self._named(attempt.job)
        assert job.output_stem is not None
        finished = self.clock()
        document = error_document(
            job_id=job.job_id,
            source=SourceInfo(job.relative_path, facts.size_bytes, facts.sha256, attempt.pages),
            code=failure.code,
            message=failure.message,
            details=failure.details,
            execution=self._execution(
                job, attempt.started, finished, attempt.timings or {}, None, None
            ),
            governance=self.governance,
            versions=self.versions,
        )
        error = document["error"]
        paths = self._publish(
            folder, job, [(ERROR, sidecar_bytes(document))], Phase.FAILED_PUBLISHED, error
        )
        attempt.bound.warning(
            "job_failed",
            code=failure.code.value,
            retryable=failure.code.retryable,
            message=failure.message,
            details=failure.details,
        )
        return Outcome(job.job_id, Status.FAILED, failure.code.value, paths)

    def give_back(self, attempt: Attempt, reason: str, **details: Any) -> Outcome:
        target = self.custody.return_to_inbox(attempt.job)
        attempt.bound.info("job_returned_to_inbox", reason=reason, path=str(target), **details)
        return Outcome(attempt.job.job_id, Status.RETURNED, reason)

    def dispose_after_restart(self, attempt: Attempt) -> Outcome | None:
        """A job whose outputs were committed before a crash or a takeover only needs what is
        still staged placed, and its original moved."""
        job = attempt.job
        if job.phase is Phase.CLAIMED:
            return None
        folder = output_folder(self.config.paths.outbox, job.folder_parts)
        self._finish(folder, job)
        # What was published, for the hooks (the sidecar or the envelope is always committed).
        kind = SIDECAR if job.phase is Phase.PUBLISHED else ERROR
        outputs = {kind: folder / (job.output_stem + kind)} if job.output_stem else {}
        if job.phase is Phase.PUBLISHED:
            attempt.bound.info("job_disposed_after_restart")
            return Outcome(job.job_id, Status.SUCCEEDED, outputs=outputs)
        attempt.bound.info("job_failed_disposed_after_restart")
        return Outcome(job.job_id, Status.FAILED, job.outcome.get("code"), outputs)

    def forget(self, job: Job) -> bool:
        """Another instance took ``job`` over: a stage this one never committed is litter.
        True when this instance had committed it (the new holder places from that stage)."""
        if job.job_id in self._committed:
            self._committed.discard(job.job_id)
            return True
        with contextlib.suppress(OSError):
            folder = output_folder(self.config.paths.outbox, job.folder_parts)
            discard(folder, stage_name(job.job_id, self.custody.instance))
        return False

    # -- the publish step ---------------------------------------------------------------------

    def _named(self, job: Job) -> tuple[ShareDir, Job]:
        """The job's output folder, and the job with its output stem chosen and reserved
        (kept from an earlier attempt, whose temporaries are cleared)."""
        folder = output_folder(self.config.paths.outbox, job.folder_parts)
        if job.output_stem is not None:
            remove_temporaries(folder, job.job_id, job.output_stem)
            return folder, job
        stem = choose_stem(
            folder,
            job.name,
            job.relative_path,
            on_collision=self.config.output.on_collision,
            reserve=lambda where, key: self.custody.reservations.reserve(where, key, job.job_id),
            longest=DOCLING_JSON if "docling_json" in job.options.formats else ERROR,
            where=folder_key(job.folder_parts),
        )
        return folder, self.custody.update(job, output_stem=stem)

    def _publish(
        self,
        folder: ShareDir,
        job: Job,
        files: list[tuple[str, bytes]],
        phase: Phase,
        error: dict[str, Any],
        pictures: tuple[tuple[str, bytes], ...] = (),
    ) -> dict[str, Path]:
        """Stage, commit, place, dispose (see the module's docstring)."""
        stem = job.output_stem
        assert stem is not None
        members = ([stem + ARTIFACTS] if pictures else []) + [stem + kind for kind, _ in files]
        name = stage_name(job.job_id, self.custody.instance)
        stage = fresh_stage(folder, name)
        write_pictures(stage, stem, job.job_id, pictures)
        write_outputs(stage, stem, job.job_id, files)
        if self.config.output.on_collision != "replace":
            blocking = taken(folder, members, job.relative_path)
            if blocking:
                discard(folder, name)
                raise NameTaken(f"{blocking[0]} appeared in {folder.path} meanwhile")
        # The commit point: one rename in this instance's claim folder (see jobs.placing).
        job = self.custody.update(
            job, phase=phase, outcome=error, stage=name, staged=tuple(members)
        )
        self._committed.add(job.job_id)
        self._finish(folder, job)
        return {kind: folder / (stem + kind) for kind, _content in files}

    def _finish(self, folder: ShareDir, job: Job) -> None:
        """Place what is still staged, then move the original and release the name."""
        stem = job.output_stem
        if job.stage is not None and stem is not None:
            replacing = self.config.output.on_collision == "replace"
            renamed = place(folder, job.stage, job.staged, replacing, job.relative_path)
            if renamed:
                log.error("output_name_taken", job_id=job.job_id, placed_as=renamed)
        if job.phase is Phase.PUBLISHED:
            if stem is not None:
                remove_superseded_error(folder, stem, job.relative_path)
            self.custody.archive(job, self.config.output.source_after_success)
        else:
            self.custody.fail(job, job.outcome, self._error_json_of(job))
        self._release(job)
        self._committed.discard(job.job_id)

    def _release(self, job: Job) -> None:
        if job.output_stem is not None:
            where = folder_key(job.folder_parts)
            self.custody.reservations.release(where, job.output_stem, job.job_id)

    def _error_json_of(self, job: Job) -> Path | None:
        if job.output_stem is None:
            return None
        return output_folder(self.config.paths.outbox, job.folder_parts) / (job.output_stem + ERROR)

    # -- what the sidecar says about the run --------------------------------------------------

    def facts_anyway(self, job: Job) -> SourceFacts:
        """Size and hash for an envelope when the checks never got that far."""
        path = self.custody.source_path(job)
        try:
            size: int | None = os.lstat(path).st_size
        except OSError:
            size = None
        digest = None
        if size is not None and size <= self.config.conversion.max_file_bytes:
            digest = sha256_of(path)
        return SourceFacts(size_bytes=size or 0, sha256=digest)

    def _device(self, answer: Converted) -> dict[str, Any] | None:
        """The GPU that converted it: as its worker probed it (several workers may differ)."""
        if answer.acceleration_used != "cuda":
            return None
        seen = answer.device
        if seen is None:
            probe = self.engine.probe
            seen = probe.device.to_dict() if probe is not None and probe.device else None
        if seen is None:
            return None
        held = answer.gpu_memory or (None, None)  # what torch still held once the job ended
        return {
            **seen,
            "memory_peak_bytes": answer.peak_gpu_memory_bytes,
            "memory_allocated_bytes": held[0],
            "memory_reserved_bytes": held[1],
        }

    def _execution(
        self,
        job: Job,
        started: float,
        finished: float,
        timings: dict[str, float],
        device: dict[str, Any] | None,
        answer: Converted | None,
    ) -> Execution:
        worker: dict[str, Any] = {}
        if self.engine.info is not None:
            worker = {"pid": self.engine.info.pid, "starts": self.engine.starts}
            if answer is not None and answer.thread_id is not None:
                worker["conversion_thread"] = answer.thread_id
            worker["gpu_probe"] = self.engine.info.probe.reason
        return Execution(
            acceleration_policy=job.options.acceleration_policy,
            profile=job.profile,
            attempt=job.attempts,
            instance=self.custody.instance,
            device=device,
            started_at=started,
            finished_at=finished,
            timings_ms=timings,
            worker=worker,
            engine=self.engine.kind,
            host=answer.host if answer is not None and answer.host else socket.gethostname(),
            batching=summary(answer.batches) if answer is not None else {},
            tables=answer.tables if answer is not None else TableCounts(),
        )


def _measured(answer: Converted, device: dict[str, Any] | None, seconds: float) -> Measured:
    layout = summary(answer.batches).get("layout", {})
    return Measured(
        pages=answer.pages,
        seconds=max(0.0, seconds),
        peak_gpu_memory_bytes=answer.peak_gpu_memory_bytes if device is not None else None,
        layout_calls=float(layout.get("share_of_calls", 0.0)),
        layout_pages=int(layout.get("pages", 0)),
        tables=answer.tables,
    )


def cleanup_after_restart(config: Config, job: Job) -> None:
    """Remove temporary files a killed attempt of ``job`` left in its output folder (none of a
    committed job's: its stage is still to be placed)."""
    if job.output_stem is None or job.phase is not Phase.CLAIMED:
        return
    folder = output_folder(config.paths.outbox, job.folder_parts)
    with contextlib.suppress(OSError):
        removed = remove_temporaries(folder, job.job_id, job.output_stem)
        if removed:
            log.info("stale_temporaries_removed", job_id=job.job_id, count=removed)
