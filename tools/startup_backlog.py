"""Start-up with a backlog: how long until the daemon is ready and claims its first file when
N files already wait in the inbox.

Usage: .venv/bin/python tools/startup_backlog.py --files 10000 --output OUT.json

Writes N one-page PDFs into the inbox of a scratch root (CPU backend, ADR 0002), starts the real
daemon, and reads from its log when the start-up scan finished (``daemon_ready``, with the count
it found) and when the first file was claimed (``job_claimed``). It then stops the daemon; the
drain itself is tools/backlog.py's subject.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.configs import write_config
from harness.daemon import Daemon
from harness.pdfs import pdf_bytes
from toolkit import REPO, write_report

VENV_BIN = REPO / ".venv" / "bin"


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sca-startup-"))
    config = write_config(root, watch={"stability_seconds": 1.0}, instances={"lease_seconds": 60})
    inbox = root / "inbox"
    inbox.mkdir()
    content = pdf_bytes()
    for index in range(args.files):
        (inbox / f"waiting-{index:05d}.pdf").write_bytes(content)
    log_path = root / "daemon.log"
    daemon = Daemon(config, log_path=log_path, bin_dir=VENV_BIN, cwd=REPO)
    with daemon:
        started = time.time()
        daemon.start(wait_ready=False)
        events: dict[str, dict[str, object]] = {}
        deadline = time.monotonic() + 600
        while "job_claimed" not in events and time.monotonic() < deadline:
            for event in daemon.events():
                events.setdefault(str(event["event"]), event)
            time.sleep(0.05)
        exit_code = daemon.terminate(timeout=120)
    worker = events["worker_ready"]
    report = {
        "command": " ".join(["tools/startup_backlog.py", *sys.argv[1:]]),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "files_waiting": args.files,
        "found_by_start_up_scan": events["daemon_ready"].get("waiting_in_inbox"),
        "stability_seconds": 1.0,
        "seconds_start_to_worker_ready": round(_at(worker) - started, 3),
        "seconds_start_to_ready": round(_at(events["daemon_ready"]) - started, 3),
        "seconds_start_to_first_claim": round(_at(events["job_claimed"]) - started, 3),
        "seconds_ready_to_first_claim": round(
            _at(events["job_claimed"]) - _at(events["daemon_ready"]), 3
        ),
        "daemon_exit_code": exit_code,
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
