"""The layout model reads a page the same whatever pages share its call (contract section 6:
a document's outputs never depend on its neighbours): through the docling backend as loaded, a
page alone and among fifteen others gives bitwise the same logits and boxes, where the model
called directly does not; slabs keep a page's bits in every position and when padded; a model
whose rows mix is caught."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from PIL import Image
from structlog.testing import capture_logs

from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.layout_slabs import LayoutSlabs, rows_independent, slab_size
from sir_convert_a_lot.options import ConversionOptions


def _pages(count: int, seed: int) -> list[Image.Image]:
    """Distinct page-like images: random pixels, each its own size, as pages come."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (700 + 17 * n, 500 + 11 * n, 3), dtype=np.uint8))
        for n in range(count)
    ]


def _engine(models: Path, device: Literal["cpu", "cuda"], layout_batch: int) -> Any:
    """docling's layout engine as the backend loads it, behind the shared model."""
    backend = DoclingBackend(
        BackendContext(
            device=device,
            device_index=0,
            model_thread=ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda"),
            models_path=str(models),
            batch_sizes={"layout": layout_batch, "table": 2, "ocr": 2},
        )
    )
    backend.load((ConversionOptions(backend_strategy="docling", ocr_mode="off"),))
    (converter,) = backend._converters.values()
    (pipeline,) = converter.initialized_pipelines.values()
    return pipeline.layout_model.model.engine


def _read(model: Any, engine: Any, images: list[Image.Image]) -> Any:
    """What docling's ``predict_batch`` hands the model for these pages, and what comes back."""
    inputs = engine._processor(images=images, return_tensors="pt").to(engine._device)
    with torch.inference_mode():
        return model(**inputs)


@pytest.mark.slow
def test_a_page_reads_the_same_alone_and_among_fifteen_others(stand_in_models: Path) -> None:
    with capture_logs() as logged:
        engine = _engine(stand_in_models, "cpu", layout_batch=16)
    assert isinstance(engine._model, LayoutSlabs)
    assert engine._model.size == 1  # a CPU: each page its own call, its cheapest there too
    said = [e for e in logged if e["event"] == "layout_slabs"]  # the journal says so
    assert said == [
        {
            "event": "layout_slabs",
            "log_level": "info",
            "slab_pages": 1,
            "layout_batch_size": 16,
            "device": "cpu",
        }
    ]
    page, others = _pages(1, seed=1), _pages(15, seed=2)
    alone = _read(engine._model, engine, page)
    for position in (0, 7, 15):
        company = [*others[:position], *page, *others[position:]]
        together = _read(engine._model, engine, company)
        assert torch.equal(together.logits[position], alone.logits[0])
        assert torch.equal(together.pred_boxes[position], alone.pred_boxes[0])
    # Not vacuous: the model itself, called with all sixteen at once, gives the page other bits.
    raw_alone = _read(engine._model.model, engine, page)
    raw_together = _read(engine._model.model, engine, [*page, *others])
    assert not torch.equal(raw_together.pred_boxes[0], raw_alone.pred_boxes[0])
    assert torch.equal(raw_alone.pred_boxes[0], alone.pred_boxes[0])  # one page: the same call


@pytest.mark.slow
def test_a_slab_keeps_a_pages_bits_in_any_position_and_when_filled_up(
    stand_in_models: Path,
) -> None:
    engine = _engine(stand_in_models, "cpu", layout_batch=1)
    model = engine._model.model  # docling's own, unwrapped
    slabs = LayoutSlabs(model, 4)
    pages = _pages(6, seed=3)  # a full slab of 4, then 2 pages filled up with copies
    read = _read(slabs, engine, pages)
    assert read.logits.shape[0] == read.pred_boxes.shape[0] == 6
    for index, page in enumerate(pages):
        # the same page among others, in another slab position, gives the same bits
        others = [p for n, p in enumerate(pages) if n != index][:3]
        moved = _read(slabs, engine, [*others, page])
        assert torch.equal(moved.pred_boxes[3], read.pred_boxes[index]), index
        assert torch.equal(moved.logits[3], read.logits[index]), index
    assert rows_independent(model, 4, (640, 640), torch.device("cpu"))
    assert slab_size(model, 16, (640, 640)) == 1  # slabs are for GPUs; a CPU reads page by page


class _MixingModel(torch.nn.Module):  # type: ignore[misc]
    """A model whose every row is nudged by the batch's mean: rows that are not independent."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, pixel_values: torch.Tensor) -> Any:
        rows = pixel_values.flatten(1)[:, :8] * self.scale
        mixed = rows + 1e-3 * rows.mean(dim=0, keepdim=True)
        return type("Out", (), {"logits": mixed, "pred_boxes": mixed[:, :4]})()


def test_rows_that_depend_on_their_neighbours_are_caught() -> None:
    assert not rows_independent(_MixingModel(), 4, (8, 8), torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.gpu
def test_on_a_gpu_pages_go_in_full_slabs_whose_rows_are_independent(
    stand_in_models: Path,
) -> None:
    engine = _engine(stand_in_models, "cuda", layout_batch=16)
    assert engine._model.size == 16
    page, others = _pages(1, seed=1), _pages(20, seed=2)
    alone = _read(engine._model, engine, page)
    together = _read(engine._model, engine, [*others, *page])
    assert torch.equal(together.pred_boxes[20], alone.pred_boxes[0])


def test_a_wrapped_model_copies_and_answers_for_the_model_it_wraps() -> None:
    model = _MixingModel()
    slabs = copy.copy(LayoutSlabs(model, 2))  # a copy is built before its fields are set
    assert slabs.size == 2 and slabs.model is model
    assert slabs.scale is model.scale  # what docling reads off the model (dtype) passes through
