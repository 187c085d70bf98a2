"""Each document's tables counted, although one table call carries pages of several documents.

``backends.coalesce`` merges the table calls of every document in flight into one call of
docling's table model, which is handed only the first document's conversion result. So the
counts are kept per page first: ``BatchedTables`` (on the model thread) records, for each page
it ran, the tables docling's model predicted on it and the fast path's counts for them
(``TableTally.page``). ``CountedTables`` stands in front of the table stage on each document's
own thread, where the conversion result is that document's: when its pages come back, their
counts move to the document (``settle``), keyed by the name the backend gave its stream; the
backend takes them when the conversion ends (``take``).

Pages are keyed by ``id``: a page is alive from before its call until ``settle``, which removes
it whatever happened, and a page run again (a merged call that failed, retried alone) is
recorded afresh.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from sir_convert_a_lot.backends.coalesce import document_of
from sir_convert_a_lot.backends.table_counts import TableCounts


class TableTally:
    """Table counts per page (until settled) and per document (until taken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: dict[int, TableCounts] = {}
        self._documents: dict[str, TableCounts] = {}

    def page(self, page: object, counts: TableCounts) -> None:
        with self._lock:
            self._pages[id(page)] = counts

    def settle(self, document: str, pages: Iterable[object]) -> None:
        """``pages`` belong to ``document``: their counts become its."""
        with self._lock:
            total = self._documents.get(document, TableCounts())
            for page in pages:
                total += self._pages.pop(id(page), TableCounts())
            self._documents[document] = total

    def take(self, document: str) -> TableCounts:
        """``document``'s counts; forgotten afterwards."""
        with self._lock:
            return self._documents.pop(document, TableCounts())


class CountedTables:
    """The table stage as docling's pipeline calls it, per document: the document's pages'
    table counts go to that document."""

    def __init__(self, model: Any, tally: TableTally) -> None:
        self.model = model
        self.tally = tally

    def __call__(self, conv_res: Any, page_batch: Iterable[Any]) -> list[Any]:
        pages = list(page_batch)
        try:
            return list(self.model(conv_res, pages))
        finally:
            self.tally.settle(document_of(conv_res), pages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def tables_on(page: Any) -> int:
    """The tables docling's table model predicted on ``page``."""
    prediction = getattr(getattr(page, "predictions", None), "tablestructure", None)
    return len(getattr(prediction, "table_map", None) or {})
