"""Column-aware reading order for a page's layout boxes.

pymupdf4llm cuts a page into horizontal stripes wherever a band of white space crosses the whole
page, and only then looks for columns inside each stripe. When the gaps of two columns happen to
lie at the same height, that reads the page row by row: the top of the right column before the
bottom of the left one. Here consecutive stripes that share a column gutter are joined into a
block first, and the block is read column by column, each column top to bottom.

Geometry alone cannot tell two text columns from a grid of cards read row by row: both are boxes
on either side of a gutter. Readers follow the numbers (sections, questions, exercises), and so
does this: a block keeps the backend's row order when its numbered boxes ascend that way better
than column by column. Boxes are only moved, never changed, and only those of such a block;
everything else (one column, a figure beside its caption, a form's narrow labels) keeps the
backend's order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

# A band at least this wide (in points) with no box in it separates two columns.
MIN_GUTTER_POINTS = 8.0
# Each column must be at least this share of its block's width to be read as a text column.
MIN_COLUMN_SHARE = 0.2

Number = tuple[int, ...]
Gap = tuple[float, float]

_NUMBERED_CLASSES = frozenset({"section-header", "title", "list-item"})
# "3." / "2.1" / "12)" opening a heading or list item; in body text only "3." or "12)", so that
# a formula such as "22 a+b=c2" is not taken for a number.
_HEADING_NUMBER_RE = re.compile(r"^\s*(\d{1,3}(?:\.\d{1,3})*)[.)]?\s+\S")
_TEXT_NUMBER_RE = re.compile(r"^\s*(\d{1,3}(?:\.\d{1,3})*)[.)]\s+\S")


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    number: Number | None = None


def leading_number(text: str, boxclass: str) -> Number | None:
    """The number a heading, list item or paragraph opens with ("2.1 Methods" -> (2, 1))."""
    pattern = _HEADING_NUMBER_RE if boxclass in _NUMBERED_CLASSES else _TEXT_NUMBER_RE
    match = pattern.match(text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def column_order(boxes: Sequence[Box]) -> list[int]:
    """The indexes of ``boxes`` in reading order. Only the boxes of a block read column by column
    move (to where the block's first box was); every other box keeps the given order."""
    ids = list(range(len(boxes)))
    if len(boxes) < 2:
        return ids
    blocks = _column_blocks(boxes, ids)
    starting_at = {min(block): block for block in blocks}
    moved = {i for block in blocks for i in block}
    ordered: list[int] = []
    for i in ids:
        if i in starting_at:
            ordered.extend(starting_at[i])
        elif i not in moved:
            ordered.append(i)
    return ordered


def _column_blocks(boxes: Sequence[Box], ids: list[int]) -> list[list[int]]:
    """Each run of stripes to read column by column, in that order."""
    blocks: list[list[int]] = []
    for run, gutters in _runs(boxes, _stripes(boxes, ids)):
        joined = sorted(i for stripe in run for i in stripe)
        if len(run) == 1 or not _columns_wide_enough(boxes, joined, gutters):
            continue
        by_columns = [i for column in _columns(boxes, joined, gutters) for i in column]
        if _ascent(boxes, joined) > _ascent(boxes, by_columns):
            continue  # the numbering runs across the rows: a grid, as given
        blocks.append(by_columns)
    return blocks


def _stripes(boxes: Sequence[Box], ids: list[int]) -> list[list[int]]:
    """Split at every height no box covers, top to bottom; each stripe keeps the given order."""
    stripe_of: dict[int, int] = {}
    count, bottom = 0, float("-inf")
    for i in sorted(ids, key=lambda i: boxes[i].y0):
        if boxes[i].y0 > bottom:
            count += 1
        stripe_of[i] = count - 1
        bottom = max(bottom, boxes[i].y1)
    stripes: list[list[int]] = [[] for _ in range(count)]
    for i in ids:
        stripes[stripe_of[i]].append(i)
    return stripes


Run = tuple[list[list[int]], list[Gap]]


def _runs(boxes: Sequence[Box], stripes: list[list[int]]) -> list[Run]:
    """Consecutive stripes that share a gutter, with the gutters they share. A stripe with
    content on one side only (a column running on alone) joins the run it does not cross."""
    runs: list[Run] = []
    for stripe in stripes:
        gutters = _gutters(boxes, stripe)
        if runs and runs[-1][1]:
            previous, shared = runs[-1]
            if gutters:
                shared = _shared(shared, gutters)
            elif any(_crosses(boxes[i], gap) for i in stripe for gap in shared):
                shared = []
            if shared:
                runs[-1] = ([*previous, stripe], shared)
                continue
        runs.append(([stripe], gutters))
    return runs


def _crosses(box: Box, gap: Gap) -> bool:
    return box.x0 < gap[1] and box.x1 > gap[0]


def _gutters(boxes: Sequence[Box], ids: Sequence[int]) -> list[Gap]:
    """The bands between the boxes' horizontal extents that are wide enough to be gutters."""
    spans = sorted((boxes[i].x0, boxes[i].x1) for i in ids)
    gaps: list[Gap] = []
    right = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 - right >= MIN_GUTTER_POINTS:
            gaps.append((right, x0))
        right = max(right, x1)
    return gaps


def _shared(first: list[Gap], second: list[Gap]) -> list[Gap]:
    """The gutters both lists have, as their overlaps."""
    shared: list[Gap] = []
    for a0, a1 in first:
        for b0, b1 in second:
            low, high = max(a0, b0), min(a1, b1)
            if high > low:
                shared.append((low, high))
    return shared


def _columns(boxes: Sequence[Box], ids: list[int], gutters: list[Gap]) -> list[list[int]]:
    """The boxes by column, left to right; each column keeps the given order."""
    edges = sorted(low for low, _ in gutters)
    columns: list[list[int]] = [[] for _ in range(len(edges) + 1)]
    for i in ids:
        columns[sum(1 for edge in edges if boxes[i].x0 >= edge)].append(i)
    return [column for column in columns if column]


def _columns_wide_enough(boxes: Sequence[Box], ids: list[int], gutters: list[Gap]) -> bool:
    width = max(boxes[i].x1 for i in ids) - min(boxes[i].x0 for i in ids)
    columns = _columns(boxes, ids, gutters)
    if width <= 0 or len(columns) < 2:
        return False
    return all(
        max(boxes[i].x1 for i in column) - min(boxes[i].x0 for i in column)
        >= MIN_COLUMN_SHARE * width
        for column in columns
    )


def _ascent(boxes: Sequence[Box], order: list[int]) -> int:
    """How well an order follows the numbering: steps up minus steps down between the numbered
    boxes in it (0 where nothing is numbered)."""
    numbers = [n for n in (boxes[i].number for i in order) if n is not None]
    return sum(1 if b > a else -1 if b < a else 0 for a, b in itertools.pairwise(numbers))
