"""The formats that run no model, read by docling's own backends: the Markdown docling itself
makes of the file, no device, pages where docling counts them, and hostile files that neither
fetch, read local files nor expand entities."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from harness.documents import (
    LOCAL_FILE_TEXT,
    MARKUP,
    docx_bytes,
    eml_bytes,
    epub_bytes,
    external_entity,
    inject,
    laughs,
    odf_bytes,
    pptx_bytes,
    rewrite_member,
    xlsx_bytes,
)
from sir_convert_a_lot.backends.base import BackendResult
from sir_convert_a_lot.backends.document_open import OpenedDocument, open_document
from sir_convert_a_lot.backends.model_free import ModelFreeBackend
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import format_of_name
from sir_convert_a_lot.names import split_suffix
from sir_convert_a_lot.options import ConversionOptions

pytestmark = pytest.mark.slow  # docling: seconds to import

OPTIONS = ConversionOptions()
EVERY_OUTPUT = ConversionOptions(images="referenced", formats=("markdown", "docling_json"))

SAMPLES = {
    "letter.docx": docx_bytes(),
    "deck.pptx": pptx_bytes(),
    "book.xlsx": xlsx_bytes(),
    "note.odt": odf_bytes("text"),
    "sheet.ods": odf_bytes("spreadsheet"),
    "slides.odp": odf_bytes("presentation"),
    "page.html": MARKUP["html"],
    "readme.md": MARKUP["md"],
    "table.csv": MARKUP["csv"],
    "guide.adoc": MARKUP["asciidoc"],
    "novel.epub": epub_bytes(),
    "mail.eml": eml_bytes(),
}


@pytest.fixture(scope="module")
def backend() -> ModelFreeBackend:
    return ModelFreeBackend()


def _opened(name: str, data: bytes, max_pages: int = 2000) -> OpenedDocument:
    """Opened as the worker opens it, or, where its checks would refuse the file first, as if
    they had let it through (to see what docling itself does with it)."""
    try:
        opened = open_document(data, name, max_pages, 50 * 1024 * 1024)
    except JobFailure:
        found = format_of_name(name)
        assert found is not None
        opened = OpenedDocument(found, data, name, 1, max_pages, split_suffix(name)[1].lower())
    assert isinstance(opened, OpenedDocument)
    return opened


def _convert(
    backend: ModelFreeBackend, name: str, data: bytes, options: ConversionOptions = OPTIONS
) -> BackendResult:
    return backend.convert(_opened(name, data), options, lambda _page, _pages: None)


def _docling_alone(name: str, data: bytes) -> str:
    from docling.datamodel.base_models import DocumentStream
    from docling.document_converter import DocumentConverter

    result = DocumentConverter().convert(DocumentStream(name=name, stream=BytesIO(data)))
    return str(result.document.export_to_markdown())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_format_converts_as_docling_converts_it_with_no_model_and_no_device(
    backend: ModelFreeBackend, name: str
) -> None:
    result = _convert(backend, name, SAMPLES[name])
    assert result.markdown.strip()
    assert result.markdown == _docling_alone(name, SAMPLES[name])
    assert result.acceleration_used == "none" and result.stage_devices == {}
    assert result.backend_used == "docling" and result.ocr_enabled is False
    assert result.batches == {} and result.model_thread_id is None


def test_pages_are_docling_s_slides_and_sheets_and_none_for_a_flowing_document(
    backend: ModelFreeBackend,
) -> None:
    assert _convert(backend, "deck.pptx", pptx_bytes(slides=5)).page_count == 5
    assert _convert(backend, "book.xlsx", xlsx_bytes()).page_count == 2
    assert _convert(backend, "letter.docx", docx_bytes()).page_count is None
    assert _convert(backend, "page.html", MARKUP["html"]).page_count is None


def test_a_presentation_over_the_page_limit_fails_before_it_converts(
    backend: ModelFreeBackend,
) -> None:
    with pytest.raises(JobFailure) as caught:
        backend.convert(_opened("deck.pptx", pptx_bytes(slides=5), 4), OPTIONS, lambda _p, _t: None)
    assert caught.value.code is ErrorCode.TOO_MANY_PAGES
    assert caught.value.details == {"pages": 5, "max_pages": 4}


def test_a_whole_archive_docling_cannot_read_is_unreadable_and_the_next_file_converts(
    backend: ModelFreeBackend,
) -> None:
    broken = rewrite_member(docx_bytes(), "word/document.xml", lambda _xml: b"<not xml")
    with pytest.raises(JobFailure) as caught:
        _convert(backend, "broken.docx", broken)
    assert caught.value.code is ErrorCode.DOCUMENT_UNREADABLE
    assert caught.value.details["reason"] == "parse_failed"
    assert "Title" in _convert(backend, "letter.docx", docx_bytes()).markdown


def test_a_file_docling_reads_as_another_format_is_refused(backend: ModelFreeBackend) -> None:
    for name, data, detected in (
        ("deck.pptx", xlsx_bytes(), "xlsx"),  # a workbook named as a presentation
        ("page.html", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image"),  # a PNG named as a web page
    ):
        with pytest.raises(JobFailure) as caught:
            _convert(backend, name, data)
        assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
        assert caught.value.details["reason"] == "content_mismatch"
        assert caught.value.details["detected"] == detected


# -- hostile files -----------------------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(LOCAL_FILE_TEXT)
    return path


def _hostile(secret: Path) -> dict[str, tuple[str, bytes]]:
    """Per attack, a file of each format that carries it (the ZIP checks bypassed)."""
    where = str(secret)
    files: dict[str, tuple[str, bytes]] = {}
    for attack, doctype_of, reference in (
        ("xxe", lambda root: external_entity(root, where), "&xxe;"),
        ("laughs", laughs, "&lol9;"),
    ):
        files[f"{attack}.docx"] = (
            "x.docx",
            inject(
                docx_bytes(text="MARK"),
                "word/document.xml",
                doctype_of("w:document"),
                "MARK",
                reference,
            ),
        )
        files[f"{attack}.xlsx"] = (
            "x.xlsx",
            inject(
                xlsx_bytes("MARK"),
                "xl/worksheets/sheet1.xml",
                doctype_of("worksheet"),
                "MARK",
                reference,
            ),
        )
        files[f"{attack}.pptx"] = (
            "x.pptx",
            inject(
                pptx_bytes(1), "ppt/slides/slide1.xml", doctype_of("p:sld"), "Slide 1", reference
            ),
        )
        files[f"{attack}.odt"] = (
            "x.odt",
            odf_bytes(text=reference, prolog=doctype_of("office:document-content")),
        )
        files[f"{attack}.html"] = (
            "x.html",
            f"{doctype_of('html')}<html><body><p>{reference}</p></body></html>".encode(),
        )
        files[f"{attack}.epub"] = (
            "x.epub",
            epub_bytes(body=f"<p>{reference}</p>", prolog=doctype_of("html")),
        )
    return files


@pytest.mark.parametrize(
    "case",
    [
        f"{attack}.{kind}"
        for attack in ("xxe", "laughs")
        for kind in ("docx", "xlsx", "pptx", "odt", "html", "epub")
    ],
)
def test_no_entity_reads_a_local_file_or_expands(
    backend: ModelFreeBackend, secret: Path, case: str
) -> None:
    """What docling's readers do with them, behind the worker's ZIP checks (which refuse every
    ZIP-based one of these first, ``test_document_open``): the secret never appears and nothing
    expands. A reader that refuses the file fails it as unreadable."""
    name, data = _hostile(secret)[case]
    started = time.monotonic()
    try:
        result = _convert(backend, name, data, EVERY_OUTPUT)
    except JobFailure as refused:
        assert refused.code is ErrorCode.DOCUMENT_UNREADABLE
        assert LOCAL_FILE_TEXT not in str(refused.details)
        return
    finally:
        assert time.monotonic() - started < 10
    written = result.markdown + (result.docling_json or b"").decode("utf-8")
    assert LOCAL_FILE_TEXT not in written
    assert written.count("lol") < 100 and len(written) < 100_000


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A web server on this host that notes every request it gets."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def _referencing(url: str, secret: Path) -> dict[str, bytes]:
    local = secret.as_uri()
    tags = (
        f'<img src="{url}/image.png"/><img src="{local}"/><img src="{secret}"/>'
        f'<link rel="stylesheet" href="{url}/style.css"/><script src="{url}/app.js"></script>'
        f'<iframe src="{local}"></iframe><object data="{url}/object"></object>'
        f'<p>Text <a href="{url}/page">link</a></p>'
    )
    adoc = f"= T\n\nimage::{url}/a.png[]\n\nimage::{secret}[]\n\ninclude::{secret}[]\n"
    return {
        "page.html": f"<html><head></head><body>{tags}</body></html>".encode(),
        "mail.eml": eml_bytes(html=tags, text=f"See {url}/page"),
        "novel.epub": epub_bytes(body=tags),
        "readme.md": f"# T\n\n![a]({url}/a.png)\n\n![b]({local})\n\n![c]({secret})\n".encode(),
        "guide.adoc": adoc.encode(),
    }


@pytest.mark.parametrize("name", ["page.html", "mail.eml", "novel.epub", "readme.md", "guide.adoc"])
@pytest.mark.parametrize("options", [OPTIONS, EVERY_OUTPUT], ids=["placeholder", "referenced"])
def test_a_document_s_references_are_never_fetched_nor_read(
    backend: ModelFreeBackend,
    server: tuple[str, list[str]],
    secret: Path,
    name: str,
    options: ConversionOptions,
) -> None:
    url, seen = server
    result = _convert(backend, name, _referencing(url, secret)[name], options)
    assert seen == []
    assert LOCAL_FILE_TEXT not in result.markdown + (result.docling_json or b"").decode("utf-8")
    assert result.pictures == ()
