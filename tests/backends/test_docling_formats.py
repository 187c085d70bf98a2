"""docling's format options: exactly the formats of the table, PDF and image on one pipeline,
and every reader's fetching pinned off."""

from __future__ import annotations

from typing import Any

import pytest

from sir_convert_a_lot.backends.docling_formats import (
    allowed,
    converter_options,
    input_format,
    model_free_options,
)
from sir_convert_a_lot.formats import BY_NAME, FORMATS

pytestmark = pytest.mark.slow  # docling: seconds to import


def test_a_converter_accepts_exactly_the_formats_of_the_table() -> None:
    assert [f.value for f in allowed()] == [found.docling for found in FORMATS]
    options = converter_options()
    assert {f.value for f in options} == {f.docling for f in FORMATS if not f.models}


def test_every_reader_s_fetching_is_pinned_off() -> None:
    for docling_format, option in model_free_options().items():
        backend_options: Any = option.backend_options
        assert backend_options is not None, docling_format
        assert backend_options.enable_remote_fetch is False, docling_format
        assert backend_options.enable_local_fetch is False, docling_format
        assert getattr(backend_options, "fetch_images", False) is False, docling_format


def test_pdf_and_image_get_the_one_pipeline_instance() -> None:
    """docling caches a pipeline by its class and its options' hash: the image's options are the
    PDF's, so both formats are handed the same pipeline (and so the same shared models)."""
    from docling.datamodel.base_models import InputFormat
    from docling.datamodel.pipeline_options import PdfPipelineOptions
    from docling.document_converter import DocumentConverter
    from docling.pipeline.standard_pdf_pipeline import StandardPdfPipeline

    made: list[object] = []

    class NoModels(StandardPdfPipeline):  # type: ignore[misc]
        def __init__(self, pipeline_options: Any) -> None:
            self.pipeline_options = pipeline_options
            made.append(self)

    pdf_options = PdfPipelineOptions(do_ocr=False)
    options = converter_options(NoModels, pdf_options)
    assert options[InputFormat.IMAGE].pipeline_options is pdf_options
    converter = DocumentConverter(allowed_formats=allowed(), format_options=options)
    assert converter._get_pipeline(InputFormat.PDF) is converter._get_pipeline(InputFormat.IMAGE)
    assert len(made) == 1 and len(converter.initialized_pipelines) == 1
    assert input_format(BY_NAME["image"]) is InputFormat.IMAGE
