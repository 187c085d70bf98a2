"""Issue 25's backlog through the real daemon: a PNG scan, a 3-page TIFF, a DOCX with a table, a
PPTX, an XLSX, an HTML page, an e-mail with an attachment, an EPUB and a PDF dropped at once,
on the docling backend with the stand-in models (RapidOCR's are real ones, so scans are read)
and the CPU unlocked by its decision record. Each ends in its own Markdown and a sidecar that
says what ran: the scans and the PDF on the models (here the CPU), their pages in shared layout
calls; the rest on no model at all (``"none"``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from harness.documents import epub_bytes, image_bytes, pptx_bytes, xlsx_bytes
from tests.daemon import Daemon
from tests.helpers import OFFLINE, docling_config, pdf_bytes, wait_for, write_config

pytestmark = pytest.mark.slow

MODELS_RAN = ("scan", "pages", "born-digital")


def _docx_with_table() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", 1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {
        (0, 0): "Region",
        (0, 1): "Sales",
        (1, 0): "North",
        (1, 1): "42",
    }.items():
        table.cell(row, col).text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _eml_with_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.org>"
    message["To"] = "Bob <bob@example.org>"
    message["Subject"] = "Minutes attached"
    message.set_content("The minutes of Tuesday's meeting are attached.")
    message.add_attachment(b"%PDF-1.4 not read", maintype="application", subtype="pdf",
                           filename="minutes.pdf")  # fmt: skip
    return bytes(message)


# name -> (bytes, what its Markdown must hold)
BACKLOG: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "scan.png": (image_bytes("PNG", text="Invoice 2026 total 42"), ("Invoice 2026 total 42",)),
    "pages.tif": (image_bytes("TIFF", text="Scanned page", pages=3), ("Scanned page 3",)),
    "report.docx": (_docx_with_table(), ("Quarterly report", "| North", "42")),
    "slides.pptx": (pptx_bytes(slides=3), ("Slide 1", "Point 3")),
    "sheet.xlsx": (xlsx_bytes("alpha"), ("alpha", "beta")),
    "page.html": (
        b"<html><body><h1>Board notice</h1><p>The board meets on Tuesday.</p></body></html>",
        ("Board notice", "meets on Tuesday"),
    ),
    "mail.eml": (_eml_with_attachment(), ("Minutes attached", "minutes of Tuesday")),
    "book.epub": (
        epub_bytes(body="<h1>Chapter one</h1><p>It was a dark night.</p>"),
        ("Chapter one", "dark night"),
    ),
    # The tiny layout stand-in's random weights call a text page a table, whose random cells
    # come out empty: a PDF's text is checked against docling's own elsewhere (test_neighbours).
    "born-digital.pdf": (pdf_bytes(text="A born digital page."), ("|",)),
}
PAGES = {"scan": 1, "pages": 3, "slides": 3, "sheet": 2, "born-digital": 1}


def _drop_all(root: Path) -> None:
    """Each file written in full beside the inbox, then renamed in: all appear at once."""
    staging = root / "staging"
    staging.mkdir()
    for name, (data, _expected) in BACKLOG.items():
        (staging / name).write_bytes(data)
    for name in BACKLOG:
        os.rename(staging / name, root / "inbox" / name)


def _sidecars(outbox: Path) -> dict[str, dict[str, Any]]:
    stems = [Path(name).stem for name in BACKLOG]
    wait_for(
        lambda: all(
            (outbox / f"{s}.json").exists() or (outbox / f"{s}.error.json").exists() for s in stems
        ),
        timeout=300,
    )
    failed = {s: (outbox / f"{s}.error.json").read_text() for s in stems
              if (outbox / f"{s}.error.json").exists()}  # fmt: skip
    assert failed == {}
    return {s: json.loads((outbox / f"{s}.json").read_text(encoding="utf-8")) for s in stems}


def test_a_mixed_backlog_converts_each_document_with_a_truthful_sidecar(
    tmp_path: Path, stand_in_models: Path
) -> None:
    sections = docling_config(tmp_path, stand_in_models, batch=16, ocr_mode="auto")
    sections["conversion"]["table_mode"] = "fast"
    config = write_config(tmp_path, **sections)
    with Daemon(config, env={**os.environ, **OFFLINE}).start(timeout=180) as daemon:
        _drop_all(tmp_path)
        sidecars = _sidecars(tmp_path / "outbox")
        assert daemon.terminate() == 0
    for name, (_data, expected) in BACKLOG.items():
        stem = Path(name).stem
        markdown = (tmp_path / "outbox" / f"{stem}.md").read_text(encoding="utf-8")
        assert all(text in markdown for text in expected), (name, markdown)
        sidecar = sidecars[stem]
        assert sidecar["status"] == "succeeded"
        assert sidecar["source"]["filename"] == name
        artifact = sidecar["result"]["artifact"]
        assert artifact["sha256"] == hashlib.sha256(markdown.encode("utf-8")).hexdigest()
        assert sidecar["source"]["pages"] == PAGES.get(stem, 1), name
        metadata = sidecar["result"]["conversion_metadata"]
        if stem in MODELS_RAN:
            assert metadata["acceleration_used"] == "cpu"  # the governed fallback, said so
            assert metadata["stage_devices"]["layout"] == "cpu"
        else:
            assert (metadata["acceleration_used"], metadata["stage_devices"]) == ("none", {})
            assert sidecar["execution"]["batching"] == {}  # no model call at all
    for stem in ("scan", "pages"):  # every page of a scan is read by OCR
        metadata = sidecars[stem]["result"]["conversion_metadata"]
        assert metadata["ocr_enabled"] and metadata["stage_devices"]["ocr"] == "cpu"
    assert not sidecars["born-digital"]["result"]["conversion_metadata"]["ocr_enabled"]
    # Every page of the model documents went through the layout model, each counted once.
    # Whether the PDF's page met the scans' in one call depends on timing in a daemon (the
    # scheduler waits 50 ms for pages on their way; in a loaded suite it once went alone):
    # tests/backends/test_docling_images.py shows the meeting with the wait held open.
    layout = {s: sidecars[s]["execution"]["batching"]["layout"] for s in MODELS_RAN}
    assert {s: layout[s]["pages"] for s in MODELS_RAN} == {s: PAGES[s] for s in MODELS_RAN}
