"""``sir-convert convert FILE...``: the daemon's engine, lock and outputs, for files named on the
command line. The files stay where they are: a one-shot spool reads them in place and keeps its
job records in a temporary folder that is removed afterwards."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config, Governance, Paths
from sir_convert_a_lot.engine.supervisor import Engine, EngineStartError
from sir_convert_a_lot.fsutil import remove_tree
from sir_convert_a_lot.jobs.runner import JobRunner, Outcome
from sir_convert_a_lot.jobs.spool import Job, Spool, new_job_id
from sir_convert_a_lot.ops import logs

log = logs.get()


class OneShotSpool(Spool):
    """A spool whose sources are the user's own files: never moved, renamed or deleted."""

    def __init__(self, paths: Paths, instance: str, sources: dict[str, Path]) -> None:
        super().__init__(paths, instance)
        self.sources = sources

    def source_path(self, job: Job) -> Path:
        return self.sources[job.job_id]

    def still_mine(self, job: Job) -> bool:
        return True

    def archive(self, job: Job, mode: str) -> Path | None:
        remove_tree(self.job_folder(job))
        return None

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        remove_tree(self.job_folder(job))
        return self.sources[job.job_id]

    def return_to_inbox(self, job: Job) -> Path:
        remove_tree(self.job_folder(job))
        return self.sources[job.job_id]


def convert_files(
    config: Config,
    files: list[Path],
    out_dir: Path,
    governance: Governance | None = None,
    device_wait_seconds: float | None = None,
) -> list[Outcome]:
    """Convert each file into ``out_dir``; one Outcome per file, in order."""
    governance = governance if governance is not None else config.governance
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="sir-convert-") as scratch:
        root = Path(scratch)
        paths = Paths(
            inbox=root / "inbox",
            outbox=out_dir,
            state=root / "state",
            failed=root / "failed",
            archive=root / "archive",
        )
        sources: dict[str, Path] = {}
        instance = f"{config.instances.name}-convert-{os.getpid()}"
        spool = OneShotSpool(paths, instance, sources)
        spool.ensure_layout()
        local = replace(config.with_instance_name(instance), paths=paths)
        engine = Engine(
            local, governance, instance=instance, device_wait_seconds=device_wait_seconds
        )
        runner = JobRunner(local, governance, spool, engine)
        try:
            engine.start()
            for file in files:
                outcomes.append(_convert_one(spool, runner, local, file, sources))
        except EngineStartError as exc:
            log.error(
                "engine_start_failed", reason=exc.reason, message=str(exc), details=exc.details
            )
            raise
        finally:
            engine.stop()
    return outcomes


def _convert_one(
    spool: OneShotSpool, runner: JobRunner, config: Config, file: Path, sources: dict[str, Path]
) -> Outcome:
    job_id = new_job_id()
    sources[job_id] = file
    try:
        info = os.lstat(file)
        size, mtime = info.st_size, info.st_mtime_ns
    except OSError:
        size, mtime = 0, 0
    job = Job(
        job_id=job_id,
        relative_path=file.name,
        profile=None,
        options=config.defaults,
        claimed_at=time.time(),
        claimed_size=size,
        claimed_mtime_ns=mtime,
        instance=spool.instance,
    )
    spool.job_folder(job).mkdir(parents=True)
    spool.save(job)
    try:
        outcome = runner.run(job)
        while outcome.status == "requeued":
            reloaded = spool.reload(job)
            if reloaded is None:
                break
            outcome = runner.run(reloaded)
        return outcome
    finally:
        with contextlib.suppress(OSError):
            remove_tree(spool.job_folder(job))
