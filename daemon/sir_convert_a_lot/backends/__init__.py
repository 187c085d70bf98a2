"""Converters behind one interface. The worker picks one by name; the rest of the daemon never
imports a converter library."""

from __future__ import annotations

from sir_convert_a_lot.backends.base import (
    Backend,
    BackendContext,
    BackendResult,
    ProgressCallback,
)


def create_backend(name: str, context: BackendContext) -> Backend:
    """The backend for ``name`` (``docling`` or ``pymupdf``); imports only what it needs."""
    if name == "pymupdf":
        from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend

        return PyMuPDFBackend(context)
    from sir_convert_a_lot.backends.docling import DoclingBackend

    return DoclingBackend(context)


__all__ = ["Backend", "BackendContext", "BackendResult", "ProgressCallback", "create_backend"]
