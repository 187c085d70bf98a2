"""docling's format options for every format of ``formats``, in one place.

A converter here accepts exactly the formats of the table (``allowed``): docling's others (LaTeX,
XML dialects, its own JSON, audio, video) are never routed to, whatever a file's bytes look like.

- ``pdf`` and ``image`` share one pipeline: the same class and the very same options object, so
  docling's pipeline cache (keyed by class and options hash) hands both the one instance, and an
  image's pages go through the same wrapped layout, table and OCR models, on the one model
  thread, merged into the same calls as PDF pages.
- every other format is read by docling's own model-free backend on its ``SimplePipeline``,
  with docling's default options but for fetching, which is pinned off even where docling's
  default is already off: no backend fetches a remote resource or reads a local file that a
  document references (contract section 5). Nothing else differs from docling's defaults, so
  the Markdown is the one a plain ``DocumentConverter`` makes of the same file.
"""

from __future__ import annotations

from typing import Any

from sir_convert_a_lot.formats import FORMATS, DocumentFormat

NO_FETCH: dict[str, bool] = {"enable_remote_fetch": False, "enable_local_fetch": False}
"""Every backend's fetching switches (``BaseBackendOptions``), pinned off."""

NO_IMAGE_FETCH: dict[str, bool] = {**NO_FETCH, "fetch_images": False}
"""The same for the backends that could also fetch the images a document links to."""


def input_format(found: DocumentFormat) -> Any:
    """docling's ``InputFormat`` for ``found``."""
    from docling.datamodel.base_models import InputFormat

    return InputFormat(found.docling)


def allowed() -> list[Any]:
    """docling's ``InputFormat`` of every format in the table, in table order."""
    return [input_format(found) for found in FORMATS]


def converter_options(pipeline_cls: type | None = None, pdf_options: Any = None) -> dict[Any, Any]:
    """The format options of a converter for every format: ``pdf`` and ``image`` on one
    pipeline (``pipeline_cls`` with ``pdf_options``) when given, the others model-free."""
    options = model_free_options()
    if pipeline_cls is not None:
        from docling.datamodel.base_models import InputFormat
        from docling.document_converter import ImageFormatOption, PdfFormatOption

        options[InputFormat.PDF] = PdfFormatOption(
            pipeline_cls=pipeline_cls, pipeline_options=pdf_options
        )
        options[InputFormat.IMAGE] = ImageFormatOption(
            pipeline_cls=pipeline_cls, pipeline_options=pdf_options
        )
    return options


def model_free_options() -> dict[Any, Any]:
    """docling's format options for the formats that run no model."""
    from docling.datamodel import backend_options as backend
    from docling.datamodel.base_models import InputFormat as Format
    from docling.document_converter import (
        AsciiDocFormatOption,
        CsvFormatOption,
        EmailFormatOption,
        EpubFormatOption,
        ExcelFormatOption,
        HTMLFormatOption,
        MarkdownFormatOption,
        OdpFormatOption,
        OdsFormatOption,
        OdtFormatOption,
        PowerpointFormatOption,
        WordFormatOption,
    )

    word = WordFormatOption(backend_options=backend.MsWordBackendOptions(**NO_FETCH))
    slides = PowerpointFormatOption(backend_options=backend.MsPowerpointBackendOptions(**NO_FETCH))
    sheets = ExcelFormatOption(backend_options=backend.MsExcelBackendOptions(**NO_FETCH))
    return {
        Format.DOCX: word,
        Format.DOC: word,  # through LibreOffice, to DOCX
        Format.RTF: word,  # the same
        Format.PPTX: slides,
        Format.PPT: slides,
        Format.XLSX: sheets,
        Format.XLS: sheets,
        Format.ODT: OdtFormatOption(backend_options=backend.DeclarativeBackendOptions(**NO_FETCH)),
        Format.ODS: OdsFormatOption(backend_options=backend.OdsBackendOptions(**NO_FETCH)),
        Format.ODP: OdpFormatOption(backend_options=backend.DeclarativeBackendOptions(**NO_FETCH)),
        Format.HTML: HTMLFormatOption(backend_options=backend.HTMLBackendOptions(**NO_IMAGE_FETCH)),
        Format.MD: MarkdownFormatOption(
            backend_options=backend.MarkdownBackendOptions(**NO_IMAGE_FETCH)
        ),
        Format.CSV: CsvFormatOption(backend_options=backend.CsvBackendOptions(**NO_FETCH)),
        Format.ASCIIDOC: AsciiDocFormatOption(
            backend_options=backend.AsciiDocBackendOptions(**NO_IMAGE_FETCH)
        ),
        Format.EPUB: EpubFormatOption(backend_options=backend.EpubBackendOptions(**NO_IMAGE_FETCH)),
        Format.EMAIL: EmailFormatOption(backend_options=backend.EmailBackendOptions(**NO_FETCH)),
    }
