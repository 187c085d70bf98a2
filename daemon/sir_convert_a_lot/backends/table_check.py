"""When the fast TableFormer prediction and docling's own differ enough to matter.

A table's prediction is its tags, each cell box's class logits and each cell box (centre x,
centre y, width, height, as fractions of the table image). Tags and classes are discrete: docling
uses the tags and the argmax of the class logits as they are, so any difference there is a
mismatch. Boxes are floats computed in another order (the image projected once, cells together,
several tables in one batch), so they may differ in the last bits; a box differs when one of its
four numbers is more than ``BOX_TOLERANCE`` away.

Why 5e-4: docling cuts the table from the page image scaled to 1024 px high, so a table is at
most 1024 px high, and on ordinary page shapes (up to a landscape A3's 1.41:1) at most ~1450 px
wide; 5e-4 of that is under 0.75 px, so a difference below the tolerance cannot move a cell's box
by a whole pixel, and docling's matching of words to cells (by overlap) cannot tell it apart.
Float reordering moves boxes by about 1e-6 (``tests/backends/test_tableformer_fast.py`` holds the
two to 2e-6 on the stand-in), some 500 times less, while a real fault (a wrong step, a wrong
attention, another image) moves them by far more than a pixel.
"""

from __future__ import annotations

from typing import Any

BOX_TOLERANCE = 5e-4
DIGITS = 5  # of a box number in the journal: finer than the tolerance


def difference(fast: Any, library: Any) -> str | None:
    """What differs between two ``(tags, class logits, boxes)`` predictions of one table:
    ``"tags"``, ``"box_count"``, ``"classes"``, ``"boxes"``, or None when they agree."""
    if _tags(fast[0]) != _tags(library[0]):
        return "tags"
    fast_classes, library_classes = _rows(fast[1]), _rows(library[1])
    fast_boxes, library_boxes = _rows(fast[2]), _rows(library[2])
    if len(fast_boxes) != len(library_boxes) or len(fast_classes) != len(library_classes):
        return "box_count"
    if _argmax(fast_classes) != _argmax(library_classes):
        return "classes"
    if box_distance(fast_boxes, library_boxes) > BOX_TOLERANCE:
        return "boxes"
    return None


def box_distance(first: list[list[float]], second: list[list[float]]) -> float:
    """The largest difference between two lists of boxes, number by number."""
    pairs = zip(first, second, strict=True)
    return max((abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True)), default=0.0)


def report(fast: Any, library: Any) -> dict[str, Any]:
    """Both predictions of a table that differ, and how, as the journal shows them."""
    boxes = _rows(fast[2]), _rows(library[2])
    return {
        "differs": difference(fast, library),
        "box_distance": box_distance(*boxes) if len(boxes[0]) == len(boxes[1]) else None,
        "fast": describe(fast),
        "docling": describe(library),
    }


def describe(prediction: Any) -> dict[str, Any]:
    """A prediction as the journal shows it: the tags, each box's class and the boxes."""
    return {
        "tags": _tags(prediction[0]),
        "classes": _argmax(_rows(prediction[1])),
        "boxes": [[round(value, DIGITS) for value in box] for box in _rows(prediction[2])],
    }


def _tags(tags: Any) -> list[int]:
    if isinstance(tags, int):  # the library's ``squeeze().tolist()`` of a single tag
        return [tags]
    return [int(tag) for tag in tags]


def _rows(values: Any) -> list[list[float]]:
    """A (n, k) tensor as lists of floats; an empty or absent one as no rows."""
    if values is None or values.numel() == 0:
        return []
    rows: list[list[float]] = values.detach().float().cpu().reshape(len(values), -1).tolist()
    return rows


def _argmax(rows: list[list[float]]) -> list[int]:
    return [max(range(len(row)), key=row.__getitem__) for row in rows]
