"""Has a file finished arriving: the kernel's open-writer check, the bytes' ends, and the waiting
schedule on an injected clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.documents import docx_bytes
from sir_convert_a_lot import zipdir
from sir_convert_a_lot.errors import JobFailure
from sir_convert_a_lot.intake.arrival import (
    WRITER_OPEN,
    Arrivals,
    LeaseUnavailable,
    writer_on_this_host,
)
from sir_convert_a_lot.jobs.source_checks import inspect_source
from sir_convert_a_lot.source_file import (
    EMPTY,
    HEAD_NOT_ARRIVED,
    NO_EOF_MARKER,
    XREF_NOT_ARRIVED,
    missing_part,
)
from tests.helpers import SAMPLES, copy_sample, pdf_bytes

# -- the bytes ------------------------------------------------------------------------------


def test_a_complete_pdf_has_nothing_missing() -> None:
    assert missing_part(SAMPLES / "multi_page.pdf") is None


def test_a_truncated_pdf_misses_its_end() -> None:
    assert missing_part(SAMPLES / "truncated_multi_page_60pct.pdf") == NO_EOF_MARKER
    assert missing_part(SAMPLES / "truncated_multi_page_20pct.pdf") == NO_EOF_MARKER


def test_a_copy_misses_its_end_until_the_last_bytes_arrive(tmp_path: Path) -> None:
    data = (SAMPLES / "multi_page.pdf").read_bytes()
    path = tmp_path / "copying.pdf"
    for cut in (len(data) // 2, len(data) - 200, len(data) - 3):
        path.write_bytes(data[:cut])
        assert missing_part(path) == NO_EOF_MARKER, cut
    path.write_bytes(data)
    assert missing_part(path) is None


def test_a_preallocated_copy_waits_for_its_head_then_its_tail(tmp_path: Path) -> None:
    """Windows Explorer sets the full size first: the file is all zeros, then fills in."""
    data = (SAMPLES / "multi_page.pdf").read_bytes()
    path = tmp_path / "explorer.pdf"
    path.write_bytes(b"\0" * len(data))
    assert missing_part(path) == HEAD_NOT_ARRIVED
    half = len(data) // 2
    path.write_bytes(data[:half] + b"\0" * (len(data) - half))
    assert missing_part(path) == NO_EOF_MARKER
    path.write_bytes(data)
    assert missing_part(path) is None


@pytest.mark.slow
def test_a_hole_where_startxref_points_means_the_table_has_not_arrived(tmp_path: Path) -> None:
    """A writer that sends blocks out of order (parallel SMB writes) can deliver the tail first."""
    data = pdf_bytes(pages=2)
    offset = int(data[data.rindex(b"startxref") + 9 :].split()[0])
    holed = data[:offset] + b"\0" * 64 + data[offset + 64 :]
    path = tmp_path / "holed.pdf"
    path.write_bytes(holed)
    assert missing_part(path) == XREF_NOT_ARRIVED

    beyond = data.replace(b"startxref\n%d" % offset, b"startxref\n%d" % (len(data) + 10))
    path.write_bytes(beyond)
    assert missing_part(path) == XREF_NOT_ARRIVED


def test_an_empty_file_has_not_arrived(tmp_path: Path) -> None:
    path = tmp_path / "new.pdf"
    path.write_bytes(b"")
    assert missing_part(path) == EMPTY


def test_a_file_that_is_no_pdf_has_nothing_to_wait_for(tmp_path: Path) -> None:
    assert missing_part(SAMPLES / "not_a_pdf.pdf") is None


def test_complete_but_damaged_files_are_not_taken_for_unfinished_ones() -> None:
    """MuPDF repairs this one, yet its end is there: it converts with a warning, at once."""
    assert missing_part(SAMPLES / "zen_of_python_corrupted.pdf") is None


def test_every_complete_pdf_of_the_shared_corpus_has_arrived(shared_corpus: Path) -> None:
    """Facts from the corpus manifests: no complete file is held back as unfinished (a false
    positive would make it wait, then fail as truncated)."""
    held_back = []
    for manifest in shared_corpus.glob("*/manifest.json"):
        for entry in json.loads(manifest.read_text())["files"]:
            path = manifest.parent / entry["file"]
            if path.suffix.lower() != ".pdf" or "derived" in manifest.parent.name:
                continue
            if missing_part(path) is not None:
                held_back.append((entry["file"], missing_part(path)))
    assert held_back == []
    derived = shared_corpus / "derived"
    assert missing_part(derived / "truncated_multi_page_60pct.pdf") == NO_EOF_MARKER


def test_links_and_fifos_have_nothing_to_wait_for(tmp_path: Path) -> None:
    target = copy_sample("truncated_multi_page_60pct.pdf", tmp_path / "outside")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    assert missing_part(link) is None
    assert missing_part(fifo) is None  # and it did not block
    assert missing_part(tmp_path / "gone.pdf") is None


def test_preflight_fails_an_incomplete_pdf_as_truncated(tmp_path: Path) -> None:
    path = copy_sample("truncated_multi_page_60pct.pdf", tmp_path)
    with pytest.raises(JobFailure) as caught:
        inspect_source(path, path.name, 1 << 30)
    assert caught.value.code.value == "pdf_unreadable"
    assert caught.value.details == {"reason": "truncated", "missing": NO_EOF_MARKER}
    assert "%%EOF" in caught.value.message
    assert caught.value.code.retryable is False


# -- writers on this host -------------------------------------------------------------------


def test_a_file_open_for_writing_here_has_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(b"%PDF-1.7\n")
    assert writer_on_this_host(path) is False
    with path.open("ab"):
        assert writer_on_this_host(path) is True
    assert writer_on_this_host(path) is False
    with path.open("rb"):
        assert writer_on_this_host(path) is False  # readers are no writers


@pytest.mark.slow
def test_a_writer_in_another_process_is_seen_and_its_close_too(tmp_path: Path) -> None:
    path = tmp_path / "b.pdf"
    path.write_bytes(b"%PDF-1.7\n")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f = open(sys.argv[1], 'ab'); print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"open\n"
        assert writer_on_this_host(path) is True
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    assert writer_on_this_host(path) is False


def test_the_writer_check_never_follows_links_or_blocks_on_fifos(tmp_path: Path) -> None:
    target = tmp_path / "real.pdf"
    target.write_bytes(b"%PDF-1.7\n")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    with target.open("ab"):
        assert writer_on_this_host(link) is False
    assert writer_on_this_host(fifo) is False
    assert writer_on_this_host(tmp_path / "gone.pdf") is False


# -- the schedule ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _arrivals(
    clock: Clock, writer: list[bool], missing: list[str | None], limit: float = 600
) -> Arrivals:
    return Arrivals(
        5.0,
        limit,
        clock,
        writer_check=lambda _path: writer[0],
        bytes_check=lambda _path, _name: missing[0],
    )


def test_a_complete_file_without_writer_is_claimed_at_once() -> None:
    clock = Clock()
    arrivals = _arrivals(clock, [False], [None])
    verdict = arrivals.judge("a.pdf", Path("a.pdf"), 100, 1)
    assert verdict.claim and not verdict.give_up
    assert len(arrivals) == 0


def test_a_missing_end_waits_with_back_off_then_gives_up_on_the_limit() -> None:
    clock = Clock()
    arrivals = _arrivals(clock, [False], [NO_EOF_MARKER], limit=100)
    waits = []
    while True:
        verdict = arrivals.judge("a.pdf", Path("a.pdf"), 100, 1)
        if verdict.claim:
            break
        assert verdict.reason == NO_EOF_MARKER
        waits.append(verdict.wait_seconds)
        clock.now += verdict.wait_seconds
    assert waits == [5.0, 10.0, 20.0, 40.0, 25.0]  # doubling, never past the limit
    assert verdict.give_up and verdict.reason == NO_EOF_MARKER
    assert verdict.waited_seconds == pytest.approx(100)
    assert len(arrivals) == 0


def test_the_limit_counts_from_the_last_change() -> None:
    clock = Clock()
    arrivals = _arrivals(clock, [False], [NO_EOF_MARKER], limit=100)
    first = arrivals.judge("a.pdf", Path("a.pdf"), 100, 1)
    assert first.first
    clock.now += 90
    grown = arrivals.judge("a.pdf", Path("a.pdf"), 200, 2)  # more bytes came
    assert not grown.claim and grown.first and grown.waited_seconds == 0
    clock.now += 90
    assert not arrivals.judge("a.pdf", Path("a.pdf"), 200, 2).claim
    clock.now += 10
    assert arrivals.judge("a.pdf", Path("a.pdf"), 200, 2).give_up


def test_a_writer_holding_the_file_open_is_waited_for_without_limit() -> None:
    clock = Clock()
    writer = [True]
    arrivals = _arrivals(clock, writer, [None], limit=100)
    for _ in range(50):
        verdict = arrivals.judge("a.pdf", Path("a.pdf"), 100, 1)
        assert not verdict.claim and verdict.reason == WRITER_OPEN
        assert verdict.wait_seconds == 5.0  # a close is no event: keep looking often
        clock.now += verdict.wait_seconds
    assert arrivals.long_writer("a.pdf") == pytest.approx(250)
    assert arrivals.long_writer("a.pdf") is None  # reported once
    writer[0] = False
    assert arrivals.judge("a.pdf", Path("a.pdf"), 100, 1).claim


def test_when_the_kernel_cannot_tell_the_bytes_still_decide() -> None:
    def no_lease(_path: object) -> bool:
        raise LeaseUnavailable("EACCES")

    missing: list[str | None] = [NO_EOF_MARKER]
    arrivals = Arrivals(
        5.0, 600, Clock(), writer_check=no_lease, bytes_check=lambda _p, _n: missing[0]
    )
    assert not arrivals.judge("a.pdf", Path("a.pdf"), 1, 1).claim
    assert arrivals.lease_problem == "EACCES"
    missing[0] = None
    assert arrivals.judge("a.pdf", Path("a.pdf"), 2, 2).claim


def test_a_document_s_own_end_is_waited_for_by_the_name_it_was_dropped_under(
    tmp_path: Path,
) -> None:
    """The inbox is opened by descriptor (no path to read a name from): the relative path says
    which format's end to wait for."""
    data = docx_bytes()
    path = tmp_path / "in" / "letter.docx"
    path.parent.mkdir()
    path.write_bytes(data[: len(data) // 2])
    arrivals = Arrivals(5.0, 600, Clock(), writer_check=lambda _path: False)

    def opener() -> int:
        return os.open(path, os.O_RDONLY)

    verdict = arrivals.judge("in/letter.docx", opener, 1, 1)
    assert (verdict.claim, verdict.reason) == (False, zipdir.NO_END)
    path.write_bytes(data)
    assert arrivals.judge("in/letter.docx", opener, 2, 2).claim
