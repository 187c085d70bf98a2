"""The CPU backend: pymupdf4llm, with the layout models that ship inside the pymupdf-layout wheel.

It runs offline and never does OCR (the config refuses ``ocr_mode`` other than ``off`` for it).
Every page goes through pymupdf4llm's layout path: a small ONNX graph model labels every block
(text, title, table, page header, ...) and a learned grid model builds table cells, so tables
without ruling lines are found too. ``table_mode = "fast"`` does not change that: pymupdf4llm's
classic path, which it used to select, silently drops text on pages with vector-graphic
backgrounds (9 of the 34 scored corpus PDFs lost over a fifth of their letters and digits) and
was not faster; the sidecar says so with a warning.

It reads PDFs only: an image (a scan) needs OCR, so it fails ``validation_error`` here, saying
to use docling; the formats that run no model never come here (``backends.model_free``).

With ``output.images`` other than ``placeholder``, each block the layout model labelled a picture
is rendered from a fresh copy of the PDF (its area at ``pictures.PICTURE_DPI``) and linked from
the Markdown (``backends.pictures``). ``output.formats`` can only be ``["markdown"]`` here.
"""

from __future__ import annotations

import contextlib
import io
import threading
from typing import Any, ClassVar

from sir_convert_a_lot.backends import no_text
from sir_convert_a_lot.backends.base import (
    BackendContext,
    BackendResult,
    ProgressCallback,
)
from sir_convert_a_lot.backends.document_open import Opened, OpenedDocument
from sir_convert_a_lot.backends.pdf_open import MUPDF, OpenedPdf
from sir_convert_a_lot.backends.pictures import PictureSet, render_area
from sir_convert_a_lot.backends.reading_order import Box, column_order, leading_number
from sir_convert_a_lot.capabilities import Capabilities, Device, capabilities_of
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.options import ConversionOptions

_FURNITURE_CLASSES = frozenset({"page-header", "page-footer"})
FAST_IS_ACCURATE_WARNING = "pymupdf_table_mode_fast_uses_the_layout_path"


def _read_columns_in_order(page: Any) -> None:
    """Reorder the page's body boxes column by column (see ``reading_order``); page headers and
    footers keep their places, first and last."""
    slots = [i for i, box in enumerate(page.boxes) if box.boxclass not in _FURNITURE_CLASSES]
    body = [page.boxes[i] for i in slots]
    order = column_order(
        [Box(b.x0, b.y0, b.x1, b.y1, leading_number(_first_line(b), b.boxclass)) for b in body]
    )
    for slot, index in zip(slots, order, strict=True):
        page.boxes[slot] = body[index]


def _first_line(box: Any) -> str:
    for line in box.textlines or ():
        text = "".join(str(span.get("text", "")) for span in line.get("spans", ()))
        if text.strip():
            return text
    return ""


def _furniture_texts(page: Any) -> tuple[str, ...]:
    """The text of each box the layout model labelled page header or footer: each of its lines,
    and the whole box as one line (Markdown may render it either way)."""
    texts: list[str] = []
    for box in page.boxes:
        if box.boxclass not in _FURNITURE_CLASSES:
            continue
        lines = [
            "".join(str(span.get("text", "")) for span in line.get("spans", ()))
            for line in box.textlines or ()
        ]
        texts.extend(line for line in lines if line.strip())
        if len(lines) > 1:
            texts.append(" ".join(lines))
    return tuple(texts)


def _collect_pictures(parsed: Any, data: bytes) -> PictureSet:
    """Render every block labelled a picture, in reading order, and point the block at its
    link (or at nothing, past the limits: pymupdf4llm then writes no link)."""
    import pymupdf

    found = PictureSet()
    with pymupdf.open(stream=data, filetype="pdf") as clean:
        for page in parsed.pages:
            for box in page.boxes:
                if box.boxclass != "picture":
                    continue
                try:
                    png = render_area(clean[page.page_number - 1], (box.x0, box.y0, box.x1, box.y1))
                except Exception:  # noqa: BLE001 - a picture MuPDF cannot draw is left out
                    png = None
                box.image = found.add(png)
    return found


class PyMuPDFBackend:
    name = "pymupdf"
    capabilities: ClassVar[Capabilities] = capabilities_of("pymupdf")

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self._layout_markdown: Any = None

    def load(self, option_sets: tuple[ConversionOptions, ...]) -> None:
        refuse_a_gpu(self.context)
        self.context.model_thread.submit(self._import_models).result()

    def _import_models(self) -> None:
        # Importing pymupdf4llm activates pymupdf.layout and loads its ONNX models once.
        with contextlib.redirect_stdout(io.StringIO()):
            import pymupdf4llm
        self._layout_markdown = pymupdf4llm.to_markdown

    def warm(self, sample: OpenedPdf, options: ConversionOptions) -> None:
        self.context.model_thread.submit(self._markdown, sample).result()

    def convert(
        self, document: Opened, options: ConversionOptions, progress: ProgressCallback
    ) -> BackendResult:
        if not isinstance(document, OpenedPdf):
            raise pdf_only(document)
        pdf = document
        progress(0, pdf.pages)
        pages, furniture, tables, pictures, textless, thread_id = self.context.model_thread.submit(
            self._pages_on_thread, pdf, options.images != "placeholder"
        ).result()
        # Both of pymupdf-layout's models run on the CPU (onnxruntime): the block labeller on
        # every page, the table grid model only on blocks labelled as tables.
        stages: dict[str, Device] = {"layout": "cpu"}
        if tables:
            stages["table"] = "cpu"
        progress(pdf.pages, pdf.pages)
        warnings: tuple[str, ...] = (
            (FAST_IS_ACCURATE_WARNING,) if options.table_mode == "fast" else ()
        )
        warnings += no_text.warning(textless, pdf.pages)  # a scan: this backend has no OCR
        return BackendResult(
            markdown="".join(pages),
            backend_used=self.name,
            acceleration_used="cpu",
            ocr_enabled=False,
            model_thread_id=thread_id,
            pages=pages,
            furniture=furniture,
            warnings=warnings + (pictures.warnings() if pictures else ()),
            stage_devices=stages,
            pictures=tuple(pictures.pictures) if pictures else (),
            link_prefix=pictures.prefix if pictures else "",
        )

    def _pages_on_thread(
        self, pdf: OpenedPdf, pictures: bool
    ) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], bool, PictureSet | None, int, int]:
        pages, furniture, tables, found, textless = self._pages(pdf, pictures)
        return pages, furniture, tables, found, textless, threading.get_ident()

    def _pages(
        self, pdf: OpenedPdf, pictures: bool = False
    ) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], bool, PictureSet | None, int]:
        """Each page's Markdown as the backend makes it, the lines of each page that the
        layout model labelled page header or footer (what rendering without them drops),
        whether any block was labelled a table (the table model then ran on it), with
        ``pictures`` the pictures its Markdown links, and how many pages have no text layer
        (counted before the layout path edits the document)."""
        import pymupdf
        from pymupdf4llm.helpers import document_layout

        with (
            MUPDF,
            pymupdf.open(stream=pdf.data, filetype="pdf") as document,
            contextlib.redirect_stdout(io.StringIO()),
        ):
            textless = no_text.pages_without_text(document)
            parsed = document_layout.parse_document(
                document, use_ocr=False, force_ocr=False, force_text=True
            )
            for page in parsed.pages:
                _read_columns_in_order(page)
            found = _collect_pictures(parsed, pdf.data) if pictures else None
            # Render once: ParsedDocument.to_markdown is not idempotent (a second call can
            # render list items differently), so the labels come from the layout boxes.
            chunks = parsed.to_markdown(page_chunks=True)
        pages = tuple(str(c["text"]) for c in chunks)
        furniture = tuple(_furniture_texts(page) for page in parsed.pages)
        tables = any(box.boxclass == "table" for page in parsed.pages for box in page.boxes)
        return pages, furniture, tables, found, textless

    def _markdown(self, pdf: OpenedPdf) -> str:
        if self._layout_markdown is None:
            raise RuntimeError("PyMuPDFBackend.convert before load")
        # A fresh document each time: the layout path edits the document it is given.
        import pymupdf

        # pymupdf4llm reports progress and OCR decisions on stdout; keep the worker's quiet.
        with (
            MUPDF,
            pymupdf.open(stream=pdf.data, filetype="pdf") as document,
            contextlib.redirect_stdout(io.StringIO()),
        ):
            text = self._layout_markdown(document, use_ocr=False, force_ocr=False)
        return str(text)


def refuse_a_gpu(context: BackendContext) -> None:
    """pymupdf-layout's models run on onnxruntime's CPU provider only: a load on a GPU fails."""
    if context.device != "cpu":
        raise JobFailure(
            ErrorCode.VALIDATION_ERROR,
            "The pymupdf backend runs on the CPU only.",
            reason="backend_is_cpu_only",
        )


def pdf_only(document: OpenedDocument) -> JobFailure:
    return JobFailure(
        ErrorCode.VALIDATION_ERROR,
        f"The pymupdf backend reads PDFs only, not a {document.format.label}; drop it into a "
        "folder whose profile uses the docling backend.",
        reason="backend_reads_pdf_only",
        backend="pymupdf",
        format=document.format.name,
    )
