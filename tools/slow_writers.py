"""Slow writers against the real daemon with its default windows, timed.

Usage: .venv/bin/python tools/slow_writers.py --pause 20 --output docs/reference/slow-writers.json

Each scenario starts a fresh daemon (pymupdf backend, CPU unlocked by the tests' decision
record, ``watch.stability_seconds`` at its default of 5) and writes half of a 12-page PDF, pauses
for ``--pause`` seconds (20: longer than the window plus the two extra windows the daemon used to
grant a PDF without ``%%EOF``, the 15 s after which the old daemon converted half documents),
then writes the rest. Writers: a local process, and an SMB client through a real Samba server on
loopback (skipped with the reason when smbd is missing). Patterns: the handle held open during
the pause or closed and reopened, each plain or preallocated to the full size first (as Windows
Explorer does). Two more scenarios: a writer that never finishes (``incomplete_wait_seconds`` set
to ``--abandon-limit``), and a file rewritten in place during its conversion (a writer on
another host, which no lease sees). For each: the outcome, whether the output is the complete
document, and seconds from the writer's last byte to the terminal output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from harness import samba
from harness.configs import write_config
from harness.daemon import Daemon
from toolkit import REPO, write_report

PAGES = 12
Opener = Callable[[str, str], BinaryIO]


def document(pages: int = PAGES) -> bytes:
    """Pages of about 2,000 characters each; page N starts with "Chapter N"."""
    import pymupdf

    pdf = pymupdf.open()
    words = [
        "share",
        "scanner",
        "upload",
        "report",
        "margin",
        "invoice",
        "ledger",
        "summary",
        "folder",
        "network",
        "client",
        "server",
        "window",
        "paper",
        "column",
        "figure",
        "table",
        "chapter",
        "section",
        "record",
        "archive",
    ]
    for number in range(1, pages + 1):
        page = pdf.new_page()
        pick = random.Random(number).choice
        # Lines that differ in their words: lines equal but for their numbers on every page
        # are what normalisation removes as page furniture.
        lines = [" ".join(pick(words) for _ in range(11)) + "." for _ in range(28)]
        text = f"Chapter {number}\n\n" + "\n".join(lines)
        page.insert_textbox(pymupdf.Rect(50, 50, 560, 800), text, fontsize=9)
    data: bytes = pdf.tobytes()
    pdf.close()
    return data


def terminal(outbox: Path, stem: str) -> Path | None:
    for name in (f"{stem}.json", f"{stem}.error.json"):
        if (outbox / name).exists():
            return outbox / name
    return None


def wait_terminal(outbox: Path, stem: str, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = terminal(outbox, stem)
        if found is not None:
            return found
        time.sleep(0.05)
    raise SystemExit(f"no output for {stem} within {timeout} s")


def describe(
    root: Path, stem: str, output: Path, data: bytes, daemon: Daemon, last_byte: float
) -> dict[str, Any]:
    """What a user reads, and when the daemon claimed the file (``last_byte``: wall clock)."""
    result = json.loads(output.read_text())
    mine = [e for e in daemon.events() if e.get("source") == f"{stem}.pdf"]
    events = [e["event"] for e in mine]
    claims = [
        datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        for e in mine
        if e["event"] == "job_claimed"
    ]
    entry: dict[str, Any] = {
        "status": result["status"],
        "claims": len(claims),
        "seconds_from_last_byte_to_last_claim": round(claims[-1] - last_byte, 2)
        if claims
        else None,
        "waited_for": sorted({e for e in events if e.startswith("waiting_for")}),
    }
    if result["status"] == "failed":
        entry["error"] = {k: result["error"][k] for k in ("code", "details", "retryable")}
        return entry
    markdown = (root / "outbox" / f"{stem}.md").read_text()
    entry.update(
        pages=result["source"]["pages"],
        sha256_is_the_complete_file=result["source"]["sha256"] == hashlib.sha256(data).hexdigest(),
        markdown_chars=len(markdown),
        last_chapter_present=f"Chapter {PAGES}" in markdown,
    )
    return entry


def local_opener(inbox: Path) -> Opener:
    def open_local(name: str, mode: str) -> BinaryIO:
        handle: BinaryIO = (inbox / name).open(mode)  # type: ignore[assignment]
        return handle

    return open_local


def paused_writer(
    root: Path, opener_kind: str, keep_open: bool, preallocate: bool, pause: float
) -> dict[str, Any]:
    config = write_config(root, watch={"stability_seconds": 5, "incomplete_wait_seconds": 600})
    data = document()
    half = len(data) // 2
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        daemon = stack.enter_context(Daemon(config, cwd=REPO).start())
        opener: Opener
        if opener_kind == "samba":
            share = stack.enter_context(samba.samba_share(root / "samba", inbox))
            opener = share.open
        else:
            opener = local_opener(inbox)
        handle = opener("report.pdf", "wb")
        if preallocate:
            handle.truncate(len(data))
        handle.write(data[:half])
        handle.flush()
        if not keep_open:
            handle.close()
        time.sleep(pause)
        early = terminal(root / "outbox", "report")
        if not keep_open:
            handle = opener("report.pdf", "r+b")
        handle.seek(half)
        handle.write(data[half:])
        handle.close()
        last_byte = time.time()
        output = early or wait_terminal(root / "outbox", "report", 120)
        seconds = time.time() - last_byte
        daemon.terminate()
    entry = describe(root, "report", output, data, daemon, last_byte)
    entry["converted_during_the_pause"] = early is not None
    entry["seconds_from_last_byte_to_output"] = None if early else round(seconds, 2)
    return entry


def abandoned_writer(root: Path, limit: float) -> dict[str, Any]:
    config = write_config(root, watch={"stability_seconds": 5, "incomplete_wait_seconds": limit})
    data = document()
    with Daemon(config, cwd=REPO).start() as daemon:
        (root / "inbox" / "abandoned.pdf").write_bytes(data[: len(data) // 2])
        last_byte = time.time()
        output = wait_terminal(root / "outbox", "abandoned", limit + 120)
        seconds = time.time() - last_byte
        daemon.terminate()
    entry = describe(root, "abandoned", output, data, daemon, last_byte)
    entry["incomplete_wait_seconds"] = limit
    entry["seconds_from_last_byte_to_output"] = round(seconds, 2)
    return entry


def rewritten_during_conversion(root: Path) -> dict[str, Any]:
    config = write_config(root, watch={"stability_seconds": 5})
    final = document()
    replacement = root / "final.pdf"
    replacement.write_bytes(final)
    harness = ("tests.change_harness", "draft.pdf", str(replacement))
    draft = document(pages=4)  # an early, complete version, saved again while it converts
    with Daemon(config, harness=harness, cwd=REPO).start() as daemon:
        (root / "inbox" / "draft.pdf").write_bytes(draft)
        started = time.time()
        output = wait_terminal(root / "outbox", "draft", 120)
        seconds = time.time() - started
        daemon.terminate()
    entry = describe(root, "draft", output, final, daemon, started)
    returned = [e for e in daemon.events() if e.get("event") == "job_returned_to_inbox"]
    entry["returned_reason"] = returned[0]["reason"] if returned else None
    entry["seconds_from_drop_to_output"] = round(seconds, 2)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pause", type=float, default=20.0)
    parser.add_argument("--abandon-limit", type=float, default=60.0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    scenarios: dict[str, Any] = {}
    why_no_samba = samba.missing()
    for writer in ("local", "samba"):
        for preallocate in (False, True):
            for keep_open in (True, False):
                name = (
                    f"{writer}-{'preallocated' if preallocate else 'plain'}-"
                    f"{'held-open' if keep_open else 'closed-between'}"
                )
                if writer == "samba" and why_no_samba:
                    scenarios[name] = {"skipped": why_no_samba}
                    continue
                with tempfile.TemporaryDirectory(prefix="slow-writer-") as scratch:
                    scenarios[name] = paused_writer(
                        Path(scratch), writer, keep_open, preallocate, args.pause
                    )
                print(name, scenarios[name], file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="slow-writer-") as scratch:
        scenarios["local-abandoned"] = abandoned_writer(Path(scratch), args.abandon_limit)
    with tempfile.TemporaryDirectory(prefix="slow-writer-") as scratch:
        scenarios["rewritten-during-conversion"] = rewritten_during_conversion(Path(scratch))
    report = {
        "command": " ".join(["tools/slow_writers.py", *sys.argv[1:]]),
        "pause_seconds": args.pause,
        "stability_seconds": 5,
        "scenarios": scenarios,
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
