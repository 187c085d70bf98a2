"""One model thread, many documents: concurrent calls to a stage model become one full call.

docling runs each document through stage threads of its own, and each stage hands its model a
batch of that document's pages only, so a share of one-page PDFs gives the layout model one page
a call however large its batch size. Here every stage model is wrapped in a ``SharedModel``:
a document's stage thread hands in its pages and waits; a scheduler thread (``sca-batcher``)
picks the next call for the one model thread (``sca-cuda``), merging the waiting calls of the
same model up to the stage's batch size, and gives each caller its own pages back, in order.

When to run a batch that is not full: at once when no other document in flight still has pages
on their way to the stage; otherwise after waiting at most ``gather_seconds`` for them. While the
model thread is busy, calls simply queue, and the next batch fills from them.

One document's fault stays its own: a merged call that raises is run again document by
document, so the exception reaches only the caller whose pages caused it.

How calls merge is a fact about docling's models, pinned by tests: layout and TableFormer use the
conversion result they are given only to time themselves and for debug drawings, so one merged
call of the model carries pages of several documents. The OCR model writes each page's OCR score
into its own document's result, so a merged OCR call is one turn of the model thread in which
the model reads each document's pages with that document's result, back to back. RapidOCR reads
one page image per inference either way (docling's OCR model loops over the pages it is given),
so the engine does the same work as in one call of all the pages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from sir_convert_a_lot.backends.batching import BatchLog

GATHER_SECONDS = 0.05
MERGEABLE_STAGES = frozenset({"layout", "table"})  # one model call for all the pages
PER_DOCUMENT_STAGES = frozenset({"ocr"})  # one turn: the model called per document, in a row


@dataclass
class _Call:
    document: str
    conv_res: Any
    pages: list[Any]
    arrived: float
    done: Future[list[Any]] = field(default_factory=Future)


class SharedModel:
    """Stands in for one loaded stage model; called from any document's stage thread."""

    def __init__(
        self,
        model: Any,
        stage: str,
        batch_size: int,
        coalescer: Coalescer,
        select: Callable[[Any], bool] | None = None,
    ) -> None:
        self.model = model
        self.stage = stage
        self.batch_size = max(1, batch_size)
        self.per_document = stage in PER_DOCUMENT_STAGES
        self.merges = stage in MERGEABLE_STAGES or self.per_document
        self.select = select  # which pages the model is for; the others pass it by
        self._coalescer = coalescer

    def __call__(self, conv_res: Any, page_batch: Iterable[Any]) -> list[Any]:
        pages = list(page_batch)
        if not pages or not getattr(self.model, "enabled", True):
            return list(self.model(conv_res, pages))  # a switched-off stage passes pages on
        chosen = pages if self.select is None else [p for p in pages if self.select(p)]
        if len(chosen) < len(pages):  # the others never come: no one is to wait for them
            self._coalescer.passed_by(conv_res, self.stage, len(pages) - len(chosen))
        if not chosen:
            return pages
        processed = self._coalescer.call(self, conv_res, chosen)
        if len(chosen) == len(pages):
            return processed
        replaced = {id(page): new for page, new in zip(chosen, processed, strict=True)}
        return [replaced.get(id(page), page) for page in pages]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class Coalescer:
    """The queue in front of the model thread, shared by every ``SharedModel`` of a worker."""

    def __init__(
        self,
        model_thread: Executor,
        log: BatchLog,
        gather_seconds: float = GATHER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model_thread = model_thread
        self._log = log
        self._gather = gather_seconds
        self._clock = clock
        self._wake = threading.Condition()
        self._waiting: dict[SharedModel, list[_Call]] = {}
        self._expected: dict[str, dict[str, int]] = {}  # document -> stage -> pages to come
        self._busy = False
        self._scheduler: threading.Thread | None = None

    # -- documents in flight ------------------------------------------------------------------

    def expect(self, document: str, pages: dict[str, int]) -> None:
        """``document`` will send these many pages to each stage (it may send fewer)."""
        with self._wake:
            self._expected[document] = dict(pages)
            self._wake.notify_all()

    def forget(self, document: str) -> None:
        """``document`` is done: stop waiting for pages it never sent."""
        with self._wake:
            self._expected.pop(document, None)
            self._wake.notify_all()

    def passed_by(self, conv_res: Any, stage: str, pages: int) -> None:
        """``pages`` of the document are not for ``stage`` (``SharedModel.select``)."""
        with self._wake:
            coming = self._expected.get(document_of(conv_res), {})
            if stage in coming:
                coming[stage] = max(0, coming[stage] - pages)
            self._wake.notify_all()

    # -- calls ----------------------------------------------------------------------------------

    def call(self, model: SharedModel, conv_res: Any, pages: list[Any]) -> list[Any]:
        """Queue ``pages`` for ``model`` and wait for them to come back processed."""
        call = _Call(document_of(conv_res), conv_res, pages, self._clock())
        with self._wake:
            self._start_scheduler()
            self._waiting.setdefault(model, []).append(call)
            coming = self._expected.get(call.document, {})
            if model.stage in coming:
                coming[model.stage] = max(0, coming[model.stage] - len(pages))
            self._wake.notify_all()
        return call.done.result()

    def _start_scheduler(self) -> None:
        if self._scheduler is None:
            self._scheduler = threading.Thread(
                target=self._schedule, name="sca-batcher", daemon=True
            )
            self._scheduler.start()

    def _schedule(self) -> None:
        with self._wake:
            while True:
                if self._busy:
                    self._wake.wait()
                    continue
                model, timeout = self._next_ready()
                if model is None:
                    self._wake.wait(timeout)
                    continue
                batch = self._take_batch(model)
                self._busy = True
                self._model_thread.submit(self._run, model, batch)

    def _next_ready(self) -> tuple[SharedModel | None, float | None]:
        """The model whose waiting calls should run now (the oldest first), or how long until
        one must."""
        now = self._clock()
        ready: list[tuple[float, SharedModel]] = []
        soonest: float | None = None
        for model, calls in self._waiting.items():
            if not calls:
                continue
            oldest = calls[0].arrived
            waited_enough = now - oldest >= self._gather
            if waited_enough or self._full(model, calls) or not self._more_coming(model, calls):
                ready.append((oldest, model))
            else:
                left = oldest + self._gather - now
                soonest = left if soonest is None else min(soonest, left)
        if ready:
            return min(ready, key=lambda pair: pair[0])[1], None
        return None, soonest

    @staticmethod
    def _full(model: SharedModel, calls: list[_Call]) -> bool:
        return not model.merges or sum(len(c.pages) for c in calls) >= model.batch_size

    def _more_coming(self, model: SharedModel, calls: list[_Call]) -> bool:
        """Pages of another document still on their way to this stage. A document with a call
        waiting sends nothing more until that call returns, so it does not count."""
        present = {call.document for call in calls}
        return any(
            stages.get(model.stage, 0) > 0
            for document, stages in self._expected.items()
            if document not in present
        )

    def _take_batch(self, model: SharedModel) -> list[_Call]:
        calls = self._waiting[model]
        if not model.merges:
            return [calls.pop(0)]
        batch = [calls.pop(0)]
        pages = len(batch[0].pages)
        while calls and pages + len(calls[0].pages) <= model.batch_size:
            pages += len(calls[0].pages)
            batch.append(calls.pop(0))
        return batch

    # -- on the model thread ----------------------------------------------------------------------

    def _run(self, model: SharedModel, batch: list[_Call]) -> None:
        try:
            if model.per_document:
                self._run_in_turn(model, batch)
            elif len(batch) == 1 or not self._run_merged(model, batch):
                for call in batch:
                    self._run_alone(model, call)
        finally:
            with self._wake:
                self._busy = False
                self._wake.notify_all()

    def _run_merged(self, model: SharedModel, batch: list[_Call]) -> bool:
        """One call for every document's pages; False when it raised (each runs alone next)."""
        pages = [page for call in batch for page in call.pages]
        try:
            processed = list(model.model(batch[0].conv_res, pages))
        except Exception:  # noqa: BLE001 - whose page it was is found by running them alone
            return False
        if len(processed) != len(pages):
            return False
        start = 0
        for call in batch:
            end = start + len(call.pages)
            self._log.record(call.document, model.stage, len(call.pages), len(pages))
            call.done.set_result(processed[start:end])
            start = end
        return True

    def _run_in_turn(self, model: SharedModel, batch: list[_Call]) -> None:
        """Each document's pages with its own conversion result, in this one turn: one merged
        call of all the pages, as the batching counters show it; a fault stays its document's."""
        every = sum(len(call.pages) for call in batch)
        for call in batch:
            self._run_alone(model, call, every)

    def _run_alone(self, model: SharedModel, call: _Call, every: int = 0) -> None:
        try:
            processed = list(model.model(call.conv_res, call.pages))
        except BaseException as exc:  # noqa: BLE001 - goes to the caller, in its own thread
            call.done.set_exception(exc)
            return
        self._log.record(call.document, model.stage, len(call.pages), every or len(call.pages))
        call.done.set_result(processed)


def document_of(conv_res: Any) -> str:
    """The name the backend gave the document's stream: unique per conversion in flight."""
    return str(getattr(getattr(conv_res, "input", None), "file", "") or id(conv_res))
