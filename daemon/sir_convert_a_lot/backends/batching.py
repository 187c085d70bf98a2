"""How full each model call's batch was: the measure that cross-document batching is judged by.

docling hands each model stage (layout, table, OCR) a batch of pages per call, up to
``gpu.<stage>_batch_size``; a batch can only fill from the pages in flight. The counters stand in
front of the loaded stage models, note the pages of every call, and say per job how many calls
each stage made and how full they were (``execution.batching`` in the sidecar).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any


class BatchLog:
    """Batch sizes of every model call since the last ``take``, per stage. Calls come from the
    model thread, ``take`` from the converting thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[str, list[int]] = {}

    def record(self, stage: str, pages: int) -> None:
        with self._lock:
            self._sizes.setdefault(stage, []).append(pages)

    def take(self, stages: Iterable[str] | None = None) -> dict[str, tuple[int, ...]]:
        """The sizes noted since the last take (only ``stages`` when given), and a fresh start."""
        with self._lock:
            taken, self._sizes = self._sizes, {}
        wanted = set(stages) if stages is not None else set(taken)
        return {stage: tuple(sizes) for stage, sizes in taken.items() if stage in wanted}


class CountedModel:
    """A docling stage model that notes the pages of every call, then runs the model."""

    def __init__(self, model: Any, stage: str, log: BatchLog) -> None:
        self._model = model
        self._stage = stage
        self._log = log

    def __call__(self, conv_res: Any, pages: Any, *args: Any, **kwargs: Any) -> Any:
        pages = list(pages)
        self._log.record(self._stage, len(pages))
        return self._model(conv_res, pages, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def summary(batches: dict[str, tuple[int, ...]] | dict[str, list[int]]) -> dict[str, Any]:
    """Per stage: calls, pages and the largest batch (mean = pages / calls)."""
    return {
        stage: {"calls": len(sizes), "pages": sum(sizes), "max_batch": max(sizes)}
        for stage, sizes in sorted(batches.items())
        if sizes
    }
