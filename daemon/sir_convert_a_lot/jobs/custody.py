"""Where a job's original lives while it converts, and where it goes when the job ends.

The lifecycle asks only this interface. The daemon's ``Spool`` keeps originals in its state
folder and moves them to the archive, failed/ or back to the inbox; ``convert FILE...`` keeps
the user's files where they are (``jobs.oneshot.InPlaceCustody``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from sir_convert_a_lot.config import instance_name_problem
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.reservations import Reservations


class Custody(Protocol):
    @property
    def instance(self) -> str:
        """The instance that holds the job (in sidecars and logs)."""

    @property
    def reservations(self) -> Reservations:
        """Where output stems are held until a job's outputs are out."""

    def source_path(self, job: Job) -> Path:
        """The original's path now."""

    def still_mine(self, job: Job) -> bool:
        """False when another instance took the job over (we were presumed dead)."""

    def update(self, job: Job, **changes: Any) -> Job:
        """Record a decision before acting on it; the job as now recorded."""

    def begin_attempt(self, job: Job) -> Job:
        """Count a conversion start, recorded before it starts."""

    def reload(self, job: Job) -> Job | None:
        """The job as its record now says; None when it is gone."""

    def archive(self, job: Job, mode: str) -> Path | None:
        """After success: archive or delete the original (``output.source_after_success``)."""

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        """After failure: set the original aside where ``retry`` finds it."""

    def return_to_inbox(self, job: Job) -> Path:
        """Give the original back, uncounted (stopping, or still being written)."""


def require_safe_instance(instance: str) -> str:
    """The instance name becomes a path part under the state folder: refuse one that could
    climb (e.g. a default taken from an odd host name). Room is left for names derived from a
    configured one (``convert`` adds ``-convert-<pid>``)."""
    problem = instance_name_problem(instance, max_length=200)
    if problem:
        raise ConfigError(f"instances.name: {instance!r} is {problem}")
    return instance
