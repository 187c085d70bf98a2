"""A scanned PDF on the pymupdf backend (no OCR) gave a 0-byte ``.md``, status succeeded and no
warning. Pages without text must be said: ``no_text_found:k/n`` in the sidecar's warnings, and a
journal warning that names the fix (OCR with the docling backend)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sir_convert_a_lot.backends import no_text
from sir_convert_a_lot.backends.base import BackendContext, BackendResult
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend
from sir_convert_a_lot.options import ConversionOptions
from tests.daemon import Daemon
from tests.helpers import wait_for, write_config


def _pdf(*pages: str) -> bytes:
    """A PDF whose pages are ``text`` (a line of text), ``drawing`` (a filled rectangle only) or
    ``image`` (a picture only, as a scanner makes)."""
    import pymupdf

    document = pymupdf.open()
    for kind in pages:
        page = document.new_page(width=595, height=842)
        if kind == "text":
            page.insert_text((72, 100), "An ordinary page of born-digital text.", fontsize=12)
        elif kind == "drawing":
            page.draw_rect(pymupdf.Rect(72, 72, 400, 300), color=(0, 0, 0), fill=(0.8, 0.8, 0.8))
        else:
            pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 120, 160), False)
            pixmap.clear_with(200)
            page.insert_image(pymupdf.Rect(36, 36, 559, 806), pixmap=pixmap)
    data: bytes = document.tobytes()
    document.close()
    return data


def _convert(data: bytes) -> BackendResult:
    backend = PyMuPDFBackend(BackendContext("cpu", 0, ThreadPoolExecutor(max_workers=1)))
    options = ConversionOptions(backend_strategy="pymupdf", ocr_mode="off")
    backend.load((options,))
    return backend.convert(open_pdf(data, max_pages=10), options, lambda _p, _t: None)


@pytest.mark.slow
def test_pages_without_text_are_counted_in_the_warnings() -> None:
    result = _convert(_pdf("text", "drawing", "image"))
    assert "born-digital text" in result.markdown
    assert "no_text_found:2/3" in result.warnings


@pytest.mark.slow
def test_a_scan_says_it_found_no_text_and_a_text_pdf_says_nothing() -> None:
    scan = _convert(_pdf("image"))
    assert scan.markdown.strip() == ""
    assert scan.warnings == ("no_text_found:1/1",)
    assert not [w for w in _convert(_pdf("text", "text")).warnings if w.startswith("no_text")]


@pytest.mark.parametrize(
    ("warnings", "expected"),
    [
        (("pdf_repaired", "no_text_found:3/12"), (3, 12)),
        (("no_text_found:x/1", "normalize_x:2"), None),
        ((), None),
    ],
)
def test_the_warning_is_read_back(
    warnings: tuple[str, ...], expected: tuple[int, int] | None
) -> None:
    assert no_text.found(warnings) == expected


@pytest.mark.slow
def test_the_daemon_publishes_a_scan_with_the_warning_and_logs_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch={"stability_seconds": 0.2})
    with Daemon(config).start() as daemon:
        (tmp_path / "inbox" / "scan.pdf").write_bytes(_pdf("image", "image"))
        sidecar_path = tmp_path / "outbox" / "scan.json"
        wait_for(sidecar_path.exists, timeout=60)
        (said,) = daemon.wait_event("no_text_found")
        assert daemon.terminate() == 0
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["status"] == "succeeded"
    assert "no_text_found:2/2" in sidecar["result"]["warnings"]
    assert said["level"] == "warning"
    assert said["job_id"] == sidecar["job_id"] and said["source"] == "scan.pdf"
    assert (said["pages_without_text"], said["pages"]) == (2, 2)
    assert "OCR" in said["fix"] and 'backend_strategy = "docling"' in said["fix"]
    assert "no OCR" in said["message"]
