"""A stand-in for the pymupdf backend's layout model, for the tests whose subject is what happens
to a file (its claim, names, leases, crashes, a hostile share), not how it converts.

The real pymupdf backend costs each worker about 1.5 s to import and warm pymupdf-layout's ONNX
models, and each page about 0.5 s of CPU (its image features run at a fixed input size, however
small the page). A daemon test that drops 100 one-page PDFs spends most of its time there. This
stand-in keeps everything around the model: the real worker process, its handshake, the model
thread, preflight, progress, normalising and publishing. Only the page's Markdown comes from the
PDF's own text layer instead of the layout model, as the stand-in models do for docling
(``harness.stand_in_models``).

The tests that check what a conversion says (its Markdown, its sidecar's stages, warnings and
pictures, the worker's memory and recycling) keep the real backend. The stand-in reaches a
daemon only through the engine's one seam, the worker's entry point (``QuickWorker``); the
daemon picks it up when a test starts it under ``tests.plugins.quick_daemon``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sir_convert_a_lot.backends import Backend, no_text
from sir_convert_a_lot.backends.pdf_open import MUPDF, OpenedPdf
from sir_convert_a_lot.backends.pictures import PictureSet
from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.protocol import WorkerSettings


class TextLayerBackend(PyMuPDFBackend):
    """The real pymupdf backend (its load, checks, model thread, warnings and result), with the
    layout model's part replaced: each page's Markdown is its text layer, no line is labelled
    page furniture, no block a table, and no picture is kept."""

    def _import_models(self) -> None:
        return None  # no model to import

    def _markdown(self, pdf: OpenedPdf) -> str:
        return "".join(self._pages(pdf)[0])

    def _pages(
        self, pdf: OpenedPdf, pictures: bool = False
    ) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], bool, PictureSet | None, int]:
        import pymupdf

        with MUPDF, pymupdf.open(stream=pdf.data, filetype="pdf") as document:
            textless = no_text.pages_without_text(document)
            pages = tuple(f"{page.get_text().strip()}\n\n" for page in document)
        return pages, tuple(() for _ in pages), False, None, textless


@dataclass(frozen=True)
class QuickWorker:
    """A ``worker.WorkerEntry``: the real worker, whose pymupdf backend is ``TextLayerBackend``;
    every other backend (docling, the model-free formats) is the real one."""

    def __call__(self, channel: worker.Channel, settings: WorkerSettings) -> None:
        TextLayerWorker(channel, settings).serve()


class TextLayerWorker(worker._Worker):
    """The real worker with the pymupdf backend on the text layer (``text_layer`` False: the
    real backend, for a subclass that decides per worker)."""

    text_layer = True

    def _loaded_backend(self, name: str, device: str) -> Backend:
        key = (name, device)
        if self.text_layer and name == TextLayerBackend.name and key not in self.backends:
            backend = TextLayerBackend(self._context(device))
            backend.load(tuple(o for o in self.option_sets if o.backend == name))
            self.backends[key] = backend
        return super()._loaded_backend(name, device)
