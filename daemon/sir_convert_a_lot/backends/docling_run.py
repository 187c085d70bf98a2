"""One document through a docling converter, and what docling's verdicts on it mean.

docling guesses a stream's format from its name and first bytes; the worker already knows the
format (``document_open``), names the stream with the file's own suffix, and refuses a result
docling read as anything else (``unsupported_media_type``: the bytes are another format than the
name). docling keeps "the input could not be read" (an invalid input document: component
``user_input``, category ``backend_failure``) apart from pipeline faults; the first is the file's
fault. Shared by the GPU backend (``backends.docling``) and the model-free one
(``backends.model_free``).
"""

from __future__ import annotations

import io
from pathlib import PurePath
from typing import Any

from sir_convert_a_lot.backends.base import ProgressCallback
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import DocumentFormat
from sir_convert_a_lot.names import display, is_valid_utf8


def convert_stream(
    converter: Any,
    data: bytes,
    stream_name: str,
    progress: ProgressCallback,
    max_pages: int | None = None,
) -> Any:
    """docling's ``ConversionResult`` for ``data`` named ``stream_name``; never raises for the
    document's own faults (they are in the result)."""
    from docling.datamodel.base_models import DocumentStream

    def on_progress(event: Any) -> None:
        total = getattr(event, "total_pages", None)
        if total:
            progress(int(event.completed_pages), int(total))

    stream = DocumentStream(name=stream_name, stream=io.BytesIO(data))
    limit = {} if max_pages is None else {"max_num_pages": max_pages}  # a PDF's is checked before
    return converter.convert(stream, raises_on_error=False, progress_callback=on_progress, **limit)


def errors_of(result: Any) -> tuple[list[Any], list[str]]:
    """docling's error items of ``result``, and their messages."""
    items = list(result.errors or [])
    return items, [str(getattr(item, "error_message", item)) for item in items]


def input_rejected(items: list[Any]) -> bool:
    """docling's own verdict that its reader could not read the bytes: an invalid input document
    (component ``user_input``, category ``backend_failure``, raised as ``DocumentLoadError``),
    which docling keeps apart from pipeline faults and missing dependencies."""
    from docling.datamodel.base_models import DoclingComponentType, FailureCategory

    return bool(items) and all(
        getattr(item, "component_type", None) == DoclingComponentType.USER_INPUT
        and getattr(item, "category", None) == FailureCategory.BACKEND_FAILURE
        for item in items
    )


def over_page_limit(result: Any, max_pages: int) -> JobFailure | None:
    """``too_many_pages`` when docling refused the input for its page count (a presentation's
    slides, a workbook's sheets, an image's frames), before converting any of it."""
    pages = int(getattr(result.input, "page_count", 0) or 0)
    if result.input.valid or pages <= max_pages:
        return None
    return JobFailure(
        ErrorCode.TOO_MANY_PAGES,
        f"The document has {pages} pages, over this service's limit of {max_pages}; split it "
        "into smaller files.",
        pages=pages,
        max_pages=max_pages,
    )


def read_as_other(result: Any, found: DocumentFormat) -> JobFailure | None:
    """``unsupported_media_type`` when docling read the stream as another format than ``found``
    (or as none it may read)."""
    seen = getattr(getattr(result.input, "format", None), "value", None)
    if seen == found.docling:
        return None
    return JobFailure(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"The file's contents are not a {found.label}, although its name says so; save it in "
        "the format its name says and drop it again.",
        reason="content_mismatch",
        expected=found.docling,
        detected=str(seen),
    )


def name_after_file(document: Any, file_name: str) -> None:
    """Name the document after its file, as docling names a file it reads from disk (``name``
    its stem, ``origin.filename`` the file name), not after the stream name that kept its model
    calls apart: that one counts the documents the worker converted before, so the lossless
    JSON would depend on its neighbours. A name that is not UTF-8 is written readably."""
    shown = PurePath(file_name if is_valid_utf8(file_name) else display(file_name))
    document.name = shown.stem
    if getattr(document, "origin", None) is not None:
        document.origin.filename = shown.name
