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
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.configs import write_config
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
    with log_path.open("wb") as log:
        started = time.time()
        daemon = subprocess.Popen(
            [str(VENV_BIN / "sir-convert"), "--config", str(config), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        events: dict[str, dict[str, object]] = {}
        deadline = time.monotonic() + 600
        while "job_claimed" not in events and time.monotonic() < deadline:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    events.setdefault(str(event["event"]), event)
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        exit_code = daemon.wait(timeout=120)
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
