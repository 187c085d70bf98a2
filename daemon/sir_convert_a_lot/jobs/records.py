"""Job records: every decision written to ``job.json`` before it is acted on, and recovery,
which after a crash at any point only reads what is there.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.fsutil import (
    PRIVATE_FILE_MODE,
    make_private_dirs,
    remove_tree,
    subfolders,
    write_json_atomic,
)
from sir_convert_a_lot.jobs.job import Job, read_job
from sir_convert_a_lot.jobs.spool_folders import RECORD, SOURCE, SpoolFolders


class Records(SpoolFolders):
    """The records of this instance's claimed jobs: written before each step, read back by the
    lifecycle and by recovery. Apart from the claims and disposal because it never moves an
    original, except to quarantine one whose record is damaged."""

    def save(self, job: Job) -> Job:
        write_json_atomic(self.job_folder(job) / RECORD, job.to_record(), PRIVATE_FILE_MODE)
        return job

    def update(self, job: Job, **changes: Any) -> Job:
        return self.save(replace(job, **changes))

    def begin_attempt(self, job: Job) -> Job:
        """Every start of a conversion counts, written down before the conversion starts."""
        return self.update(job, attempts=job.attempts + 1)

    def still_mine(self, job: Job) -> bool:
        """False when a live instance took this job over (we were presumed dead)."""
        return os.path.lexists(self.source_path(job))

    def drop_orphan_reservations(self) -> int:
        """Reservations whose job no longer exists anywhere in the spool."""
        live = {job.name for owner in subfolders(self.claimed_root) for job in subfolders(owner)}
        live |= {job.name for owner in subfolders(self.tmp_root) for job in subfolders(owner)}
        return self.reservations.drop_orphans(live)

    def recover(self) -> list[Job]:
        """This instance's unfinished jobs after a restart, oldest first; half-built claims done."""
        self.ensure_layout()
        for building in subfolders(self.my_tmp):
            self.finish_half_claim(building, self.my_claims)
        return self._load_jobs(self.my_claims)

    def reload(self, job: Job) -> Job | None:
        """The job as its record now says (after the runner updated it)."""
        return read_job(self.my_claims / job.job_id / RECORD)

    def finish_half_claim(self, building: Path, into: Path) -> None:
        if os.path.lexists(building / SOURCE):
            make_private_dirs(into)
            with contextlib.suppress(FileNotFoundError):
                os.rename(building, into / building.name)
        else:
            remove_tree(building)

    def _load_jobs(self, folder: Path) -> list[Job]:
        jobs: list[Job] = []
        for job_folder in subfolders(folder):
            job = self.load_job(job_folder)
            if job is not None:
                jobs.append(job)
        jobs.sort(key=lambda j: (j.claimed_at, j.job_id))
        return jobs

    def load_job(self, job_folder: Path) -> Job | None:
        has_source = os.path.lexists(job_folder / SOURCE)
        job = read_job(job_folder / RECORD)
        if job is None:
            if has_source:
                # The record is damaged but the file is here: keep it visible to people.
                self._quarantine(job_folder)
            else:
                remove_tree(job_folder)
            return None
        if not has_source:
            # The original had already been archived or failed; only the folder was left.
            remove_tree(job_folder)
            return None
        if self._duplicate_of_inbox(job, job_folder):
            remove_tree(job_folder)
            return None
        if job.instance != self.instance or job_folder.name != job.job_id:
            job = replace(job, instance=self.instance, job_id=job_folder.name)
            write_json_atomic(job_folder / RECORD, job.to_record(), PRIVATE_FILE_MODE)
        return job

    def _duplicate_of_inbox(self, job: Job, job_folder: Path) -> bool:
        """A crash inside move_no_replace (link done, unlink not) leaves one file under two
        names; the inbox name wins and the job's is dropped."""
        try:
            ours = os.lstat(job_folder / SOURCE)
        except OSError:
            return False
        theirs = sharefs.lstat(self.paths.inbox, job.relative_path)
        return theirs is not None and sharefs.file_id(ours) == sharefs.file_id(theirs)

    def _quarantine(self, job_folder: Path) -> None:
        self._set_aside(
            job_folder, self.paths.failed, ("_unrecoverable",), f"{job_folder.name}.bin"
        )
        remove_tree(job_folder)
