"""How a job's life ended, as the service and ``convert`` see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.jobs.job import Job


class Status(StrEnum):
    """The terminal outcomes. A crash that leaves attempts is not one of them: the lifecycle
    tries again itself and only ever hands back one of these."""

    SUCCEEDED = "succeeded"  # Markdown and sidecar published, original archived or deleted
    FAILED = "failed"  # error envelope published, original in failed/
    RETURNED = "returned"  # original given back to the inbox (stopping, or still being written)
    DEFERRED = "deferred"  # not even failing worked (outbox or failed/ unwritable): try later


@dataclass(frozen=True)
class Measured:
    """What a succeeded conversion measured, for the metrics (``service.metrics``)."""

    pages: int
    seconds: float  # from the start of the job's last attempt to its outputs out
    peak_gpu_memory_bytes: int | None = None  # what the worker saw, when it ran on a GPU
    layout_calls: float = 0.0  # this job's share of the layout model's calls
    layout_pages: int = 0  # its pages in those calls
    tables: TableCounts = field(default_factory=TableCounts)  # its tables, for the table metrics


@dataclass(frozen=True)
class Outcome:
    job_id: str
    status: Status
    code: str | None = None  # the error code when failed; why, when returned or deferred
    outputs: dict[str, Path] = field(default_factory=dict)
    job: Job | None = None  # when deferred: the job as last recorded, to be tried again
    measured: Measured | None = None  # when succeeded and converted by this attempt
