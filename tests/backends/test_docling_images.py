"""Images through docling's real pipeline with the stand-in models: the same pipeline instance as
PDFs, their pages in the same merged model calls, OCR on every page; and the model-free formats
through the same backend's converters. (RapidOCR's ONNX models are real ones, so OCR reads.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from harness.documents import docx_bytes, image_bytes
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.docling_pipeline import pipeline_options
from sir_convert_a_lot.backends.document_open import Opened, open_document
from sir_convert_a_lot.options import ConversionOptions
from tests.backends.together import convert_together
from tests.helpers import pdf_bytes

pytestmark = [pytest.mark.usefixtures("offline"), pytest.mark.slow]  # models: seconds per test

AUTO = ConversionOptions(backend_strategy="docling", ocr_mode="auto", table_mode="fast")
FORCE = ConversionOptions(backend_strategy="docling", ocr_mode="force", table_mode="fast")
OFF = ConversionOptions(backend_strategy="docling", ocr_mode="off", table_mode="fast")


def _context(models: Path, thread: ThreadPoolExecutor) -> BackendContext:
    return BackendContext(
        device="cpu",
        device_index=0,
        model_thread=thread,
        models_path=str(models),
        batch_sizes={"layout": 8, "table": 8, "ocr": 8},
    )


@pytest.fixture(scope="module")
def loaded(stand_in_models: Path) -> Iterator[tuple[DoclingBackend, BackendContext]]:
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    context = _context(stand_in_models, thread)
    backend = DoclingBackend(context)
    backend.load((AUTO, FORCE))
    yield backend, context
    thread.shutdown()


def _open(data: bytes, name: str) -> Opened:
    return open_document(data, name, 100, 50 * 1024 * 1024)


def _convert(backend: DoclingBackend, data: bytes, name: str, options: ConversionOptions) -> Any:
    return backend.convert(_open(data, name), options, lambda _page, _pages: None)


def test_an_image_and_a_pdf_converted_together_share_a_layout_call_of_one_pipeline(
    loaded: tuple[DoclingBackend, BackendContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _context = loaded
    documents = [(image_bytes("PNG"), "scan.png"), (pdf_bytes(text="Born digital."), "a.pdf")]
    monkeypatch.setattr(backend._coalescer, "_gather", 60.0)  # wait for both, however slow
    image, pdf = convert_together(backend, documents, AUTO)
    assert image.batches["layout"] == ((1, 2),) == pdf.batches["layout"]  # one call, both pages
    converters = [backend._converters[key] for key in backend._converters if key[1] == "auto"]
    assert [len(c.initialized_pipelines) for c in converters] == [1]  # the one pipeline
    assert image.ocr_enabled and image.stage_devices["ocr"] == "cpu"
    assert image.acceleration_used == "cpu" == image.stage_devices["layout"]
    assert "docling_auto_ocr_pages:1/1" in image.warnings  # every image page is read
    assert not pdf.ocr_enabled  # a born-digital page never pays for OCR


def test_every_page_of_an_image_is_read_by_ocr_even_with_ocr_off(
    loaded: tuple[DoclingBackend, BackendContext],
) -> None:
    backend, _context = loaded
    result = _convert(backend, image_bytes("TIFF", text="Scanned words", pages=3), "s.tif", OFF)
    assert result.ocr_enabled and result.stage_devices["ocr"] == "cpu"
    assert sum(own for own, _all in result.batches["ocr"]) == 3  # all three pages
    assert sum(own for own, _all in result.batches["layout"]) == 3
    assert "Scanned words 3" in result.markdown


def test_an_image_comes_out_as_docling_alone_makes_it(
    loaded: tuple[DoclingBackend, BackendContext],
) -> None:
    """docling's own converter, its own pipeline class, the same options and weights: the same
    Markdown as the backend's shared-model pipeline."""
    from docling.datamodel.base_models import DocumentStream, InputFormat
    from docling.document_converter import DocumentConverter, ImageFormatOption

    backend, context = loaded
    data = image_bytes("PNG", text="Invoice 2026 total 42")
    ours = _convert(backend, data, "scan.png", FORCE)
    alone = DocumentConverter(
        format_options={
            InputFormat.IMAGE: ImageFormatOption(
                pipeline_options=pipeline_options(context, "fast", "force")
            )
        }
    ).convert(DocumentStream(name="scan.png", stream=BytesIO(data)))
    assert ours.markdown == alone.document.export_to_markdown()
    assert "Invoice 2026 total 42" in ours.markdown  # read by OCR: the image has no other text


def test_a_docx_through_the_gpu_backend_is_docling_s_own_and_runs_no_model(
    loaded: tuple[DoclingBackend, BackendContext],
) -> None:
    from docling.datamodel.base_models import DocumentStream
    from docling.document_converter import DocumentConverter

    backend, _context = loaded
    data = docx_bytes()
    ours = _convert(backend, data, "letter.docx", AUTO)
    alone = DocumentConverter().convert(DocumentStream(name="letter.docx", stream=BytesIO(data)))
    assert ours.markdown == alone.document.export_to_markdown()
    assert ours.acceleration_used == "none" and ours.stage_devices == {} and ours.batches == {}
