"""A claimed file as the spool records it: who claimed it, what was decided, how far it got.

``job.json`` mirrors a ``Job``; every name read back from one is checked before use, so a record
cannot lead a move out of its folder.
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sir_convert_a_lot.fsutil import check_name, check_relative, read_json
from sir_convert_a_lot.names import decode_from_record, display, encode_for_record
from sir_convert_a_lot.options import ConversionOptions


class Phase(StrEnum):
    """How far a job got, written down before each step is taken, so that recovery after a
    crash resumes at the right step: publish again, or only dispose of the original."""

    CLAIMED = "claimed"  # the original is in the job folder; nothing published yet
    # The outputs are committed (staged, and the stage named in the record): placing what is
    # still staged, then disposing of the original, is all that is left (``jobs.placing``).
    PUBLISHED = "published"  # Markdown and sidecar; the original goes to the archive
    FAILED_PUBLISHED = "failed_published"  # the error envelope; the original goes to failed/


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    """A claimed file and everything decided about it so far (mirrors job.json)."""

    job_id: str
    relative_path: str  # inbox-relative, surrogateescape str: exact bytes on disk
    profile: str | None
    options: ConversionOptions
    claimed_at: float
    claimed_size: int
    claimed_mtime_ns: int
    instance: str
    claimed_sha256: str | None = None  # hashed at the first look after the claim
    attempts: int = 0
    output_stem: str | None = None
    phase: Phase = Phase.CLAIMED
    outcome: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None  # the committed stage folder in the job's outbox folder
    staged: tuple[str, ...] = ()  # its members, in the order they are placed (sidecar last)

    @property
    def name(self) -> str:
        return Path(self.relative_path).name

    @property
    def folder_parts(self) -> tuple[str, ...]:
        return Path(self.relative_path).parent.parts

    @property
    def shown(self) -> str:
        return display(self.relative_path)

    def to_record(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "relative_path": display(self.relative_path),
            "relative_path_b64": encode_for_record(self.relative_path),
            "profile": self.profile,
            "options": self.options.to_dict(),
            "claimed_at": self.claimed_at,
            "claimed_size": self.claimed_size,
            "claimed_mtime_ns": self.claimed_mtime_ns,
            "claimed_sha256": self.claimed_sha256,
            "instance": self.instance,
            "attempts": self.attempts,
            "output_stem_b64": (
                encode_for_record(self.output_stem) if self.output_stem is not None else None
            ),
            "phase": self.phase,
            "outcome": self.outcome,
            "stage_b64": encode_for_record(self.stage) if self.stage is not None else None,
            "staged_b64": [encode_for_record(member) for member in self.staged],
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        """The job a record describes; OutsideFolder (a ValueError) when a name in it could
        lead out of the inbox or the outbox folder it must stay in."""
        stem = data.get("output_stem_b64")
        relative_path = decode_from_record(data["relative_path_b64"])
        check_relative(relative_path, "relative_path")
        output_stem = decode_from_record(stem) if stem else None
        if output_stem is not None:
            check_name(output_stem, "output_stem")
        stage = decode_from_record(data["stage_b64"]) if data.get("stage_b64") else None
        if stage is not None:
            check_name(stage, "stage")
        staged = tuple(
            check_name(decode_from_record(member), "staged")
            for member in data.get("staged_b64") or ()
        )
        return cls(
            job_id=str(data["job_id"]),
            relative_path=relative_path,
            profile=data.get("profile"),
            options=ConversionOptions.from_dict(data["options"]),
            claimed_at=float(data["claimed_at"]),
            claimed_size=int(data["claimed_size"]),
            claimed_mtime_ns=int(data["claimed_mtime_ns"]),
            instance=str(data["instance"]),
            claimed_sha256=_optional_str(data.get("claimed_sha256")),
            attempts=int(data.get("attempts", 0)),
            output_stem=output_stem,
            phase=Phase(data.get("phase", Phase.CLAIMED)),
            outcome=dict(data.get("outcome") or {}),
            stage=stage,
            staged=staged,
        )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def read_job(record: Path) -> Job | None:
    """The job a record describes, or None when it is missing or damaged in any way."""
    try:
        data = read_json(record)
        return Job.from_record(data) if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
