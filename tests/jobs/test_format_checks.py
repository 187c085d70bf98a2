"""The claim-time checks on a document's format: which names a folder accepts, which formats a
backend reads, bytes that are not what the name says, ZIP bombs, and cut-off copies; each with
the sentence a person at the share acts on. PDFs keep their old codes and sentences."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.documents import (
    LOCAL_FILE_TEXT,
    SAMPLES,
    docx_bytes,
    external_entity,
    image_bytes,
    xlsx_bytes,
    zip_bytes,
)
from harness.pdfs import pdf_bytes
from sir_convert_a_lot import zipdir
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.jobs.source_checks import inspect_source
from sir_convert_a_lot.options import ConversionOptions

LIMIT = 50 * 1024 * 1024
ALL = ConversionOptions()


def _refused(
    tmp_path: Path,
    name: str,
    data: bytes,
    options: ConversionOptions = ALL,
    limit: int = LIMIT,
) -> JobFailure:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(JobFailure) as caught:
        inspect_source(path, name, limit, options)
    return caught.value


GOOD: dict[str, Callable[[], bytes]] = {
    "scan.pdf": pdf_bytes,
    "photo.jpg": SAMPLES["jpeg"],
    "saved-as.jpg": SAMPLES["png"],  # a PNG under an image name: accepted
    "fax.tiff": lambda: image_bytes("tiff", pages=2),
    "letter.docx": SAMPLES["docx"],
    "sheet.xlsx": SAMPLES["xlsx"],
    "talk.pptx": SAMPLES["pptx"],
    "text.odt": SAMPLES["odt"],
    "book.epub": SAMPLES["epub"],
    "page.html": lambda: b"<html><body><p>Hi</p></body></html>",
    "notes.md": lambda: "# Caf\u00e9\n".encode(),
    "mail.eml": lambda: b"From: a@example.org\r\nSubject: hi\r\n\r\nBody\r\n",
    "old.doc": SAMPLES["ole"],
    "letter.rtf": SAMPLES["rtf"],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_whole_document_of_each_format_passes_with_its_hash(tmp_path: Path, name: str) -> None:
    data = GOOD[name]()
    path = tmp_path / name
    path.write_bytes(data)
    facts = inspect_source(path, name, LIMIT, ALL)
    assert (facts.size_bytes, facts.sha256) == (len(data), hashlib.sha256(data).hexdigest())


# -- the name: accepted here? ---------------------------------------------------------------


def test_a_name_outside_the_formats_lists_what_is_accepted(tmp_path: Path) -> None:
    only = ConversionOptions(accepted_formats=("pdf", "md"))
    failure = _refused(tmp_path, "notes.txt", b"plain text", only)
    assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert failure.details == {
        "reason": "format_not_accepted",
        "suffix": ".txt",
        "accepted": ["pdf", "md"],
    }
    assert failure.message == (
        "'notes.txt' is not converted: drop a file ending in one of: .pdf, .md, .markdown."
    )


def test_a_format_this_folder_does_not_accept_is_refused_even_when_whole(tmp_path: Path) -> None:
    failure = _refused(
        tmp_path, "letter.docx", docx_bytes(), ConversionOptions(accepted_formats=("pdf",))
    )
    assert failure.details["reason"] == "format_not_accepted"
    assert failure.message == (
        "A Word document ('letter.docx') is not converted here; drop a file ending in one of: .pdf."
    )


def test_a_jats_article_is_refused_by_its_name_before_anything_reads_its_entities(
    tmp_path: Path,
) -> None:
    """docling reads JATS, but ``.xml`` is no format of ``conversion.formats``: an article whose
    DOCTYPE names a local file as an entity is refused by its name, so no XML parser sees it."""
    secret = tmp_path / "secret.txt"
    secret.write_text(LOCAL_FILE_TEXT)
    article = f"{external_entity('article', str(secret))}<article><p>&xxe;</p></article>"
    failure = _refused(tmp_path, "paper.xml", article.encode(), ConversionOptions())
    assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert failure.details["reason"] == "format_not_accepted"
    assert LOCAL_FILE_TEXT not in failure.message + str(failure.details)


def test_a_zip_is_told_to_be_unpacked(tmp_path: Path) -> None:
    failure = _refused(tmp_path, "scans.zip", zip_bytes({"a.pdf": pdf_bytes()}))
    assert failure.details["reason"] == "format_not_accepted"
    assert failure.message == (
        "'scans.zip' is a ZIP archive; unpack it and drop the documents themselves."
    )


@pytest.mark.parametrize(
    ("name", "app", "office"),
    [("essay.pages", "Pages", "Word"), ("talk.key", "Keynote", "PowerPoint"),
     ("budget.numbers", "Numbers", "Excel")],
)  # fmt: skip
def test_apple_iwork_files_are_told_to_be_exported(
    tmp_path: Path, name: str, app: str, office: str
) -> None:
    failure = _refused(tmp_path, name, zip_bytes({"Index/Document.iwa": b"x"}))
    assert failure.details["reason"] == "format_not_accepted"
    assert f"Apple {app} file" in failure.message
    assert f"export it as PDF or {office} from the app" in failure.message


def test_a_backend_that_cannot_read_the_format_is_named(tmp_path: Path) -> None:
    pymupdf = ConversionOptions(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    failure = _refused(tmp_path, "letter.docx", docx_bytes(), pymupdf)
    assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert failure.details == {
        "reason": "backend_cannot_read",
        "backend": "pymupdf",
        "format": "docx",
    }
    assert failure.message == (
        "The pymupdf backend that converts this folder reads only PDF; save 'letter.docx' as "
        "PDF, or ask the operator to use the docling backend here."
    )


# -- the bytes: what the name says? -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "content", "kind", "message"),
    [
        ("report.docx", pdf_bytes, "pdf", None,
         "This file is named .docx but holds a PDF; rename it to end in .pdf and drop it again."),
        ("report.docx", xlsx_bytes, "zip", "xlsx",
         "This file is named .docx but holds an Excel workbook; rename it to end in .xlsx and "
         "drop it again."),
        ("scan.png", pdf_bytes, "pdf", None,
         "This file is named .png but holds a PDF; rename it to end in .pdf and drop it again."),
        ("table.csv", lambda: image_bytes("jpeg"), "jpeg", None,
         "This file is named .csv but holds a JPEG image; rename it to end in .jpg and drop it "
         "again."),
        ("scan.pdf", lambda: image_bytes("png"), "png", None,
         "This file is named .pdf but holds a PNG image; rename it to end in .png and drop it "
         "again."),
        ("scan.pdf", docx_bytes, "zip", "docx",
         "This file is named .pdf but holds a Word document; rename it to end in .docx and drop "
         "it again."),
        ("report.docx", lambda: zip_bytes({"a.pdf": b"%PDF-1.7"}), "zip", None,
         "This file is named .docx but holds a ZIP archive; save it again as a Word document, or "
         "unpack it and drop the documents themselves."),
        ("report.docx", lambda: b"Just some text, no Word document.", "text", None,
         "This file is named .docx but holds plain text; save or export it again as a Word "
         "document and drop that."),
        ("notes.md", lambda: b"\x7fELF\x02\x01\x01\x00" + bytes(64), "unknown", None,
         "This file is named .md but holds data in no format this service reads; save or export "
         "it again as a Markdown text and drop that."),
        ("old.doc", lambda: b"{\\rtf1\\ansi Hi}", "rtf", None,
         "This file is named .doc but holds a Rich Text document; rename it to end in .rtf and "
         "drop it again."),
    ],
)  # fmt: skip
def test_bytes_of_another_format_are_refused_saying_what_they_are(
    tmp_path: Path,
    name: str,
    data: Callable[[], bytes],
    content: str,
    kind: str | None,
    message: str,
) -> None:
    failure = _refused(tmp_path, name, data())
    assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    expected = {"reason": "content_mismatch", "named_as": failure.details["named_as"]}
    expected |= {"content": content} | ({"kind": kind} if kind else {})
    assert failure.details == expected
    assert failure.message == message
    assert not failure.code.retryable


def test_a_rename_is_only_advised_to_a_format_the_folder_accepts(tmp_path: Path) -> None:
    docx_only = ConversionOptions(accepted_formats=("docx",))
    failure = _refused(tmp_path, "report.docx", pdf_bytes(), docx_only)
    assert failure.message == (
        "This file is named .docx but holds a PDF; save or export it again as a Word document "
        "and drop that."
    )


def test_a_pdf_name_on_bytes_that_are_no_whole_file_keeps_its_old_answer(tmp_path: Path) -> None:
    """A file that only starts like a ZIP (or holds text) is still "not a PDF", as before."""
    for data in (b"PK\x03\x04 this is not a PDF, it is a renamed zip/text file\n", b"<html/>"):
        failure = _refused(tmp_path, "report.pdf", data)
        assert (failure.code, failure.details) == (
            ErrorCode.PDF_UNREADABLE,
            {"reason": "no_pdf_header"},
        )


# -- empty, cut off, too large ------------------------------------------------------------------


def test_an_empty_document_is_unreadable_as_a_document(tmp_path: Path) -> None:
    failure = _refused(tmp_path, "letter.docx", b"")
    assert (failure.code, failure.details) == (
        ErrorCode.DOCUMENT_UNREADABLE,
        {"reason": "empty_file"},
    )
    assert failure.message.startswith("The file is empty (0 bytes)")


@pytest.mark.parametrize(
    ("name", "data", "missing", "said"),
    [
        ("letter.docx", lambda: docx_bytes()[:3000], zipdir.NO_END, "no ZIP end record"),
        ("scan.png", lambda: image_bytes("png", size=(300, 200))[:-40], "png_end_not_arrived",
         "no IEND chunk"),
        ("letter.docx", lambda: bytes(5000), "head_not_arrived", "only zero bytes"),
    ],
)  # fmt: skip
def test_a_cut_off_document_fails_as_truncated_naming_what_is_missing(
    tmp_path: Path, name: str, data: Callable[[], bytes], missing: str, said: str
) -> None:
    failure = _refused(tmp_path, name, data())
    assert failure.code is ErrorCode.DOCUMENT_UNREADABLE
    assert failure.details == {"reason": "truncated", "missing": missing}
    assert said in failure.message and "drop a complete copy" in failure.message


def test_a_zip_bomb_fails_on_its_declared_unpacked_size(tmp_path: Path) -> None:
    bomb = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(8 << 20)})
    failure = _refused(tmp_path, "bomb.docx", bomb, limit=1 << 20)
    assert len(bomb) < 1 << 20  # small on disk, far over the limit unpacked
    assert failure.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert failure.details == {
        "reason": "unpacked_too_large",
        "unpacked_bytes": (8 << 20) + len(b"<Types/>"),
        "max_file_bytes": 1 << 20,
    }
    assert "unpacks to" in failure.message


def test_a_zip_with_more_parts_than_are_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipdir, "MAX_ENTRIES", 3)
    failure = _refused(tmp_path, "many.docx", docx_bytes())
    assert failure.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert failure.details["reason"] == "too_many_entries"


def test_a_link_named_as_a_document_is_told_to_copy_the_document(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.docx"
    target.write_bytes(docx_bytes())
    (tmp_path / "letter.docx").symlink_to(target)
    with pytest.raises(JobFailure) as caught:
        inspect_source(tmp_path / "letter.docx", "letter.docx", LIMIT, ALL)
    assert caught.value.details["reason"] == "not_a_regular_file"
    assert "copy the document itself" in caught.value.message
