"""OCR decided page by page (``ocr_mode = auto``), and where RapidOCR's ONNX engine really runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sir_convert_a_lot.backends.docling_pipeline import onnx_devices
from sir_convert_a_lot.backends.ocr_pages import needs_ocr


@dataclass
class _Rect:
    width: float
    height: float

    def area(self) -> float:
        return self.width * self.height


@dataclass
class _Cell:
    text: str


@dataclass
class _Backend:
    bitmaps: list[_Rect]

    def get_bitmap_rects(self, scale: float = 1) -> list[_Rect]:
        return self.bitmaps


@dataclass
class _Page:
    """What docling's Page offers the decision: its text cells, size and bitmaps."""

    cells: list[_Cell]
    bitmaps: list[_Rect] = field(default_factory=list)
    size: Any = field(default_factory=lambda: _Rect(600, 800))

    @property
    def _backend(self) -> _Backend:
        return _Backend(self.bitmaps)


FULL_PAGE_IMAGE = _Rect(600, 800)


def test_a_page_with_a_text_layer_never_pays_for_ocr_even_over_an_image() -> None:
    words = [_Cell("A born digital paragraph with plenty of words in it, " * 3)]
    assert not needs_ocr(_Page(words, [FULL_PAGE_IMAGE]))


def test_a_page_an_image_covers_with_next_to_no_text_is_a_scan() -> None:
    assert needs_ocr(_Page([], [FULL_PAGE_IMAGE]))
    assert needs_ocr(_Page([_Cell("Page 3")], [_Rect(600, 500)]))  # a scan with a page number


def test_a_page_with_little_text_and_a_small_picture_is_not_a_scan() -> None:
    assert not needs_ocr(_Page([_Cell("Figure 2")], [_Rect(200, 200)]))
    assert not needs_ocr(_Page([], []))  # blank: nothing to read


class InferenceSession:
    """Named as onnxruntime's class, with the one method that is read."""

    def __init__(self, providers: list[str]) -> None:
        self._providers = providers

    def get_providers(self) -> list[str]:
        return self._providers


def test_the_onnx_sessions_providers_say_where_ocr_runs() -> None:
    on_gpu = {
        "engine": {"det": InferenceSession(["CUDAExecutionProvider", "CPUExecutionProvider"])}
    }
    fell_back = {"engine": {"det": InferenceSession(["CPUExecutionProvider"])}}
    assert onnx_devices(on_gpu) == {"cuda"}
    assert onnx_devices(fell_back) == {"cpu"}  # CUDA asked for, none in this onnxruntime
    assert onnx_devices({"no": "sessions"}) == set()
