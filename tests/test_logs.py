"""Logging to the journal: the native protocol's wire format, the field names, the detection of
a journal-connected stderr, and the real daemon's entries, read from a socket of the test's own,
so that ``journalctl -u sir-convert@0 JOB_ID=...`` tells one job's story."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sir_convert_a_lot.logs import journal_fields
from sir_convert_a_lot.systemd import (
    JOURNAL_SOCKET_ENV,
    encode_journal_entry,
    journal_field_name,
    stderr_is_journal,
)
from tests.daemon import Daemon
from tests.helpers import make_pdf, wait_for, write_config

TIMEOUT = 120


def parse_entry(data: bytes) -> dict[str, bytes]:
    """An independent reader of journald's native protocol: ``KEY=value\\n`` lines, or
    ``KEY\\n`` + 64-bit little-endian length + value + ``\\n`` for values that need it."""
    fields: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        end = data.index(b"\n", position)
        line = data[position:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            position = end + 1
        else:
            key = line
            size = int.from_bytes(data[end + 1 : end + 9], "little")
            value = data[end + 9 : end + 9 + size]
            assert len(value) == size, "truncated binary field"
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary field not closed"
            position = end + 10 + size
        name = key.decode("ascii")
        assert name not in fields, f"field {name} twice"
        fields[name] = value
    return fields


# -- the wire format ---------------------------------------------------------------------------


def test_simple_values_are_key_equals_value_lines() -> None:
    entry = encode_journal_entry({"MESSAGE": "job_succeeded source=a.pdf", "PRIORITY": "6"})
    assert entry == b"MESSAGE=job_succeeded source=a.pdf\nPRIORITY=6\n"


def test_a_value_with_a_newline_uses_the_binary_form() -> None:
    entry = encode_journal_entry({"MESSAGE": "two\nlines"})
    assert entry == b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n"


def test_entries_parse_back_to_the_same_fields() -> None:
    fields = {
        "MESSAGE": "first line\nsecond line\n",
        "PRIORITY": "4",
        "SOURCE": "a=b é.pdf",
        "DETAILS": '{"x": 1}',
        "EMPTY": "",
        "TRAILING": "ends with\n",
    }
    parsed = parse_entry(encode_journal_entry(fields))
    assert {k: v.decode("utf-8") for k, v in parsed.items()} == fields


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("job_id", "JOB_ID"),
        ("source", "SOURCE"),
        ("event", "EVENT"),
        ("_private", "PRIVATE"),
        ("__9lives", "LIVES"),
        ("2fast", "FAST"),
        ("peak-gpu.memory", "PEAK_GPU_MEMORY"),
        ("naïve key", "NA_VE_KEY"),
        ("___", "FIELD"),
    ],
)
def test_journal_field_names(key: str, expected: str) -> None:
    assert journal_field_name(key) == expected


def test_journal_field_names_are_valid_for_journald() -> None:
    for key in ("x" * 100, "_SYSTEMD_UNIT", "a b c", "Ünïcode", "0", ""):
        name = journal_field_name(key)
        assert name and len(name) <= 64
        assert name[0].isascii() and name[0].isupper(), name
        assert all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in name), name


def test_stderr_is_journal_only_when_journal_stream_names_this_fd(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("wb") as stream, (tmp_path / "other").open("wb") as other:
        mine = os.fstat(stream.fileno())
        theirs = os.fstat(other.fileno())
        fd = stream.fileno()
        assert stderr_is_journal({"JOURNAL_STREAM": f"{mine.st_dev}:{mine.st_ino}"}, fd)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{theirs.st_dev}:{theirs.st_ino}"}, fd)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{mine.st_dev}:{theirs.st_ino}"}, fd)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{mine.st_dev + 1}:{mine.st_ino}"}, fd)
        assert not stderr_is_journal({}, fd)
        assert not stderr_is_journal({"JOURNAL_STREAM": ""}, fd)
        assert not stderr_is_journal({"JOURNAL_STREAM": "not:numbers"}, fd)


def test_journal_fields_of_an_event() -> None:
    info = journal_fields(
        {
            "event": "job_succeeded",
            "level": "info",
            "job_id": "job_1",
            "source": "a.pdf",
            "pages": 3,
            "warnings": [],
            "timestamp": "2025-01-01T00:00:00Z",
        }
    )
    assert info["PRIORITY"] == "6"
    assert info["SYSLOG_IDENTIFIER"] == "sir-convert"
    assert (info["EVENT"], info["JOB_ID"], info["SOURCE"]) == ("job_succeeded", "job_1", "a.pdf")
    assert (info["PAGES"], info["WARNINGS"]) == ("3", "[]")
    assert info["MESSAGE"] == "job_succeeded source=a.pdf"
    assert "TIMESTAMP" not in info and "LEVEL" not in info


def test_a_failed_jobs_message_keeps_the_event_source_and_code() -> None:
    """journalctl shows MESSAGE: an event's own ``message`` key must not replace the summary,
    or the line says what went wrong but not with which file."""
    failed = journal_fields(
        {
            "event": "job_failed",
            "level": "warning",
            "job_id": "job_2",
            "source": "b.pdf",
            "code": "pdf_corrupt",
            "message": "The PDF is damaged.",
        }
    )
    assert failed["PRIORITY"] == "4"
    assert failed["CODE"] == "pdf_corrupt"
    assert failed["MESSAGE"].startswith("job_failed source=b.pdf code=pdf_corrupt"), failed
    assert "The PDF is damaged." in failed["MESSAGE"]


# -- the daemon, end to end --------------------------------------------------------------------


class JournalSocket:
    """A stand-in for /run/systemd/journal/socket: collects parsed entries in a thread (the
    daemon's sends block when nobody reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, bytes]] = []
        self.raw: list[bytes] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._socket, 1 << 20, 4)
            except TimeoutError:
                continue
            except OSError:
                return
            for fd in fds:  # an entry too big for a datagram comes as a sealed memfd
                with os.fdopen(fd, "rb") as memfd:
                    memfd.seek(0)
                    data = memfd.read()
            self.raw.append(data)
            self.entries.append(parse_entry(data))

    def events(self, name: str) -> list[dict[str, bytes]]:
        return [e for e in list(self.entries) if e.get("EVENT") == name.encode()]

    def wait(self, name: str, source: bytes | None = None) -> dict[str, bytes]:
        def found() -> dict[str, bytes] | None:
            for entry in self.events(name):
                if source is None or entry.get("SOURCE") == source:
                    return entry
            return None

        entry: dict[str, bytes] = wait_for(found, timeout=TIMEOUT, interval=0.1)
        return entry

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


@contextlib.contextmanager
def journal_socket(path: Path) -> Iterator[JournalSocket]:
    journal = JournalSocket(path)
    try:
        yield journal
    finally:
        journal.close()


def _text(entry: dict[str, bytes], key: str) -> str:
    assert key in entry, f"{key} missing from {entry}"
    return entry[key].decode("utf-8")


@pytest.mark.slow
def test_the_daemon_writes_one_jobs_story_to_the_journal_with_its_own_fields(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, logging={"format": "auto"})
    inbox = tmp_path / "inbox"
    with journal_socket(tmp_path / "journal.sock") as journal:
        daemon = Daemon(config, env={JOURNAL_SOCKET_ENV: str(journal.path)})
        # systemd sets JOURNAL_STREAM to the device and inode of the stream it gave as stderr:
        # here that is the log file Daemon opens (in append mode), so make it first.
        daemon.log_path.touch()
        info = os.stat(daemon.log_path)
        daemon.env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        with daemon.start(wait_ready=False):
            ready = journal.wait("daemon_ready")
            make_pdf(inbox / "good.pdf", pages=2)
            (inbox / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
            make_pdf(inbox / "line\nbreak.pdf")

            succeeded = journal.wait("job_succeeded", b"good.pdf")
            failed = journal.wait("job_failed", b"broken.pdf")
            escaped = b"line\\nbreak.pdf"
            wait_for(
                lambda: [
                    e
                    for e in journal.events("job_succeeded") + journal.events("job_failed")
                    if e.get("SOURCE") == escaped
                ],
                timeout=TIMEOUT,
            )
            assert daemon.terminate() == 0
        journal.wait("daemon_stopped")

    # Nothing went to stderr as well: the journal has each event once.
    assert daemon.events() == []

    for entry in journal.entries:
        assert _text(entry, "SYSLOG_IDENTIFIER") == "sir-convert"
        assert _text(entry, "PRIORITY") in {"2", "3", "4", "6", "7"}
        assert _text(entry, "EVENT")
        assert _text(entry, "MESSAGE")
    # The daemon's own events (library records carry LOGGER instead) name the instance, and
    # their MESSAGE starts with the event, so `journalctl` alone says what happened.
    own = [e for e in journal.entries if "LOGGER" not in e]
    assert len(own) >= 6
    for entry in own:
        assert _text(entry, "INSTANCE") == "test-instance"
        assert _text(entry, "MESSAGE").startswith(_text(entry, "EVENT")), entry
    assert _text(ready, "PRIORITY") == "6"

    # One job's story: every entry carrying its JOB_ID, in order, all about the same source.
    job_id = _text(succeeded, "JOB_ID")
    assert job_id
    story = [e for e in journal.entries if e.get("JOB_ID") == job_id.encode()]
    events = [_text(e, "EVENT") for e in story]
    for name in ("job_claimed", "conversion_started", "job_succeeded"):
        assert name in events, events
    assert events.index("job_claimed") < events.index("conversion_started")
    assert events.index("conversion_started") < events.index("job_succeeded")
    assert all(_text(e, "SOURCE") == "good.pdf" for e in story)
    assert _text(succeeded, "PRIORITY") == "6"
    assert "source=good.pdf" in _text(succeeded, "MESSAGE")
    assert _text(succeeded, "PAGES") == "2"

    # A failed job: a warning with its error code as a field of its own.
    assert _text(failed, "PRIORITY") == "4"
    code = _text(failed, "CODE")
    assert code and code.replace("_", "").isalpha(), code
    assert f"code={code}" in _text(failed, "MESSAGE")
    assert _text(failed, "JOB_ID") not in ("", job_id)

    # A name with a newline cannot forge a line: SOURCE holds its escaped, one-line form.
    newline_entries = [e for e in journal.entries if b"line" in e.get("SOURCE", b"")]
    assert newline_entries
    for entry in newline_entries:
        assert entry["SOURCE"] == escaped
        assert b"\n" not in entry["MESSAGE"]
    assert not any(b"\nSOURCE=line\n" in raw or b"\nSOURCE\n" in raw for raw in journal.raw)
