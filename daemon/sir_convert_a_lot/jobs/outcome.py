"""How a job's life ended, as the service and ``convert`` see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sir_convert_a_lot.jobs.job import Job


class Status(StrEnum):
    """The terminal outcomes. A crash that leaves attempts is not one of them: the lifecycle
    tries again itself and only ever hands back one of these."""

    SUCCEEDED = "succeeded"  # Markdown and sidecar published, original archived or deleted
    FAILED = "failed"  # error envelope published, original in failed/
    RETURNED = "returned"  # original given back to the inbox (stopping, or still being written)
    DEFERRED = "deferred"  # not even failing worked (outbox or failed/ unwritable): try later


@dataclass(frozen=True)
class Outcome:
    job_id: str
    status: Status
    code: str | None = None  # the error code when failed; why, when returned or deferred
    outputs: dict[str, Path] = field(default_factory=dict)
    job: Job | None = None  # when deferred: the job as last recorded, to be tried again
