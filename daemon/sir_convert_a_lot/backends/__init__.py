"""Converters behind one interface. The worker picks one by name; the rest of the daemon never
imports a converter library.

A backend module imports its library only inside its methods, so loading its class costs
nothing. What each backend can do is a row of the root ``capabilities`` table, which the config
check and the GPU policy read in the daemon process without importing a backend; the class
carries the same row. ``pdf_open`` parses the file in the worker before a backend sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sir_convert_a_lot.backends.base import (
    Backend,
    BackendContext,
    BackendResult,
    ProgressCallback,
)
from sir_convert_a_lot.capabilities import Capabilities, capabilities_of

if TYPE_CHECKING:
    from sir_convert_a_lot.backends.docling import DoclingBackend
    from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend


def backend_class(name: str) -> type[PyMuPDFBackend] | type[DoclingBackend]:
    """The class behind ``name`` (``docling`` or ``pymupdf``), imported on first use."""
    if name == "pymupdf":
        from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend

        return PyMuPDFBackend
    from sir_convert_a_lot.backends.docling import DoclingBackend

    return DoclingBackend


def create_backend(name: str, context: BackendContext) -> Backend:
    """The backend for ``name``; imports only what it needs."""
    return backend_class(name)(context)


__all__ = [
    "Backend",
    "BackendContext",
    "BackendResult",
    "Capabilities",
    "ProgressCallback",
    "backend_class",
    "capabilities_of",
    "create_backend",
]
