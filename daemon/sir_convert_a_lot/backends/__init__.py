"""Converters behind one interface. The worker picks one by name; the rest of the daemon never
imports a converter library."""

from __future__ import annotations

from sir_convert_a_lot.backends.base import Backend, BackendResult, ProgressCallback
from sir_convert_a_lot.errors import ErrorCode, JobFailure


def create_backend(name: str) -> Backend:
    """The backend for ``name`` (``docling`` or ``pymupdf``); imports only what it needs."""
    if name == "pymupdf":
        from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend

        return PyMuPDFBackend()
    raise JobFailure(
        ErrorCode.CONVERSION_INTERNAL_ERROR,
        f"The {name} backend is not available in this version of the daemon.",
        reason="backend_unavailable",
        backend=name,
    )


__all__ = ["Backend", "BackendResult", "ProgressCallback", "create_backend"]
