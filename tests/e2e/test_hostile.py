"""Hostile input and faults: every case ends with its specific code or a correct conversion,
no input lost, no duplicate output, and the daemon still serving (or refusing to start)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot.intake import blocked as blocked_module
from sir_convert_a_lot.intake import dispatch as dispatch_module
from sir_convert_a_lot.jobs import deferral
from sir_convert_a_lot.jobs import lifecycle as lifecycle_module
from sir_convert_a_lot.jobs import publish as publish_module
from sir_convert_a_lot.jobs import source_checks as source_checks_module
from sir_convert_a_lot.jobs.claims import Claims
from sir_convert_a_lot.jobs.outcome import Status
from sir_convert_a_lot.jobs.publish import TMP_PREFIX
from sir_convert_a_lot.jobs.source_blocked import SourceBlocked
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.service.daemon import Service
from tests.daemon import Daemon, can_obey_permissions, run_cli
from tests.helpers import (
    REPO,
    copy_sample,
    files_under,
    load_config,
    make_pdf,
    pdf_bytes,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


def _error(outbox: Path, stem: str) -> dict[str, Any]:
    error: dict[str, Any] = json.loads((outbox / f"{stem}.error.json").read_text())["error"]
    return error


# -- refusing to start --------------------------------------------------------------------------


def test_a_config_writable_by_others_refuses_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    config.chmod(0o666)
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert "writable by group or others" in err and "chmod go-w" in err


@pytest.mark.parametrize("where", ["venv", "path_entry", "working_folder"])
def test_a_data_folder_in_the_code_zone_refuses_the_start(
    tmp_path: Path,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if where == "venv":
        target = REPO / ".venv" / f"sca-test-archive-{os.getpid()}"
    elif where == "path_entry":
        target = tmp_path / "bin"
        target.mkdir()
        monkeypatch.setenv("PATH", f"{target}{os.pathsep}{os.environ['PATH']}")
    else:
        target = tmp_path / "here"
        target.mkdir()
        monkeypatch.chdir(target)
    config = write_config(tmp_path, paths={"archive": str(target)})
    try:
        assert main(["--config", str(config), "run"]) == 2
    finally:
        if where == "venv" and target.exists():
            target.rmdir()
    err = capsys.readouterr().err
    assert err.startswith("sir-convert: paths.archive:")
    assert "runs code from" in err


# -- hostile entries in the inbox ---------------------------------------------------------------


def test_links_sockets_folders_named_pdf_and_lookalike_names(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    outside = make_pdf(tmp_path / "private" / "outside.pdf", text="not for the daemon")
    before = outside.read_bytes()
    inbox = tmp_path / "inbox"
    with Daemon(config, quick=True).start() as daemon:
        os.link(outside, inbox / "hardlink.pdf")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(inbox / "socket.pdf"))
        make_pdf(inbox / "folder.pdf" / "inside.pdf")  # a folder whose name ends in .pdf
        make_pdf(inbox / "Caf\u00e9.pdf", text="composed")  # NFC
        make_pdf(inbox / "Cafe\u0301.pdf", text="decomposed")  # NFD: the same name to a person
        make_pdf(inbox / "CAF\u00c9.pdf", text="upper case")
        outbox = tmp_path / "outbox"
        wait_for(
            lambda: (
                (outbox / "hardlink.error.json").exists()
                and (outbox / "socket.error.json").exists()
                and (outbox / "folder.pdf" / "inside.json").exists()
                and len(
                    [
                        n
                        for n in os.listdir(outbox)
                        if n.endswith(".json") and not n.startswith(TMP_PREFIX)
                    ]
                )
                == 5
            ),
            timeout=60,
        )
        listener.close()
        assert daemon.terminate() == 0
    hard = _error(outbox, "hardlink")
    assert hard["code"] == "unsupported_media_type" and hard["details"]["reason"] == "hard_link"
    assert outside.read_bytes() == before  # the file outside was never moved or changed
    sock = _error(outbox, "socket")
    assert sock["code"] == "unsupported_media_type" and sock["details"]["kind"] == "socket"
    sidecars = sorted(n for n in os.listdir(outbox) if n.endswith(".json") and "rror" not in n)
    # three names a person reads as one: three outputs, none overwritten
    assert len([n for n in sidecars if n.lower().startswith("caf")]) == 3
    texts = {
        (outbox / n.replace(".json", ".md")).read_text().split(" Page")[0].strip()
        for n in sidecars
        if n.lower().startswith("caf")
    }
    assert texts == {"composed", "decomposed", "upper case"}


def _recursive_xobject_pdf() -> bytes:
    import pymupdf

    document = pymupdf.open()
    page = document.new_page()
    page.insert_text((72, 72), "A page that draws a form that draws itself.")
    form = document.get_new_xref()
    document.update_object(
        form,
        f"<< /Type /XObject /Subtype /Form /BBox [0 0 100 100] "
        f"/Resources << /XObject << /X1 {form} 0 R >> >> >>",
    )
    document.update_stream(form, b"q /X1 Do Q")
    kind, value = document.xref_get_key(page.xref, "Resources")
    holder = int(value.split()[0]) if kind == "xref" else page.xref
    key = "XObject" if kind == "xref" else "Resources/XObject"
    document.xref_set_key(holder, key, f"<< /X1 {form} 0 R >>")
    (contents,) = page.get_contents()
    document.update_stream(contents, document.xref_stream(contents) + b"\nq /X1 Do Q\n")
    data: bytes = document.tobytes()
    return data


def _huge_page_pdf() -> bytes:
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=14400, height=14400)  # the largest page PDF allows
    page.insert_text((100, 100), "A very large page.", fontsize=400)
    data: bytes = document.tobytes()
    return data


def _many_pages_pdf(count: int) -> bytes:
    """Blank pages written object by object: pymupdf's `new_page` took 68 s of the test's
    CPU for 20,000 pages, and the daemon needs only a page tree that says how many."""
    kids = " ".join(f"{3 + n} 0 R" for n in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Count {count} /Kids [{kids}] >>".encode(),
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"] * count,
    ]
    data = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(data))
        data += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(data)


def test_hostile_pdfs_end_with_a_result_or_their_code_and_the_daemon_carries_on(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, conversion={"max_pages": 2000})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    with Daemon(config).start() as daemon:
        (inbox / "recursive.pdf").write_bytes(_recursive_xobject_pdf())
        (inbox / "huge-page.pdf").write_bytes(_huge_page_pdf())
        (inbox / "twenty-thousand.pdf").write_bytes(_many_pages_pdf(20_000))
        wait_for(
            lambda: all(
                (outbox / f"{s}.json").exists() or (outbox / f"{s}.error.json").exists()
                for s in ("recursive", "huge-page", "twenty-thousand")
            ),
            timeout=240,
        )
        make_pdf(inbox / "after.pdf")
        wait_for(lambda: (outbox / "after.json").exists(), timeout=60)
        assert daemon.terminate() == 0
    many = _error(outbox, "twenty-thousand")
    assert many["code"] == "too_many_pages"
    assert many["details"] == {"pages": 20_000, "max_pages": 2000}
    huge = json.loads((outbox / "huge-page.json").read_text())
    assert "A very large page" in (outbox / "huge-page.md").read_text()
    assert huge["source"]["pages"] == 1
    recursive_ok = (outbox / "recursive.json").exists()
    if recursive_ok:
        assert "draws itself" in (outbox / "recursive.md").read_text()
    else:
        assert _error(outbox, "recursive")["code"] in {
            "pdf_unreadable",
            "conversion_internal_error",
        }
    assert files_under(inbox) == []


# -- faults (in-process, with the failure injected where the operating system would raise) ------


def _start(service: Service) -> threading.Thread:
    thread = threading.Thread(target=service.run)
    thread.start()
    assert service.ready.wait(60)
    return thread


def test_a_file_changed_after_its_claim_is_given_back_and_converted_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_inspect = source_checks_module.inspect_source  # the function runner calls by that name
    whole = pdf_bytes(pages=3, text="complete")
    appended = threading.Event()

    def writer_still_writing(path: Path, name: str, *limits: Any) -> object:
        if not appended.is_set():  # the writer had the file open and wrote on after the claim
            appended.set()
            path.write_bytes(whole)
        return real_inspect(path, name, *limits)

    monkeypatch.setattr(lifecycle_module, "inspect_source", writer_still_writing)
    service = Service(load_config(tmp_path))
    thread = _start(service)
    try:
        (tmp_path / "inbox" / "growing.pdf").write_bytes(pdf_bytes(pages=1, text="partial"))
        wait_for(lambda: (tmp_path / "outbox" / "growing.json").exists(), timeout=60)
    finally:
        service.request_stop()
        thread.join(60)
    returned = [o for o in service.outcomes if o.status is Status.RETURNED]
    assert [o.code for o in returned] == ["source_changed_after_claim"]
    sidecar = json.loads((tmp_path / "outbox" / "growing.json").read_text())
    assert sidecar["source"]["sha256"] == hashlib.sha256(whole).hexdigest()
    assert sidecar["source"]["pages"] == 3
    assert sorted(os.listdir(tmp_path / "outbox")) == ["growing.json", "growing.md"]


def test_a_full_outbox_keeps_the_file_claimed_and_publishes_once_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_full = threading.Event()
    disk_full.set()
    real_write = publish_module._write_new

    def maybe_full(dir_fd: int, name: str, content: bytes) -> None:
        if disk_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(dir_fd, name, content)

    monkeypatch.setattr(publish_module, "_write_new", maybe_full)
    monkeypatch.setattr(deferral, "DEFER_SECONDS", 0.5)
    service = Service(load_config(tmp_path))
    thread = _start(service)
    try:
        make_pdf(tmp_path / "inbox" / "waiting.pdf")
        wait_for(lambda: any(o.status is Status.DEFERRED for o in service.outcomes), timeout=60)
        claimed = tmp_path / "state" / "claimed" / service.instance
        assert len(list(claimed.iterdir())) == 1  # still held, not lost, not failed
        assert not list((tmp_path / "failed").iterdir())
        disk_full.clear()
        wait_for(lambda: (tmp_path / "outbox" / "waiting.json").exists(), timeout=30)
    finally:
        service.request_stop()
        thread.join(60)
    assert sorted(os.listdir(tmp_path / "outbox")) == ["waiting.json", "waiting.md"]
    assert os.listdir(tmp_path / "archive") == ["waiting.pdf"]


def test_an_unwritable_state_folder_leaves_files_in_the_inbox_until_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = threading.Event()
    broken.set()
    real_claim = Claims.claim

    def claim(self: Claims, *args: object, **kwargs: object) -> object:
        if broken.is_set():
            raise PermissionError(errno.EACCES, "Permission denied", str(self.state))
        return real_claim(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Claims, "claim", claim)
    monkeypatch.setattr(dispatch_module, "CLAIM_BACKOFF_SECONDS", 0.5)
    config = replace(load_config(tmp_path))
    service = Service(config)
    thread = _start(service)
    try:
        make_pdf(tmp_path / "inbox" / "patient.pdf")
        wait_for(lambda: service.dispatcher.paused_until > 0, timeout=30)
        assert (tmp_path / "inbox" / "patient.pdf").exists()
        broken.clear()
        wait_for(lambda: (tmp_path / "outbox" / "patient.json").exists(), timeout=30)
    finally:
        service.request_stop()
        thread.join(60)
    assert os.listdir(tmp_path / "archive") == ["patient.pdf"]


def _status_line_with(config: Path, text: str) -> str | None:
    """The line of ``sir-convert status`` that holds ``text``, once it shows."""
    lines = run_cli("status", config=config).stdout.splitlines()
    return next((line for line in lines if text in line), None)


@pytest.mark.skipif(
    not can_obey_permissions(), reason="root without CAP_SETPCAP cannot give up its override"
)
@pytest.mark.parametrize("read_only", ["outbox", "archive", "failed"])
def test_a_folder_the_daemon_may_not_write_loses_nothing_and_publishes_nothing_twice(
    tmp_path: Path, read_only: str
) -> None:
    # Real EACCES: the daemon runs without the capabilities that let root ignore file modes.
    config = write_config(tmp_path)
    outbox = tmp_path / "outbox"
    with Daemon(config, obey_permissions=True, quick=True).start() as daemon:
        (tmp_path / read_only).chmod(0o555)
        try:
            make_pdf(tmp_path / "inbox" / "good.pdf")
            copy_sample("not_a_pdf.pdf", tmp_path / "inbox")
            deferred = "job_deferred" if read_only == "outbox" else "job_disposal_deferred"
            daemon.wait_event(deferred, timeout=60)
            stuck = "not_a_pdf.pdf" if read_only == "failed" else "good.pdf"
            shown = wait_for(
                lambda: _status_line_with(config, f"deferred: {stuck} ({deferred}: "), timeout=30
            )
            assert "PermissionError" in shown and "next try in" in shown
            if read_only == "outbox":
                daemon.wait_event(deferred, timeout=60, count=2)
            else:
                wait_for(
                    lambda: (
                        len([n for n in os.listdir(outbox) if not n.startswith(TMP_PREFIX)]) == 3
                    ),
                    timeout=60,
                )
            # Every original is somewhere (claimed, archived or failed), never in two places.
            held = files_under(tmp_path / "state" / "claimed")
            kept = files_under(tmp_path / "archive") + files_under(tmp_path / "failed")
            assert len([p for p in held if p.endswith("/source")]) + len(kept) == 2
            assert "good.error.json" not in os.listdir(outbox)
        finally:
            (tmp_path / read_only).chmod(0o755)
        assert daemon.terminate() == 0
    with Daemon(config, obey_permissions=True, log_name="restarted", quick=True).start() as daemon:
        wait_for(lambda: files_under(tmp_path / "failed") == ["not_a_pdf.pdf"], timeout=60)
        wait_for(lambda: files_under(tmp_path / "archive") == ["good.pdf"], timeout=60)
        assert daemon.terminate() == 0
    assert sorted(os.listdir(outbox)) == ["good.json", "good.md", "not_a_pdf.error.json"]
    assert _error(outbox, "not_a_pdf")["code"] == "pdf_unreadable"
    assert not files_under(tmp_path / "state" / "claimed")


def test_a_blocked_file_backs_off_alone_doubling_while_the_others_are_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [blocked_module.blocked_delay(n) for n in (1, 2, 3, 7, 60)] == [
        10.0,
        20.0,
        40.0,
        600.0,
        600.0,
    ]
    monkeypatch.setattr(blocked_module, "BLOCKED_FIRST_SECONDS", 0.3)
    real_claim = Claims.claim

    def claim(self: Claims, relative_path: str, *args: object, **kwargs: object) -> object:
        if relative_path == "locked/stuck.pdf":
            denied = PermissionError(errno.EACCES, "Permission denied")
            raise SourceBlocked(relative_path, self.paths.inbox / "locked", denied)
        return real_claim(self, relative_path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Claims, "claim", claim)
    service = Service(load_config(tmp_path))
    thread = _start(service)
    inbox = tmp_path / "inbox"
    try:
        make_pdf(inbox / "locked" / "stuck.pdf")
        wait_for(lambda: "locked/stuck.pdf" in service.intake.files.blocked(), timeout=30)
        make_pdf(inbox / "free.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "free.json").exists(), timeout=30)
        first = service.intake.files.blocked()["locked/stuck.pdf"]
        wait_for(lambda: service.intake.files.blocked()["locked/stuck.pdf"].tries >= 3, timeout=30)
        assert first.since == service.intake.files.blocked()["locked/stuck.pdf"].since
        assert "1 blocked" in service.heartbeat.status_line()
        assert service.heartbeat.status()["blocked"][0]["source"] == "locked/stuck.pdf"
        assert service.dispatcher.paused_until == 0.0  # the inbox as a whole never paused
        assert (inbox / "locked" / "stuck.pdf").exists()
        (inbox / "locked" / "stuck.pdf").unlink()  # the user takes it away: nothing is blocked
        wait_for(lambda: not service.intake.files.blocked(), timeout=30)
        wait_for(lambda: "blocked" not in service.heartbeat.status_line(), timeout=10)
    finally:
        service.request_stop()
        thread.join(60)


@pytest.mark.skipif(
    not can_obey_permissions(), reason="root without CAP_SETPCAP cannot give up its override"
)
def test_a_file_in_a_folder_the_daemon_may_not_write_waits_alone_and_status_names_it(
    tmp_path: Path,
) -> None:
    # Real EACCES: a share user's sub-folder made under umask 022 (here 0555), and a daemon
    # without the capabilities that let root ignore file modes.
    config = write_config(tmp_path)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    locked = inbox / "locked"
    stuck = make_pdf(locked / "stuck.pdf", text="waits for its folder")
    before = stuck.read_bytes()
    locked.chmod(0o555)
    try:
        for index in range(3):
            make_pdf(inbox / f"free-{index}.pdf")
        with Daemon(config, obey_permissions=True, quick=True).start() as daemon:
            failure = daemon.wait_event("claim_failed", timeout=30)[0]
            assert failure["source"] == "locked/stuck.pdf"
            assert failure["errno"] == "EACCES"
            assert f"the folder {locked} is not writable by the service user" in failure["fix"]
            wait_for(
                lambda: all((outbox / f"free-{i}.json").exists() for i in range(3)), timeout=60
            )
            assert stuck.read_bytes() == before
            assert files_under(locked) == ["stuck.pdf"]

            def status_json() -> dict[str, Any]:
                out = run_cli("status", "--json", config=config).stdout
                result: dict[str, Any] = json.loads(out)
                return result

            # The lease is rewritten at the next heartbeat (at most lease_seconds / 4).
            status = wait_for(lambda: (s := status_json())["blocked"] and s, timeout=30)
            assert [b["source"] for b in status["blocked"]] == ["locked/stuck.pdf"]
            assert status["blocked"][0]["errno"] == "EACCES"
            assert status["instances"][0]["blocked"] == 1
            text = run_cli("status", config=config).stdout
            assert "locked/stuck.pdf: EACCES" in text and "not writable by the service" in text
            locked.chmod(0o755)
            wait_for(lambda: (outbox / "locked" / "stuck.json").exists(), timeout=60)
            assert [e["source"] for e in daemon.events() if e["event"] == "claim_failed"] == [
                "locked/stuck.pdf"
            ]
            daemon.wait_event("claim_unblocked")
            wait_for(lambda: not status_json()["blocked"], timeout=30)
            assert daemon.terminate() == 0
    finally:
        locked.chmod(0o755)
    assert sorted(files_under(tmp_path / "archive")) == [
        "free-0.pdf",
        "free-1.pdf",
        "free-2.pdf",
        "locked/stuck.pdf",
    ]


@pytest.mark.skipif(
    not can_obey_permissions(), reason="root without CAP_SETPCAP cannot give up its override"
)
def test_a_read_only_state_folder_leaves_the_file_in_the_inbox_and_claims_resume(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    claimed = tmp_path / "state" / "claimed" / "test-instance"
    with Daemon(config, obey_permissions=True, quick=True).start() as daemon:
        claimed.chmod(0o555)
        try:
            make_pdf(tmp_path / "inbox" / "patient.pdf")
            failure = daemon.wait_event("claim_failed", timeout=30)[0]
            assert "Permission denied" in failure["error"]
            assert files_under(tmp_path / "inbox") == ["patient.pdf"]
        finally:
            claimed.chmod(0o755)
        # claims pause for CLAIM_BACKOFF_SECONDS (10 s), then the file converts
        wait_for(lambda: (tmp_path / "outbox" / "patient.json").exists(), timeout=60)
        assert daemon.terminate() == 0
    assert files_under(tmp_path / "archive") == ["patient.pdf"]


@pytest.mark.skipif(
    not can_obey_permissions(), reason="root without CAP_SETPCAP cannot give up its override"
)
def test_a_file_only_its_owner_may_read_fails_saying_so_and_how_to_fix_it(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with Daemon(config, obey_permissions=True, quick=True).start() as daemon:
        private = make_pdf(tmp_path / "private.pdf")
        os.chown(private, 65534, 65534)  # another user's file, as a share user drops it
        private.chmod(0o600)
        os.rename(private, tmp_path / "inbox" / "private.pdf")
        daemon.wait_event("job_failed", timeout=60)
        assert daemon.terminate() == 0
    error = _error(tmp_path / "outbox", "private")
    assert error["code"] == "pdf_unreadable", error
    assert error["details"]["reason"] == "not_readable_by_service", error
    assert error["retryable"] is False
    assert "group-readable" in error["message"] and "state" not in error["message"], error
    assert files_under(tmp_path / "failed") == ["private.pdf"]
