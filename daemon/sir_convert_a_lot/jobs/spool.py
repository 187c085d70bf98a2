"""The spool: claims, job records, leases, recovery and disposition, all as renames.

Layout under ``paths.state`` (on the inbox's filesystem, so every move is one ``rename``)::

    tmp/<instance>/<job_id>/          a claim being built
    claimed/<instance>/<job_id>/      source  +  job.json
    instances/<instance>.lease        heartbeat (mtime) and what the instance is doing
    instances/<instance>.stopped      when the instance last stopped, and its version
    failures/<job_id>.json            where a failed original went, for retry and status

The spool is the service user's alone: its folders are made 0750 and its records 0640 whatever
the umask, and every name read back from a record is checked before use (``Job.from_record``),
so a record cannot lead a move out of its folder.

Every decision is written to ``job.json`` before it is acted on, so that recovery after a crash
at any point only has to read what is there. At every instant the original lives in exactly one
place: the inbox, a job folder, the archive or the failed folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.jobs.claims import Claims
from sir_convert_a_lot.jobs.disposal import Disposal
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.leases import Instances, Lease
from sir_convert_a_lot.jobs.records import Records
from sir_convert_a_lot.jobs.spool_folders import RECORD, SOURCE, Clock, SpoolFolders

__all__ = ["RECORD", "SOURCE", "Lease", "Spool"]


class Spool(SpoolFolders):
    """One instance's spool, split along its seams: ``claims`` (dispatch), ``records`` (the
    lifecycle, recovery), ``instances`` (leases and takeover: the heartbeat, status, start-up)
    and ``disposal`` (where originals go, failure records). Callers hold the part they use; the
    spool itself is only the ``Custody`` the lifecycle asks, which spans records and disposal."""

    def __init__(self, paths: Paths, instance: str, clock: Clock = time.time) -> None:
        super().__init__(paths, instance, clock)
        self.claims = Claims(paths, instance, clock)
        self.records = Records(paths, instance, clock)
        self.instances = Instances(self.records)
        self.disposal = Disposal(paths, instance, clock)

    # -- Custody (jobs.custody) -----------------------------------------------------------------

    def still_mine(self, job: Job) -> bool:
        return self.records.still_mine(job)

    def update(self, job: Job, **changes: Any) -> Job:
        return self.records.update(job, **changes)

    def begin_attempt(self, job: Job) -> Job:
        return self.records.begin_attempt(job)

    def reload(self, job: Job) -> Job | None:
        return self.records.reload(job)

    def archive(self, job: Job, mode: str) -> Path | None:
        return self.disposal.archive(job, mode)

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        return self.disposal.fail(job, error, error_json)

    def return_to_inbox(self, job: Job) -> Path:
        return self.disposal.return_to_inbox(job)
