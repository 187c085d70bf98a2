"""The pymupdf backend's own rules (its conversions are tested through the worker and the daemon:
``test_reading_order``, ``test_no_text``, ``tests/e2e``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend
from sir_convert_a_lot.errors import ErrorCode, JobFailure


def test_a_load_on_a_gpu_is_refused_before_any_model_is_imported() -> None:
    with ThreadPoolExecutor(max_workers=1) as thread:
        backend = PyMuPDFBackend(BackendContext("cuda", 0, thread))
        with pytest.raises(JobFailure) as refused:
            backend.load(())
    assert refused.value.code is ErrorCode.VALIDATION_ERROR
    assert refused.value.details["reason"] == "backend_is_cpu_only"
    assert backend._layout_markdown is None  # nothing was loaded
