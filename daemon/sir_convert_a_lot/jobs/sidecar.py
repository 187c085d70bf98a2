"""The v1 documents a user reads: the ``<stem>.json`` sidecar and the ``<stem>.error.json``
envelope. Pure functions from facts to dicts; publish writes them with sorted keys."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sir_convert_a_lot import API_VERSION
from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.errors import ErrorCode
from sir_convert_a_lot.names import json_name
from sir_convert_a_lot.options import ConversionOptions


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SourceInfo:
    relative_path: str
    size_bytes: int | None
    sha256: str | None
    pages: int | None

    def to_dict(self) -> dict[str, Any]:
        name = self.relative_path.rsplit("/", 1)[-1]
        return {
            **json_name(name, "filename"),
            **json_name(self.relative_path, "relative_path"),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "pages": self.pages,
        }


@dataclass(frozen=True)
class Execution:
    acceleration_policy: str
    profile: str | None
    attempt: int
    instance: str
    device: dict[str, Any] | None
    started_at: float
    finished_at: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)
    engine: str = "local"  # which engine converted: "local" (a worker process) or "ray"
    host: str = field(default_factory=socket.gethostname)  # the host that converted
    batching: dict[str, Any] = field(default_factory=dict)  # per model stage: calls, pages, max
    tables: TableCounts = field(default_factory=TableCounts)  # predicted, fast, checked, mismatched

    def to_dict(self) -> dict[str, Any]:
        return {
            "acceleration_policy": self.acceleration_policy,
            "profile": self.profile,
            "attempt": self.attempt,
            "instance": self.instance,
            "engine": self.engine,
            "host": self.host,
            "device": self.device,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "timings_ms": self.timings_ms,
            "worker": self.worker,
            "batching": self.batching,
            "tables": self.tables.to_dict(),
        }


def governance_block(governance: Governance) -> dict[str, Any]:
    return {
        "lock": governance.lock,
        "decision_record": (
            governance.decision_record if governance.unlocked or governance.cpu_stages else None
        ),
        "cpu_stages": list(governance.cpu_stages),
    }


def success_document(
    *,
    job_id: str,
    source: SourceInfo,
    markdown_filename: str,
    markdown_size: int,
    markdown_sha256: str,
    artifacts: list[dict[str, Any]],
    options: ConversionOptions,
    backend_used: str,
    acceleration_used: str,
    stage_devices: dict[str, str],
    ocr_enabled: bool,
    warnings: list[str],
    execution: Execution,
    governance: Governance,
    versions: dict[str, str],
) -> dict[str, Any]:
    return {
        "api_version": API_VERSION,
        "job_id": job_id,
        "status": "succeeded",
        "source": source.to_dict(),
        "result": {
            "artifact": {
                **json_name(markdown_filename, "markdown_filename"),
                "size_bytes": markdown_size,
                "sha256": markdown_sha256,
            },
            "artifacts": artifacts,
            "conversion_metadata": {
                "backend_used": backend_used,
                "acceleration_used": acceleration_used,
                "stage_devices": stage_devices,
                "ocr_enabled": ocr_enabled,
                "table_mode": options.table_mode,
                "normalize": options.normalize,
                "options": options.effective(),
                "options_fingerprint": options.fingerprint(),
            },
            "warnings": warnings,
        },
        "execution": execution.to_dict(),
        "governance": governance_block(governance),
        "versions": versions,
    }


def error_document(
    *,
    job_id: str,
    source: SourceInfo,
    code: ErrorCode,
    message: str,
    details: dict[str, Any],
    execution: Execution,
    governance: Governance,
    versions: dict[str, str],
) -> dict[str, Any]:
    return {
        "api_version": API_VERSION,
        "job_id": job_id,
        "status": "failed",
        "source": source.to_dict(),
        "execution": execution.to_dict(),
        "error": {
            "code": code.value,
            "message": message,
            "retryable": code.retryable,
            "details": details,
            "correlation_id": job_id,
        },
        "governance": governance_block(governance),
        "versions": versions,
    }
