"""The formats that run no model (office files, markup, e-mail), read by docling's own backends.

docling reads DOCX, PPTX, XLSX, ODT, ODS, ODP, HTML, Markdown, CSV, AsciiDoc, EPUB and e-mail
(and, through LibreOffice, DOC, PPT, XLS and RTF) declaratively: its ``SimplePipeline`` builds
the document straight from the file's structure, with no layout, table or OCR model, no torch
and no GPU. So such a job needs no GPU even under the lock (contract section 4), says
``acceleration_used: "none"`` and no ``stage_devices``, and the worker converts it on the
document's own thread, never on the model thread and never waiting for a model to load: this
backend loads nothing, and the worker has one whatever it loaded (``engine.worker``), also on a
host without a GPU. The Markdown is the one a plain ``DocumentConverter`` makes of the same file
(``docling_formats`` pins only fetching, off).

Pages: docling counts pages for a presentation (slides) and a workbook (sheets), and refuses
one over ``conversion.max_pages`` before converting it (``too_many_pages``); a flowing document
(DOCX, ODT, HTML, Markdown, CSV, AsciiDoc, EPUB, e-mail) has none in docling, and its sidecar
says ``pages: 1``: one unpaginated document. A file docling cannot read, or whose reading fails
in docling's pipeline, fails ``document_unreadable``, not retryable: no model or device took
part, so the same bytes meet the same code on every try.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, ClassVar

from sir_convert_a_lot.backends.base import BackendContext, BackendResult, ProgressCallback
from sir_convert_a_lot.backends.docling_export import export_document
from sir_convert_a_lot.backends.docling_formats import allowed, model_free_options
from sir_convert_a_lot.backends.docling_run import (
    convert_stream,
    errors_of,
    input_rejected,
    name_after_file,
    over_page_limit,
    read_as_other,
)
from sir_convert_a_lot.backends.document_open import Opened, OpenedDocument
from sir_convert_a_lot.capabilities import Capabilities, capabilities_of
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.options import ConversionOptions


class ModelFreeBackend:
    """docling's model-free readers behind the worker's backend interface."""

    name = "docling"
    capabilities: ClassVar[Capabilities] = capabilities_of("docling")

    def __init__(self, context: BackendContext | None = None) -> None:
        self.context = context  # unused: nothing runs on a device
        self._converter: Any = None
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    def load(self, option_sets: tuple[ConversionOptions, ...]) -> None:
        """Nothing to load: docling's readers are built on first use, in a few milliseconds."""

    def warm(self, sample: Any, options: ConversionOptions) -> None:
        """Nothing to warm."""

    def converter(self) -> Any:
        with self._lock:
            if self._converter is None:
                from docling.document_converter import DocumentConverter

                self._converter = DocumentConverter(
                    allowed_formats=allowed(), format_options=model_free_options()
                )
            return self._converter

    def convert(
        self, document: Opened, options: ConversionOptions, progress: ProgressCallback
    ) -> BackendResult:
        if not isinstance(document, OpenedDocument) or document.models:
            raise TypeError("the model-free backend reads only formats that run no model")
        stream_name = f"document-{next(self._names)}{document.suffix}"
        return convert_model_free(self.converter(), document, options, progress, stream_name)


def convert_model_free(
    converter: Any,
    document: OpenedDocument,
    options: ConversionOptions,
    progress: ProgressCallback,
    stream_name: str,
) -> BackendResult:
    """Convert ``document`` with ``converter``'s model-free readers. Raises JobFailure."""
    from docling.datamodel.base_models import ConversionStatus

    result = convert_stream(converter, document.data, stream_name, progress, document.max_pages)
    refused = read_as_other(result, document.format) or over_page_limit(result, document.max_pages)
    if refused is not None:
        raise refused
    warnings: list[str] = []
    items, errors = errors_of(result)
    converted = result.document if result.status == ConversionStatus.SUCCESS else None
    if result.status == ConversionStatus.PARTIAL_SUCCESS and result.document is not None:
        warnings.append(f"docling_partial_success:{len(errors)}")
        converted = result.document
    if converted is None:
        raise _unreadable(document, errors, rejected=input_rejected(items))
    name_after_file(converted, document.name)
    exported = export_document(converted, options.images, options.formats)
    pages = int(getattr(result.input, "page_count", 0) or 0)
    return BackendResult(
        markdown=exported.markdown,
        pictures=exported.pictures,
        link_prefix=exported.link_prefix,
        docling_json=exported.docling_json,
        backend_used="docling",
        acceleration_used="none",
        ocr_enabled=False,
        warnings=(*warnings, *exported.warnings),
        page_count=pages or None,
    )


def _unreadable(document: OpenedDocument, errors: list[str], *, rejected: bool) -> JobFailure:
    return JobFailure(
        ErrorCode.DOCUMENT_UNREADABLE,
        f"The {document.format.label} is damaged or not what its name says, so it cannot be "
        "converted; open it in the program that made it, save it again and drop the new copy.",
        reason="parse_failed" if rejected else "docling_failed",
        parser="docling",
        parser_message=" | ".join(errors)[:300],
    )
