"""Disposal: where the original goes when its job ends (the archive, the failed folder, or back
to the inbox), and the failure records that ``retry`` and ``status`` read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sir_convert_a_lot.fsutil import (
    PRIVATE_FILE_MODE,
    entries,
    read_json,
    remove_tree,
    write_json_atomic,
)
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.spool_folders import SpoolFolders
from sir_convert_a_lot.names import display, encode_for_record


class Disposal(SpoolFolders):
    """Moves a finished job's original out of the spool and removes its folder. Apart from the
    claims and records because it is the one part that writes to the archive and failed
    folders, and the failure records are its own account of what it set aside."""

    def return_to_inbox(self, job: Job) -> Path:
        """The original back to the inbox (SIGTERM, being written); numbered when taken."""
        placed = self._give_back(self.job_folder(job), job.folder_parts, job.name)
        remove_tree(self.job_folder(job))
        return self.paths.inbox / placed

    def archive(self, job: Job, mode: str) -> Path | None:
        """After success: into the archive (mirroring folders) or deleted."""
        target: Path | None = None
        if mode == "delete":
            os.unlink(self.source_path(job))  # ENOENT: taken over meanwhile, not ours to count
        else:
            placed = self._set_aside(
                self.job_folder(job), self.paths.archive, job.folder_parts, job.name
            )
            target = self.paths.archive / placed
        remove_tree(self.job_folder(job))
        return target

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        """After failure: the original into the failed folder, and a record for retry."""
        placed = self._set_aside(
            self.job_folder(job), self.paths.failed, job.folder_parts, job.name
        )
        target = self.paths.failed / placed
        record = {
            "job_id": job.job_id,
            "relative_path": display(job.relative_path),
            "relative_path_b64": encode_for_record(job.relative_path),
            "failed_path_b64": encode_for_record(str(target.relative_to(self.paths.failed))),
            "error_json_b64": (
                encode_for_record(str(error_json.relative_to(self.paths.outbox)))
                if error_json
                else None
            ),
            "code": error.get("code"),
            "message": error.get("message"),
            "failed_at": self.clock(),
            "instance": self.instance,
        }
        write_json_atomic(self.failures_root / f"{job.job_id}.json", record, PRIVATE_FILE_MODE)
        remove_tree(self.job_folder(job))
        return target

    def failure_records(self) -> list[dict[str, Any]]:
        """Every failure record, oldest first, with ``_record`` (its path) and ``_trusted``:
        whether the owner of the failures folder wrote it (anyone else's is shown, never acted
        on)."""
        try:
            owner: int | None = os.lstat(self.failures_root).st_uid
        except OSError:
            owner = None
        records: list[dict[str, Any]] = []
        for entry in entries(self.failures_root):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
                record = read_json(Path(entry.path))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                record["_record"] = entry.path
                record["_trusted"] = uid == owner
                records.append(record)
        records.sort(key=lambda r: float(r.get("failed_at") or 0))
        return records
