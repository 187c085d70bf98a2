"""Column-aware reading order: boxes (x0, y0, x1, y1 in points, y down) and real pages."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sir_convert_a_lot.backends.base import BackendContext, BackendResult
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend
from sir_convert_a_lot.backends.reading_order import Box, column_order, leading_number
from sir_convert_a_lot.options import ConversionOptions, TableMode

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "corpus_sample"
LEFT, RIGHT = (70.0, 380.0), (410.0, 720.0)


def _box(column: tuple[float, float], top: float, bottom: float, number: int | None = None) -> Box:
    return Box(column[0], top, column[1], bottom, (number,) if number is not None else None)


def test_columns_whose_gaps_line_up_are_read_column_by_column() -> None:
    # The right column's block starts beside the left one's, and a band of white space crosses
    # both columns at 260-300: stripe-first reading would interleave the columns.
    boxes = [
        Box(130, 40, 660, 60),  # title across both columns
        _box(LEFT, 100, 250),
        _box(RIGHT, 100, 240),
        _box(LEFT, 300, 400),
        _box(RIGHT, 300, 500),
    ]
    assert column_order(boxes) == [0, 1, 3, 2, 4]


def _cards(numbers: tuple[int, int, int, int]) -> list[Box]:
    """A 2 x 2 grid of cards (heading, then text), listed card by card: top left, top right,
    bottom left, bottom right, each numbered as given."""
    top_left, top_right, bottom_left, bottom_right = numbers
    return [
        _box(LEFT, 100, 110, top_left),
        _box(LEFT, 120, 200),
        _box(RIGHT, 100, 110, top_right),
        _box(RIGHT, 120, 200),
        _box(LEFT, 250, 260, bottom_left),
        _box(LEFT, 270, 350),
        _box(RIGHT, 250, 260, bottom_right),
        _box(RIGHT, 270, 380),
    ]


def test_a_grid_of_cards_numbered_across_rows_keeps_its_row_order() -> None:
    assert column_order(_cards((1, 2, 3, 4))) == list(range(8))


def test_the_same_cards_numbered_down_the_columns_are_read_column_by_column() -> None:
    assert column_order(_cards((1, 3, 2, 4))) == [0, 1, 4, 5, 2, 3, 6, 7]


def test_a_column_running_on_alone_stays_in_its_column() -> None:
    boxes = [
        _box(LEFT, 100, 200, 23),
        _box(RIGHT, 100, 200, 26),
        _box(LEFT, 220, 240),  # only the left column has something at this height
        _box(LEFT, 260, 300, 24),
        _box(RIGHT, 260, 290, 27),
    ]
    assert column_order(boxes) == [0, 2, 3, 1, 4]


def test_a_single_column_page_keeps_the_backends_order() -> None:
    boxes = [Box(70, 100 + 50 * i, 540, 140 + 50 * i) for i in range(6)]
    boxes[2], boxes[3] = boxes[3], boxes[2]  # whatever order the layout gave, kept
    assert column_order(boxes) == list(range(6))


def test_a_forms_narrow_labels_and_their_values_are_read_row_by_row() -> None:
    labels, values = (70.0, 130.0), (160.0, 540.0)
    boxes = [
        _box(labels, 100, 112),
        _box(values, 100, 112),
        _box(labels, 130, 142),
        _box(values, 130, 142),
        _box(labels, 160, 172),
        _box(values, 160, 172),
    ]
    assert column_order(boxes) == list(range(6))


def test_boxes_side_by_side_in_one_stripe_keep_the_backends_order() -> None:
    # a figure beside its caption: no run of stripes, nothing for columns to fix
    boxes = [Box(320, 100, 540, 300), Box(70, 100, 300, 300), Box(70, 320, 540, 400)]
    assert column_order(boxes) == [0, 1, 2]


def test_three_columns_are_read_left_to_right() -> None:
    columns = [(50.0, 220.0), (240.0, 410.0), (430.0, 600.0)]
    boxes = [_box(column, top, top + 80) for top in (100, 200) for column in columns]
    # the gaps at 180-200 line up across all three columns
    assert column_order(boxes) == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize(
    ("text", "boxclass", "number"),
    [
        ("1. Euler's Identity", "section-header", (1,)),
        ("2.1 Methods", "section-header", (2, 1)),
        ("23. If your country has", "list-item", (23,)),
        ("157. A potato is launched", "text", (157,)),
        ("12) first option", "text", (12,)),
        ("22 a+b=c2", "text", None),  # a formula's superscripts, not a number
        ("2020 was a year", "text", None),
        ("Introduction", "section-header", None),
    ],
)
def test_leading_numbers_are_read_from_headings_items_and_numbered_paragraphs(
    text: str, boxclass: str, number: tuple[int, ...] | None
) -> None:
    assert leading_number(text, boxclass) == number


def _convert(pdf: Path, table_mode: TableMode = "accurate") -> BackendResult:
    backend = PyMuPDFBackend(BackendContext("cpu", 0, ThreadPoolExecutor(max_workers=1)))
    options = ConversionOptions(backend_strategy="pymupdf", ocr_mode="off", table_mode=table_mode)
    backend.load((options,))
    return backend.convert(open_pdf(pdf.read_bytes(), max_pages=5), options, lambda _p, _t: None)


def _headings(markdown: str) -> list[str]:
    return re.findall(r"^#+ \**(\d)\. ", markdown, flags=re.MULTILINE)


@pytest.mark.parametrize("name", ["mathfuncs_colswitch.pdf", "mathfuncs.pdf"])
def test_real_pages_of_numbered_cards_come_out_in_their_numbered_order(name: str) -> None:
    # The two pages have the same geometry; only the numbering tells rows from columns.
    assert _headings(_convert(SAMPLES / name).markdown) == ["1", "2", "3", "4"]


def test_fast_table_mode_keeps_text_on_coloured_cards_and_says_which_path_ran() -> None:
    # pymupdf4llm's classic path kept 103 of this page's 808 letters and digits.
    result = _convert(SAMPLES / "mathfuncs_colswitch.pdf", table_mode="fast")
    assert _headings(result.markdown) == ["1", "2", "3", "4"]
    assert "hypotenuse squared" in result.markdown
    assert result.warnings == ("pymupdf_table_mode_fast_uses_the_layout_path",)
