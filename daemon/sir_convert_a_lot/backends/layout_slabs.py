"""The layout model in fixed-shape slabs, so that a page's layout never depends on its company.

A merged layout call carries pages of several documents (``backends.coalesce``), and the
layout model's arithmetic for one page changes with the batch it sits in: on this project's
CPU the same page's boxes moved in their last digits (up to 3e-8 of the page) between a call
of one page and a call of sixteen, so a document's lossless JSON depended on which documents
shared its calls. Contract section 6 says it must not. So the model never sees a batch whose
shape or rows depend on the company a page keeps:

- on a CPU each page is its own call (a slab of one): exact by construction, and the cheapest
  per page there anyway (``layout_batch_cost``: 1.46 s a page at batch 1, 1.91 at 16, with the
  published-size stand-in on two cores);
- on a GPU the pages go in slabs of ``gpu.layout_batch_size``, the last one filled up with
  copies of its first page, under deterministic cuDNN with no autotuning, so every call has the
  same shape and the same kernels. Whether the kernels then treat each row of a slab alike is a
  fact about the device and the weights, so ``slab_size`` checks it once per model: a page in
  four positions of a slab, among other pages and among copies of itself, must come out
  bitwise the same; if it does not, the slab is one page.

docling's own ``predict_batch`` is unchanged around the model: its preprocessing (each image
resized alone) and its post-processing (per page, from the logits and boxes) see the same
tensors they would see from one call of all the pages.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends.kernel_switches import exact_kernels

log = logs.get()

_checked: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], int]] = weakref.WeakKeyDictionary()


class LayoutSlabs:
    """Stands in for the layout engine's model: the same call, run slab by slab."""

    def __init__(self, model: Any, size: int) -> None:
        self.model = model
        self.size = max(1, size)

    def __getattr__(self, name: str) -> Any:  # dtype, config, device: the model's own
        if name == "model":  # not yet set (a copy being built): no endless lookup
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, pixel_values: Tensor, **inputs: Any) -> SimpleNamespace:
        pages = pixel_values.shape[0]
        logits, boxes = [], []
        with exact_kernels(keep_tf32=True):
            for start in range(0, pages, self.size):
                filled = min(self.size, pages - start)
                out = self.model(
                    pixel_values=_slab(pixel_values, start, self.size),
                    **{k: _slab_or_same(v, start, self.size, pages) for k, v in inputs.items()},
                )
                logits.append(out.logits[:filled])
                boxes.append(out.pred_boxes[:filled])
        # What docling's post-processing reads (RT-DETR's processor: logits and pred_boxes).
        return SimpleNamespace(logits=torch.cat(logits), pred_boxes=torch.cat(boxes))


def _slab(batch: Tensor, start: int, size: int) -> Tensor:
    """Rows ``start`` to ``start + size`` of ``batch``, the missing ones copies of the first."""
    rows = batch[start : start + size]
    missing = size - rows.shape[0]
    if missing <= 0:
        return rows
    return torch.cat([rows, rows[:1].expand(missing, *rows.shape[1:])])


def _slab_or_same(value: Any, start: int, size: int, pages: int) -> Any:
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == pages:
        return _slab(value, start, size)
    return value


def install(layout_model: Any, batch_size: int) -> int:
    """Wrap the transformers engine's model of docling's layout stage in slabs; the slab size in
    effect, or 0 where the engine is not a torch model (nothing wrapped)."""
    engine = getattr(layout_model, "engine", None)
    model = getattr(engine, "_model", None)
    if engine is None or not isinstance(model, torch.nn.Module):
        return 0
    size = slab_size(model, batch_size, _input_shape(engine))
    engine._model = LayoutSlabs(model, size)
    log.info(  # which shape every layout call has, so which bits a page gets
        "layout_slabs",
        slab_pages=size,
        layout_batch_size=batch_size,
        device=str(next(model.parameters()).device),
    )
    return size


def slab_size(model: Any, batch_size: int, shape: tuple[int, int]) -> int:
    """``batch_size`` on a GPU where a slab's rows have been seen to be independent, else 1."""
    device = next(model.parameters()).device
    if device.type != "cuda" or batch_size <= 1:
        return 1
    known = _checked.setdefault(model, {})
    if (str(device), batch_size) not in known:
        agree = rows_independent(model, batch_size, shape, device)
        known[(str(device), batch_size)] = batch_size if agree else 1
        if not agree:
            log.warning(
                "layout_slabs_off",
                device=str(device),
                layout_batch_size=batch_size,
                reason="a page came out differently in another position of a slab",
                effect="the layout model reads one page per call: exact, but slower on a GPU",
            )
    return known[(str(device), batch_size)]


def rows_independent(model: Any, size: int, shape: tuple[int, int], device: Any) -> bool:
    """A random page among random others, at the first, second, middle and last positions of a
    slab, and among copies of itself (a slab's padding): its logits and boxes must match
    bitwise each time. (Four positions, not all: at the default of 64 pages a slab, every
    position would be 65 calls of 64 pages at each start.)"""
    generator = torch.Generator(device="cpu").manual_seed(0)
    dtype = next(model.parameters()).dtype

    def draw(count: int) -> Tensor:
        return torch.rand((count, 3, *shape), generator=generator).to(device, dtype)

    run: Callable[[Tensor], Any] = LayoutSlabs(model, size)
    with torch.inference_mode():
        probe, others = draw(1), draw(size - 1)
        first = run(probe.expand(size, *probe.shape[1:]))
        want = (first.logits[0], first.pred_boxes[0])
        for position in sorted({0, 1, size // 2, size - 1}):
            slab = torch.cat([others[:position], probe, others[position:]])
            got = run(slab)
            if not (
                torch.equal(got.logits[position], want[0])
                and torch.equal(got.pred_boxes[position], want[1])
            ):
                return False
    return True


def _input_shape(engine: Any) -> tuple[int, int]:
    """The height and width the engine's processor resizes every page to (640 for Heron)."""
    size = getattr(getattr(engine, "_processor", None), "size", None) or {}
    return int(size.get("height", 640)), int(size.get("width", 640))
