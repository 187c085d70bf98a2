"""All the tables of a merged table call predicted in one pass, not one after another.

docling's table model (``TableStructureModel.predict_tables``) loops over a call's pages and over
each page's tables, and predicts one table at a time. So a call that ``backends.coalesce`` has
filled with sixteen documents' pages still runs sixteen one-table decodings, each a few hundred
small steps: on a GPU, mostly waiting for kernel launches. ``BatchedTables`` stands in front of
that model. Before docling's loop runs, it cuts out every table image exactly as docling will
(the same page image, the same resize and crop, docling's own image preparation), predicts them
together (``tableformer_fast.predict_many``, which decodes them in slabs of its own width) and
leaves the predictions ready on the model; each prediction docling then asks for is answered
from them when its image is the very same tensor, and computed alone otherwise. So a change in
how docling cuts its images costs only speed, never a wrong table; and since a table predicted
together is bitwise the table predicted alone, which documents share a call changes nothing in
any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.backends.table_fast_path import FastPredict
from sir_convert_a_lot.backends.table_tally import TableTally, tables_on
from sir_convert_a_lot.backends.tableformer_fast import predict_many

TABLE_LABELS = ("table", "document_index")  # docling's DocItemLabel values its table model reads
PAGE_HEIGHT = 1024  # the table predictor resizes each page image to this height first


class BatchedTables:
    """docling's table model, with a call's tables predicted together first."""

    def __init__(self, model: Any, tally: TableTally) -> None:
        self.model = model
        self.tally = tally

    def __call__(self, conv_res: Any, page_batch: Iterable[Any]) -> list[Any]:
        pages = list(page_batch)
        table_former = getattr(getattr(self.model, "tf_predictor", None), "_model", None)
        found = getattr(table_former, "predict", None)
        fast = found if isinstance(found, FastPredict) else None
        if fast is not None and fast.on:
            self._prepare(fast, pages)
        try:
            return [done for page in pages for done in self._page(conv_res, page, fast)]
        finally:
            if fast is not None:
                fast.ready.clear()

    def _page(self, conv_res: Any, page: Any, fast: FastPredict | None) -> list[Any]:
        """docling's model on one page (it takes pages one by one anyway), so that the fast
        path's counts for the page's tables are told apart (``backends.table_tally``)."""
        before = fast.counts if fast is not None else TableCounts()
        done = list(self.model(conv_res, [page]))
        after = fast.counts if fast is not None else TableCounts()
        self.tally.page(page, TableCounts(predicted=tables_on(page)) + (after - before))
        return done

    def _prepare(self, fast: FastPredict, pages: list[Any]) -> None:
        """Predict the call's tables together; on any fault (a page docling cannot cut, the GPU
        out of memory for the batch) leave them to docling's loop, one at a time, which then
        succeeds or reports the fault itself."""
        try:
            images = table_images(self.model, pages)
            if len(images) < 2:
                return
            fast.ready.extend(zip(images, predict_many(fast.model, images), strict=True))
        except Exception:  # noqa: BLE001 - the one-at-a-time path meets it again and says why
            fast.ready.clear()
            _release_gpu_memory()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def table_images(model: Any, pages: list[Any]) -> list[Any]:
    """The image tensor of every table on ``pages``, in docling's order, cut as docling cuts it."""
    import numpy

    predictor = model.tf_predictor
    images = []
    for page in pages:
        boxes = _table_boxes(page, model.scale)
        if not boxes:
            continue
        resized, factor = predictor.resize_img(
            numpy.asarray(page.get_image(scale=model.scale)), height=PAGE_HEIGHT
        )
        for box in boxes:
            left, top, right, bottom = (value * factor for value in box)
            crop = resized[round(top) : round(bottom), round(left) : round(right)]
            images.append(predictor._prepare_image(crop))
    return images


def _table_boxes(page: Any, scale: float) -> list[list[float]]:
    """The page's table boxes in the page image's pixels, as docling's table model takes them."""
    backend = page._backend
    layout = page.predictions.layout
    if backend is None or not backend.is_valid() or layout is None or page.size is None:
        return []
    return [
        [
            round(cluster.bbox.l) * scale,
            round(cluster.bbox.t) * scale,
            round(cluster.bbox.r) * scale,
            round(cluster.bbox.b) * scale,
        ]
        for cluster in layout.clusters
        if str(getattr(cluster.label, "value", cluster.label)) in TABLE_LABELS
    ]
