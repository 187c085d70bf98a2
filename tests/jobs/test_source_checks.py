"""The supervisor's checks before a claim (jobs/source_checks): what is refused without any
parser, and with which code, reason and details."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from sir_convert_a_lot.backends.pdf_open import read_source
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.jobs.source_checks import inspect_source, sha256_of
from tests.helpers import SAMPLES, make_pdf

LIMIT = 50 * 1024 * 1024


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# -- inspect_source: the checks that need no parser -----------------------------------------


def test_inspect_source_refuses_a_symlink_to_a_real_pdf(tmp_path: Path) -> None:
    outside = make_pdf(tmp_path / "outside" / "real.pdf")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    link = inbox / "report.pdf"
    link.symlink_to(outside)

    with pytest.raises(JobFailure) as caught:
        inspect_source(link, "report.pdf", LIMIT)

    failure = caught.value
    assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert failure.details["kind"] == "symbolic link"
    assert failure.details["reason"] == "not_a_regular_file"
    assert not failure.code.retryable


@pytest.mark.timeout(20)
def test_inspect_source_never_opens_a_symlink_target(tmp_path: Path) -> None:
    # The target is a FIFO: following the link and opening it for reading would block.
    fifo = tmp_path / "outside.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "report.pdf"
    link.symlink_to(fifo)

    with pytest.raises(JobFailure) as caught:
        inspect_source(link, "report.pdf", LIMIT)

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "symbolic link"


@pytest.mark.timeout(20)
def test_inspect_source_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "scan.pdf"
    os.mkfifo(fifo)

    with pytest.raises(JobFailure) as caught:
        inspect_source(fifo, "scan.pdf", LIMIT)

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "named pipe (FIFO)"
    assert caught.value.details["reason"] == "not_a_regular_file"


@pytest.mark.timeout(20)
def test_hashing_and_reading_a_fifo_do_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "scan.pdf"
    os.mkfifo(fifo)

    assert sha256_of(fifo) is None
    with pytest.raises(JobFailure) as caught:
        read_source(fifo, LIMIT)
    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "named pipe (FIFO)"


def test_inspect_source_refuses_a_unix_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative bind keeps under the 108-byte socket path limit
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind("printer.pdf")
        with pytest.raises(JobFailure) as caught:
            inspect_source(tmp_path / "printer.pdf", "printer.pdf", LIMIT)
    finally:
        server.close()

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "socket"


def test_inspect_source_refuses_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "album.pdf"
    folder.mkdir()

    with pytest.raises(JobFailure) as caught:
        inspect_source(folder, "album.pdf", LIMIT)

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["kind"] == "folder"


def test_inspect_source_refuses_a_real_pdf_without_a_pdf_name(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "x.txt")

    with pytest.raises(JobFailure) as caught:
        inspect_source(path, "x.txt", LIMIT)

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert caught.value.details["reason"] == "format_not_accepted"  # "not_a_pdf_name" before 25
    assert "x.txt" in caught.value.message


def test_inspect_source_refuses_bytes_without_a_pdf_header_before_any_parser(
    tmp_path: Path,
) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"<html>a web page saved with the wrong name</html>\n")

    with pytest.raises(JobFailure) as caught:
        inspect_source(path, "report.pdf", LIMIT)

    assert caught.value.code is ErrorCode.PDF_UNREADABLE
    assert caught.value.details["reason"] == "no_pdf_header"


def test_inspect_source_accepts_an_upper_case_pdf_suffix(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "SCAN.PDF")

    facts = inspect_source(path, "SCAN.PDF", LIMIT)

    assert facts.size_bytes == path.stat().st_size


def test_inspect_source_calls_an_empty_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")

    with pytest.raises(JobFailure) as caught:
        inspect_source(path, "empty.pdf", LIMIT)

    assert caught.value.code is ErrorCode.PDF_UNREADABLE
    assert caught.value.details["reason"] == "empty_file"
    assert not caught.value.code.retryable


def test_inspect_source_refuses_a_file_over_the_size_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "big.pdf")
    size = path.stat().st_size

    with pytest.raises(JobFailure) as caught:
        inspect_source(path, "big.pdf", size - 1)

    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert caught.value.details == {"size_bytes": size, "max_file_bytes": size - 1}
    assert str(size) in caught.value.message


def test_inspect_source_accepts_a_file_exactly_at_the_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "edge.pdf")
    size = path.stat().st_size

    assert inspect_source(path, "edge.pdf", size).size_bytes == size


def test_inspect_source_returns_size_and_sha256_of_a_good_file(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "good.pdf", pages=2)
    content = path.read_bytes()

    facts = inspect_source(path, "good.pdf", LIMIT)

    assert facts.size_bytes == len(content)
    assert facts.sha256 == hashlib.sha256(content).hexdigest()
