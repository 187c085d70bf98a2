"""The worker's side of preflight (backends/pdf_open): reading the source and opening it with
PyMuPDF, what is refused and with which code, reason and details."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sir_convert_a_lot.backends.pdf_open import open_pdf, read_source
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from tests.helpers import SAMPLES, make_pdf, pdf_bytes

LIMIT = 50 * 1024 * 1024


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# -- read_source ------------------------------------------------------------------------------


def test_read_source_refuses_a_symlink(tmp_path: Path) -> None:
    target = make_pdf(tmp_path / "outside.pdf")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)

    with pytest.raises(JobFailure) as caught:
        read_source(link, LIMIT)

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "symbolic link"


def test_read_source_returns_the_exact_bytes_and_enforces_the_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "doc.pdf")
    content = path.read_bytes()

    assert read_source(path, LIMIT) == content
    with pytest.raises(JobFailure) as caught:
        read_source(path, len(content) - 1)
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE


# -- open_pdf on the sample corpus ------------------------------------------------------------


def test_open_pdf_refuses_text_named_pdf() -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(_sample("not_a_pdf.pdf"), 100)

    assert caught.value.code is ErrorCode.PDF_UNREADABLE
    assert caught.value.details["reason"] == "no_pdf_header"


def test_open_pdf_refuses_a_pdf_truncated_to_zero_pages() -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(_sample("truncated_multi_page_20pct.pdf"), 100)

    assert caught.value.code is ErrorCode.PDF_UNREADABLE
    assert caught.value.details["reason"] == "zero_pages"


def test_open_pdf_repairs_a_partly_truncated_pdf_with_a_warning() -> None:
    opened = open_pdf(_sample("truncated_multi_page_60pct.pdf"), 100)
    try:
        assert opened.pages == 5
        assert opened.warnings == ("pdf_repaired",)
    finally:
        opened.document.close()


def test_open_pdf_refuses_a_pdf_that_needs_a_user_password() -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(_sample("r2-user-password.pdf"), 100)

    assert caught.value.code is ErrorCode.PDF_ENCRYPTED
    assert not caught.value.code.retryable


def test_open_pdf_opens_a_pdf_with_only_an_owner_password() -> None:
    opened = open_pdf(_sample("r6-owner-password.pdf"), 100)
    try:
        assert opened.pages >= 1
    finally:
        opened.document.close()


def test_open_pdf_opens_a_complete_document_without_warnings() -> None:
    data = _sample("multi_page.pdf")
    opened = open_pdf(data, 100)
    try:
        assert opened.pages == 5
        assert opened.warnings == ()
        assert opened.data == data
    finally:
        opened.document.close()


def test_open_pdf_refuses_more_pages_than_the_limit() -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(pdf_bytes(pages=3), max_pages=2)

    assert caught.value.code is ErrorCode.TOO_MANY_PAGES
    assert caught.value.details == {"pages": 3, "max_pages": 2}


def test_open_pdf_accepts_exactly_the_page_limit() -> None:
    opened = open_pdf(pdf_bytes(pages=3), max_pages=3)
    try:
        assert opened.pages == 3
    finally:
        opened.document.close()


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\njunk junk junk",
        b"%PDF-1.4\n" + b"\x00garbage" * 100,
        b"%PDF-" + bytes(range(256)) * 10,
    ],
    ids=["text", "nul-junk", "binary-junk"],
)
def test_open_pdf_calls_junk_after_a_header_unreadable(data: bytes) -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(data, 100)

    assert caught.value.code is ErrorCode.PDF_UNREADABLE


# -- failures cross the worker pipe -----------------------------------------------------------


def test_job_failure_survives_pickling() -> None:
    failure = JobFailure(
        ErrorCode.TOO_MANY_PAGES,
        "The PDF has 3 pages, over this service's limit of 2; split it into smaller files.",
        pages=3,
        max_pages=2,
        nested={"a": [1, 2]},
    )

    copy = pickle.loads(pickle.dumps(failure))  # noqa: S301 - our own bytes

    assert isinstance(copy, JobFailure)
    assert copy.code is ErrorCode.TOO_MANY_PAGES
    assert copy.message == failure.message
    assert copy.details == {"pages": 3, "max_pages": 2, "nested": {"a": [1, 2]}}
    assert str(copy) == failure.message


def test_job_failure_without_details_survives_pickling() -> None:
    failure = JobFailure(ErrorCode.WORKER_CRASHED, "The worker stopped.")

    copy = pickle.loads(pickle.dumps(failure))  # noqa: S301 - our own bytes

    assert (copy.code, copy.message, copy.details) == (
        ErrorCode.WORKER_CRASHED,
        "The worker stopped.",
        {},
    )
