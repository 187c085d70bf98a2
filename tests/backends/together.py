"""Several documents converted at once on one loaded backend, each on its own thread and all
released by one barrier, so that the coalescer sees their pages together: what the batching,
OCR and image tests compare with each document converted alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from sir_convert_a_lot.backends.base import BackendResult
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.document_open import open_document
from sir_convert_a_lot.options import ConversionOptions

MAX_PAGES = 100
MAX_FILE_BYTES = 50 * 1024 * 1024


def convert_together(
    backend: DoclingBackend,
    documents: Sequence[tuple[bytes, str]],
    options: ConversionOptions,
    *,
    timeout: float = 240,
) -> list[BackendResult]:
    """The results of ``documents`` (bytes, file name), in order; each is opened on its own
    thread, as the worker opens it, before the barrier."""
    results: list[Any] = [None] * len(documents)
    start = threading.Barrier(len(documents))

    def convert(index: int) -> None:
        data, name = documents[index]
        opened = open_document(data, name, MAX_PAGES, MAX_FILE_BYTES)
        start.wait()
        results[index] = backend.convert(opened, options, lambda _page, _pages: None)

    threads = [threading.Thread(target=convert, args=(n,)) for n in range(len(documents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert all(isinstance(result, BackendResult) for result in results)
    return results
