"""Writers that pause: the real daemon never converts half a document.

Each test drives a writer the way a slow share client does (half a 12-page PDF, a pause longer
than the windows, then the rest) and checks what a user reads afterwards: the complete Markdown,
a sidecar with the complete file's size and hash, and the complete original in the archive. The
writer is a local process, or an SMB client writing through a real Samba server on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import pytest

from harness import samba
from harness.documents import docx_bytes
from tests.daemon import CAP_LEASE, Daemon, can_obey_permissions, run_cli
from tests.helpers import pdf_bytes, wait_for, write_config

pytestmark = pytest.mark.slow

PAGES = 12


def _document() -> bytes:
    return pdf_bytes(pages=PAGES, text="Chapter text for the slow writer.")


def _finished(outbox: Path, stem: str) -> Path | None:
    for name in (f"{stem}.json", f"{stem}.error.json"):
        if (outbox / name).exists():
            return outbox / name
    return None


def _assert_complete_conversion(root: Path, stem: str, data: bytes) -> None:
    outbox = root / "outbox"
    assert not (outbox / f"{stem}.error.json").exists()
    sidecar = json.loads((outbox / f"{stem}.json").read_text())
    assert sidecar["status"] == "succeeded"
    assert sidecar["source"]["pages"] == PAGES
    assert sidecar["source"]["size_bytes"] == len(data)
    assert sidecar["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    markdown = (outbox / f"{stem}.md").read_text()
    assert f"Page {PAGES}." in markdown and "Page 1." in markdown
    assert (root / "archive" / f"{stem}.pdf").read_bytes() == data


def _arriving_in_status(config: Path, why: str) -> str | None:
    """``sir-convert status`` once it lists report.pdf as arriving, for ``why``."""
    shown = run_cli("status", config=config).stdout
    return shown if f"arriving: report.pdf ({why}" in shown else None


Opener = Callable[[str, str], BinaryIO]  # (name in the inbox, mode) -> a writable file


@pytest.fixture(params=["local", "samba"])
def open_in_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """How a writer reaches the inbox: directly, or as an SMB client of a Samba share."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    if request.param == "local":

        def open_local(name: str, mode: str) -> BinaryIO:
            handle: BinaryIO = (inbox / name).open(mode)  # type: ignore[assignment]
            return handle

        yield open_local
        return
    why_not = samba.missing()
    if why_not:
        pytest.skip(why_not)
    with ExitStack() as stack:
        share = stack.enter_context(samba.samba_share(tmp_path / "samba", inbox))
        yield share.open


@pytest.mark.parametrize("keep_open", [True, False], ids=["held-open", "closed-between"])
@pytest.mark.parametrize("preallocate", [False, True], ids=["plain", "preallocated"])
def test_a_writer_that_pauses_longer_than_every_window_gets_the_complete_conversion(
    tmp_path: Path, open_in_inbox: Opener, keep_open: bool, preallocate: bool
) -> None:
    # Held open: the pause outlasts even the incomplete limit, since a writer on this host is
    # waited for as long as it holds the file. Closed: the pause lies within that limit.
    limit = 1.0 if keep_open else 8.0
    config = write_config(
        tmp_path, watch={"stability_seconds": 0.3, "incomplete_wait_seconds": limit}
    )
    data = _document()
    half = len(data) // 2
    with Daemon(config, quick=True).start() as daemon:
        handle = open_in_inbox("report.pdf", "wb")
        if preallocate:  # as Windows Explorer does: the full size first, zeros until written
            handle.truncate(len(data))
        handle.write(data[:half])
        handle.flush()
        if not keep_open:
            handle.close()
        paused = time.monotonic()
        why = "a writer on this host still has it open" if keep_open else "its end has not"
        status = wait_for(lambda: _arriving_in_status(config, why), timeout=10)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - paused)))  # ten stability windows
        assert _finished(tmp_path / "outbox", "report") is None
        assert "arriving: report.pdf" in status
        if not keep_open:
            handle = open_in_inbox("report.pdf", "r+b")
        handle.seek(half)
        handle.write(data[half:])
        handle.close()
        wait_for(lambda: _finished(tmp_path / "outbox", "report"), timeout=60)
        daemon.terminate()
    _assert_complete_conversion(tmp_path, "report", data)
    waited = [e["event"] for e in daemon.events() if e.get("source") == "report.pdf"]
    assert ("waiting_for_writer" if keep_open else "waiting_for_end_of_file") in waited
    assert waited.count("job_claimed") == 1


def test_a_word_document_written_with_a_pause_is_claimed_only_once_whole(tmp_path: Path) -> None:
    """A DOCX, cut in the middle of its compressed parts, paused for ten stability windows: the
    daemon waits for the ZIP's end record and claims the whole file, once. (Whether it converts
    is the worker's business; what is asserted is what was claimed.)"""
    config = write_config(tmp_path, watch={"stability_seconds": 0.3, "incomplete_wait_seconds": 30})
    data = docx_bytes("A paragraph written slowly.", paragraphs=400)
    half = len(data) // 2
    target = tmp_path / "inbox" / "letter.docx"
    with Daemon(config, quick=True).start() as daemon:
        with target.open("wb") as handle:
            handle.write(data[:half])
        paused = time.monotonic()
        waiting = wait_for(
            lambda: (
                "arriving: letter.docx (its end has not arrived)"
                in run_cli("status", config=config).stdout
            ),
            timeout=10,
        )
        time.sleep(max(0.0, 3.0 - (time.monotonic() - paused)))  # ten stability windows
        assert waiting and _finished(tmp_path / "outbox", "letter") is None
        with target.open("ab") as handle:
            handle.write(data[half:])
        done = wait_for(lambda: _finished(tmp_path / "outbox", "letter"), timeout=60)
        daemon.terminate()
    source = json.loads(done.read_text())["source"]
    assert (source["size_bytes"], source["sha256"]) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    events = [e for e in daemon.events() if e.get("source") == "letter.docx"]
    waited = [e for e in events if e["event"] == "waiting_for_end_of_file"]
    assert waited and waited[0]["missing"] == "zip_end_not_arrived"
    assert [e["event"] for e in events].count("job_claimed") == 1


def test_a_writer_that_never_finishes_ends_truncated_after_the_limit(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch={"stability_seconds": 0.3, "incomplete_wait_seconds": 2})
    data = _document()
    target = tmp_path / "inbox" / "abandoned.pdf"
    with Daemon(config, quick=True).start() as daemon:
        target.write_bytes(data[: len(data) // 2])
        last_write = time.time()
        error_json = wait_for(lambda: _finished(tmp_path / "outbox", "abandoned"), timeout=60)
        failed_after = time.time() - last_write
        daemon.terminate()
    envelope = json.loads(error_json.read_text())
    assert envelope["error"]["code"] == "pdf_unreadable"
    assert envelope["error"]["details"] == {"reason": "truncated", "missing": "no_eof_marker"}
    assert envelope["error"]["retryable"] is False
    assert failed_after >= 2.0
    expired = daemon.wait_event("incomplete_wait_expired")[0]
    assert expired["source"] == "abandoned.pdf" and expired["waited_seconds"] >= 2.0
    assert (tmp_path / "failed" / "abandoned.pdf").read_bytes() == data[: len(data) // 2]


def test_a_file_rewritten_during_conversion_is_converted_again_from_its_final_bytes(
    tmp_path: Path,
) -> None:
    """A writer on another host (no lease can see it) rewrites the file while it converts."""
    config = write_config(tmp_path, watch={"stability_seconds": 0.3})
    final = _document()
    replacement = tmp_path / "final.pdf"
    replacement.write_bytes(final)
    first = pdf_bytes(pages=2, text="An early draft.")
    harness = ("tests.change_harness", "draft.pdf", str(replacement))
    with Daemon(config, harness=harness, quick=True).start() as daemon:
        (tmp_path / "inbox" / "draft.pdf").write_bytes(first)
        wait_for(lambda: _finished(tmp_path / "outbox", "draft"), timeout=60)
        daemon.terminate()
    _assert_complete_conversion(tmp_path, "draft", final)
    returned = daemon.wait_event("job_returned_to_inbox")[0]
    assert returned["reason"] == "source_changed_during_conversion"
    assert returned["at_claim"]["sha256"] == hashlib.sha256(first).hexdigest()
    assert returned["now"]["sha256"] == hashlib.sha256(final).hexdigest()
    claims = daemon.wait_event("job_claimed", count=2)
    assert len(claims) == 2
    sidecar = json.loads((tmp_path / "outbox" / "draft.json").read_text())
    assert sidecar["execution"]["attempt"] == 1  # the discarded run counted no attempt
    assert sorted(os.listdir(tmp_path / "outbox")) == ["draft.json", "draft.md"]


@pytest.mark.skipif(not can_obey_permissions(), reason="cannot drop capabilities here")
def test_without_cap_lease_the_daemon_says_so_and_the_other_checks_still_hold(
    tmp_path: Path,
) -> None:
    """A share user's file, a service without CAP_LEASE: the kernel will not tell whether smbd
    still writes it. The daemon says so once, and a cut-off copy still waits and never converts
    from its half."""
    config = write_config(tmp_path, watch={"stability_seconds": 0.3, "incomplete_wait_seconds": 30})
    data = _document()
    target = tmp_path / "inbox" / "shared.pdf"
    with Daemon(config, drop_capabilities=(CAP_LEASE,), quick=True).start() as daemon:
        target.write_bytes(data[: len(data) // 2])
        os.chown(target, 65534, 65534)  # owned by a share user, not by the service
        unavailable = daemon.wait_event("open_writer_check_unavailable")[0]
        daemon.wait_event("waiting_for_end_of_file")
        with target.open("ab") as handle:
            handle.write(data[len(data) // 2 :])
        wait_for(lambda: _finished(tmp_path / "outbox", "shared"), timeout=60)
        daemon.terminate()
    assert unavailable["reason"] == "EACCES"
    assert "CAP_LEASE" in unavailable["effect"]
    _assert_complete_conversion(tmp_path, "shared", data)
