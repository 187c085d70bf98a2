"""How full each model call's batch was: the measure that cross-document batching is judged by.

docling hands each model stage (layout, table, OCR) a batch of pages per call, up to
``gpu.<stage>_batch_size``; with several documents in flight, ``backends.coalesce`` merges
their calls into one. The log notes, per document, every call its pages took part in: how many
of its own pages, and how many pages the call carried in all. The sidecar's
``execution.batching`` says per stage how many calls a job's pages were in and how full they
were; summed over jobs, ``share_of_calls`` counts each merged call once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Per stage, per call: (this document's pages in the call, all pages in the call).
CallSizes = dict[str, tuple[tuple[int, int], ...]]


class BatchLog:
    """Calls per document and stage, from ``record`` (the model thread) until ``take`` (the
    thread converting that document)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, dict[str, list[tuple[int, int]]]] = {}

    def record(self, document: str, stage: str, own_pages: int, call_pages: int) -> None:
        with self._lock:
            stages = self._calls.setdefault(document, {})
            stages.setdefault(stage, []).append((own_pages, call_pages))

    def take(self, document: str, stages: Iterable[str] | None = None) -> CallSizes:
        """``document``'s calls (only ``stages`` when given); forgotten afterwards."""
        with self._lock:
            taken = self._calls.pop(document, {})
        wanted = set(stages) if stages is not None else set(taken)
        return {stage: tuple(calls) for stage, calls in taken.items() if stage in wanted}


def summary(batches: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Any]:
    """Per stage: the calls this job's pages were in, its pages, the largest and mean call
    (all documents' pages counted), and its share of those calls (own / call pages, summed)."""
    result: dict[str, Any] = {}
    for stage, calls in sorted(batches.items()):
        if not calls:
            continue
        sizes = [int(call[1]) for call in calls]
        result[stage] = {
            "calls": len(calls),
            "pages": sum(int(call[0]) for call in calls),
            "max_batch": max(sizes),
            "mean_batch": round(sum(sizes) / len(sizes), 2),
            "share_of_calls": round(sum(call[0] / call[1] for call in calls if call[1]), 4),
        }
    return result
