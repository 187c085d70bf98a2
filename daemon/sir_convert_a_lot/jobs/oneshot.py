"""``sir-convert convert FILE...``: the daemon's engine, lock, lifecycle and outputs, for files
named on the command line. The files stay where they are: ``InPlaceCustody`` reads them in place,
keeps the job records in memory, and never moves, renames or deletes a user's file."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, Paths
from sir_convert_a_lot.engine.choose import build_engine
from sir_convert_a_lot.engine.interface import EngineStartError
from sir_convert_a_lot.jobs.custody import require_safe_instance
from sir_convert_a_lot.jobs.job import Job, new_job_id
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.jobs.outcome import Outcome
from sir_convert_a_lot.jobs.reservations import Reservations
from sir_convert_a_lot.options import ConversionOptions

log = logs.get()


class InPlaceCustody:
    """The ``Custody`` of files named on the command line: each stays where the user put it,
    whatever the outcome."""

    def __init__(self, instance: str, reservations: Reservations) -> None:
        self.instance = require_safe_instance(instance)
        self.reservations = reservations
        self._sources: dict[str, Path] = {}
        self._records: dict[str, Job] = {}

    def admit(self, file: Path, options: ConversionOptions) -> Job:
        """A job for ``file``, as if it had just been claimed."""
        try:
            info = os.lstat(file)
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = 0, 0
        job = Job(
            job_id=new_job_id(),
            relative_path=file.name,
            profile=None,
            options=options,
            claimed_at=time.time(),
            claimed_size=size,
            claimed_mtime_ns=mtime,
            instance=self.instance,
        )
        self._sources[job.job_id] = file
        self._records[job.job_id] = job
        return job

    def source_path(self, job: Job) -> Path:
        return self._sources[job.job_id]

    def still_mine(self, job: Job) -> bool:
        return True

    def update(self, job: Job, **changes: Any) -> Job:
        job = replace(job, **changes)
        self._records[job.job_id] = job
        return job

    def begin_attempt(self, job: Job) -> Job:
        return self.update(job, attempts=job.attempts + 1)

    def reload(self, job: Job) -> Job | None:
        return self._records.get(job.job_id)

    def archive(self, job: Job, mode: str) -> Path | None:
        self._records.pop(job.job_id, None)
        return None

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        self._records.pop(job.job_id, None)
        return self._sources[job.job_id]

    def return_to_inbox(self, job: Job) -> Path:
        self._records.pop(job.job_id, None)
        return self._sources[job.job_id]


def convert_files(
    config: Config,
    files: list[Path],
    out_dir: Path,
    device_wait_seconds: float | None = None,
) -> list[Outcome]:
    """Convert each file into ``out_dir``; one Outcome per file, in order."""
    governance = config.governance
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sir-convert-") as scratch:
        root = Path(scratch)
        paths = Paths(
            inbox=root / "inbox",
            outbox=out_dir,
            state=root / "state",
            failed=root / "failed",
            archive=root / "archive",
        )
        instance = f"{config.instances.name}-convert-{os.getpid()}"
        custody = InPlaceCustody(instance, Reservations(paths.state / "reservations"))
        local = replace(config.with_instance_name(instance), paths=paths)
        engine = build_engine(
            local, governance, instance=instance, device_wait_seconds=device_wait_seconds
        )
        runner = JobRunner(local, governance, custody, engine)
        try:
            engine.start()
            return [runner.run(custody.admit(file, local.defaults)) for file in files]
        except EngineStartError as exc:
            log.error(
                "engine_start_failed", reason=exc.reason, message=str(exc), details=exc.details
            )
            raise
        finally:
            engine.stop()
