"""TableFormer's prediction without recomputing what does not change between its steps.

docling's TableFormer (``TableModel04_rs.predict`` in docling-ibm-models) writes a table's
structure one tag at a time. At every step each decoder layer projects the whole encoded image
(784 positions) to keys and values for its cross-attention, and every tag so far for its
self-attention, although neither changes from one step to the next; the cell box decoder then
projects the encoded image once per cell. Here the image is projected once per table, each layer
keeps the keys and values of the tags it has seen, and the cells' boxes are computed together:
the same arithmetic, without the repeats. ``predict_many`` also decodes up to a slab of tables
in lockstep (``tableformer_lanes``), which on a GPU turns a few hundred tiny steps per table into
a few hundred per slab.

What comes out must be what docling's own ``predict`` gives: the same tags (with the library's
structure corrections and its rules for which tags get a box and which boxes are merged) and the
same boxes to float tolerance; ``tests/backends/test_tableformer_fast.py`` pins that against the
library on stand-in weights. And a table's prediction must not depend on the tables predicted with
it, or a document's Markdown would change with the documents that shared its model call: each
table's image is encoded alone, its boxes computed alone, its tags in a lane of a fixed-shape slab,
so ``predict`` (one table) and every row of ``predict_many`` (any tables, any order) are bitwise
equal (``tests/backends/test_tableformer_lanes.py``). What that costs, on the compute-faithful
stand-in, 2 shared CPU cores, 201 tags a table (``tools/table_cost.py``, docs/reference/
benchmarks.md 5b): docling's ``predict`` 6.47 s a table; before (batched encoder, a shrinking
batch, not exact) 1.67 s alone and 1.00 s in eights; now 2.25 s alone (a slab of eight with one
lane used) and 0.82 s in eights; with one lane (each table alone) 1.57 s whatever the company.
``backends.table_fast_path.accelerate`` installs it only on the library it was verified
against, and checks it against docling's own ``predict`` while it runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sir_convert_a_lot.backends.kernel_switches import exact_kernels
from sir_convert_a_lot.backends.tableformer_lanes import (
    ImageKeys,
    Slab,
    image_keys,
    lanes_for,
    tag_memory,
)

CELL_CHUNK = 32  # cells whose box attention is computed at once (memory: chunk x 784 x 512)


Prediction = tuple[list[int], Tensor, Tensor]
"""One table: its tags (start tag first), its boxes' class logits, its boxes (cx, cy, w, h)."""


def predict(model: Any, imgs: Tensor, max_steps: int, k: int) -> Prediction:
    """``TableModel04_rs.predict`` for a batch of one table image, spans' first and last boxes
    merged as the library merges them: bitwise what ``predict_many`` gives for the same image
    among any others. ``max_steps`` and ``k`` are not read, as the library does not read them:
    it decodes greedily up to the config's ``max_steps`` (``model._max_pred_len``), whatever beam
    size docling passes as ``k`` (the released configs say 5)."""
    return predict_many(model, [imgs])[0]


def predict_many(model: Any, images: list[Tensor]) -> list[Prediction]:
    """Several tables' predictions, each bitwise what it is alone (``tableformer_lanes``): each
    image encoded alone, the tags of a slab's worth of tables decoded step by step together,
    each table's boxes computed alone. One slab's tables are held at a time."""
    if not images:
        return []
    with torch.no_grad(), exact_kernels():
        transformer = model._tag_transformer
        transformer.eval()
        lanes = lanes_for(transformer, images[0].device)
        predictions = []
        for start in range(0, len(images), lanes):
            encoded = [model._encoder(image) for image in images[start : start + lanes]]
            tables = [image_keys(transformer, tag_memory(transformer, e)) for e in encoded]
            decoded = _decode_tags(model, tables, lanes, encoded[0].device)
            for image, (tags, hidden, merges) in zip(encoded, decoded, strict=True):
                if not model._bbox:
                    predictions.append((tags, torch.empty(0), torch.empty(0)))
                    continue
                classes, boxes = _cell_boxes(model._bbox_decoder, image, hidden)
                predictions.append((tags, *_merge_spans(model, classes, boxes, merges)))
        return predictions


class _Tags:
    """The library's rules applied to each raw tag: two structure corrections, which tags start
    a cell (and so get a box), and which boxes a horizontal span merges."""

    def __init__(self, word_map: dict[str, int]) -> None:
        self.map = word_map
        cells = ("fcel", "ecel", "ched", "rhed", "srow", "nl", "ucel")
        self.cell_tags = {word_map[t] for t in cells}
        self.skip_after = {word_map["nl"], word_map["ucel"], word_map["xcel"]}
        self.skip_next = True
        self.after_ucel = False
        self.span_open = False  # inside a run of lcel tags
        self.span_start = -1
        self.boxes = 0
        self.merges: dict[int, int] = {}

    def correct(self, tag: int) -> int:
        # The library's first-line check never leaves the first line, so it holds everywhere.
        if tag == self.map["xcel"]:
            tag = self.map["lcel"]
        if self.after_ucel and tag == self.map["lcel"]:
            tag = self.map["fcel"]
        return tag

    def boxes_for(self, tag: int) -> int:
        """How many boxes this (corrected, non-end) tag opens: 0 or 1, bookkeeping the spans."""
        opened = 0
        if not self.skip_next and tag in self.cell_tags:
            if self.span_open:
                self.merges[self.span_start] = self.boxes
            self.boxes += 1
            opened += 1
        if tag != self.map["lcel"]:
            self.span_open = False
        elif not self.span_open:
            self.span_open = True
            self.span_start = self.boxes
            self.merges[self.span_start] = -1
            self.boxes += 1
            opened += 1
        self.skip_next = tag in self.skip_after
        self.after_ucel = tag == self.map["ucel"]
        return opened


class _Row:
    """One table being decoded: its tags so far, the decoder state of each box it opens."""

    def __init__(self, word_map: dict[str, int]) -> None:
        self.rules = _Tags(word_map)
        self.tags = [word_map["<start>"]]
        self.hidden: list[Tensor] = []


def _decode_tags(
    model: Any, tables: list[ImageKeys], lanes: int, device: torch.device
) -> list[tuple[list[int], list[Tensor], dict[int, int]]]:
    """Greedy tag decoding of each table of ``tables`` in its own lane of one slab: per table
    its tags, the decoder state of each box-opening tag, and the spans' box merges."""
    slab = Slab(model._tag_transformer, tables, lanes)
    word_map = model._init_data["word_map"]["word_map_tag"]
    rows = [_Row(word_map) for _ in tables]
    done = [False] * len(rows)
    while not all(done):
        live = [lane for lane, finished in enumerate(done) if not finished]
        state = slab.step([row.tags[-1] for row in rows], device)
        chosen = slab.logits(state).argmax(1).tolist()
        for lane in live:
            done[lane] = _advance(
                rows[lane], chosen[lane], state[lane : lane + 1], model._max_pred_len
            )
    return [(row.tags, row.hidden, row.rules.merges) for row in rows]


def _advance(row: _Row, raw_tag: int, state: Tensor, max_tags: int) -> bool:
    """Add the decoder's next tag to ``row``; True when the table is done."""
    tag = row.rules.correct(raw_tag)
    row.tags.append(tag)
    if tag == row.rules.map["<end>"]:
        return True
    row.hidden.extend([state] * row.rules.boxes_for(tag))
    return len(row.tags) - 1 >= max_tags


def _cell_boxes(decoder: Any, encoded: Tensor, hidden: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The box decoder's class logits and boxes for every cell, the image projected once."""
    if not hidden:
        return torch.empty(0), torch.empty(0)
    if hasattr(decoder, "_input_filter"):
        encoded = decoder._input_filter(encoded.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    image = encoded.reshape(1, -1, encoded.size(3))
    start = decoder._init_hidden_state(image, 1)
    attention = decoder._attention
    image_part = attention._encoder_att(image)
    start_part = attention._language_att(start).unsqueeze(1)
    gate = decoder._sigmoid(decoder._f_beta(start))
    classes, boxes = [], []
    for cells in torch.cat(hidden, dim=0).split(CELL_CHUNK):
        cell_part = attention._tag_decoder_att(cells).unsqueeze(1)
        scores = attention._full_att(attention._relu(image_part + cell_part + start_part))
        weights = attention._softmax(scores.squeeze(2))
        weighted = (image * weights.unsqueeze(2)).sum(dim=1)
        state = (gate * weighted) * start
        boxes.append(decoder._bbox_embed(state).sigmoid())
        classes.append(decoder._class_embed(state))
    return torch.cat(classes), torch.cat(boxes)


def _merge_spans(
    model: Any, classes: Tensor, boxes: Tensor, merges: dict[int, int]
) -> tuple[Tensor, Tensor]:
    """Each span's first box merged with its last (the library's rule, including a span never
    closed, which merges with the last box), the last boxes dropped."""
    kept_classes, kept_boxes, skipped = [], [], []
    for index in range(len(boxes)):
        if index in merges:
            last = merges[index]
            skipped.append(last)
            kept_boxes.append(model.mergebboxes(boxes[index], boxes[last]).to(boxes.device))
            kept_classes.append(classes[index])
        elif index not in skipped:
            kept_boxes.append(boxes[index])
            kept_classes.append(classes[index])
    if not kept_boxes:
        return torch.empty(0), torch.empty(0)
    return torch.stack(kept_classes), torch.stack(kept_boxes)
