"""Converters behind one interface. The worker picks one by name; the rest of the daemon never
imports a converter library.

A backend module imports its library only inside its methods, so loading the class to read its
``capabilities`` costs nothing: the config check and the GPU policy do that in the daemon process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sir_convert_a_lot.backends.base import (
    Backend,
    BackendContext,
    BackendResult,
    Capabilities,
    ProgressCallback,
)

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


def capabilities_of(name: str) -> Capabilities:
    return backend_class(name).capabilities


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
