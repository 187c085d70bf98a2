"""A steady drip of files into the real daemon for a while, watching for leaks.

Usage: .venv/bin/python tools/soak.py --minutes 10 --interval 1.0 --output OUT.json

Drops one small PDF every ``interval`` seconds (written elsewhere, then renamed in) for
``minutes``, waits for the last one, and samples once every 5 s: resident memory and open file
descriptors of the daemon and of its worker, and threads of the daemon. Reports the first and
last minute's means and the growth between them, files lost (dropped but with no terminal
output) and duplicated (more than one terminal output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness.configs import write_config
from harness.daemon import Daemon
from harness.pdfs import pdf_bytes
from toolkit import READY_TIMEOUT


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _rss(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sca-soak-"))
    config = write_config(
        root,
        watch={"stability_seconds": 1.0},
        logging={"level": "warning"},
        instances={"lease_seconds": 60},
    )
    staging = root / "staging"
    staging.mkdir()
    daemon = Daemon(config, log_path=root / "daemon.log")
    daemon.start(timeout=READY_TIMEOUT, by_lease=True)
    samples: list[dict[str, float]] = []
    done = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            samples.append(_sample(daemon.pid, started))
            done.wait(5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    names = _drip(root, staging, started, args)
    _wait_for_last(root / "outbox", names)
    time.sleep(2)
    done.set()
    sampler.join()
    exit_code = daemon.terminate(timeout=120)
    report = _report(args, root, names, samples, exit_code)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return 0 if not report["files_lost"] and not report["files_duplicated"] else 1


def _sample(pid: int, started: float) -> dict[str, float]:
    """The daemon's and its worker's memory, descriptors and threads, now."""
    workers = [c for c in _children(pid) if _rss(c) > 50 << 20]
    worker = workers[0] if workers else 0
    return {
        "t": round(time.monotonic() - started, 1),
        "daemon_rss": _rss(pid),
        "worker_rss": _rss(worker) if worker else 0,
        "daemon_fds": _fds(pid),
        "worker_fds": _fds(worker) if worker else 0,
        "daemon_threads": _threads(pid),
    }


def _drip(root: Path, staging: Path, started: float, args: argparse.Namespace) -> list[str]:
    """One file into the inbox every interval until the soak's minutes are up."""
    content = pdf_bytes(pages=2)
    names: list[str] = []
    while time.monotonic() - started < args.minutes * 60:
        name = f"drip-{len(names):05d}.pdf"
        (staging / name).write_bytes(content)
        os.rename(staging / name, root / "inbox" / name)
        names.append(name)
        time.sleep(args.interval)
    return names


def _wait_for_last(outbox: Path, names: list[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if all((outbox / n.replace(".pdf", ".json")).exists() for n in names[-5:]):
            break
        time.sleep(0.5)


def _report(
    args: argparse.Namespace,
    root: Path,
    names: list[str],
    samples: list[dict[str, float]],
    exit_code: int,
) -> dict[str, Any]:
    outputs = os.listdir(root / "outbox")
    lost = [n for n in names if n.replace(".pdf", ".json") not in outputs]
    duplicated = [n for n in outputs if " (" in n]

    def mean(rows: list[dict[str, float]], key: str) -> float:
        return round(sum(r[key] for r in rows) / len(rows), 1) if rows else 0.0

    first = [s for s in samples if s["t"] <= 60]
    last = [s for s in samples if s["t"] >= samples[-1]["t"] - 60]
    keys = ("daemon_rss", "worker_rss", "daemon_fds", "worker_fds", "daemon_threads")
    return {
        "command": " ".join(["tools/soak.py", *sys.argv[1:]]),
        "minutes": args.minutes,
        "files_dropped": len(names),
        "files_lost": len(lost),
        "files_duplicated": len(duplicated),
        "archived": len(os.listdir(root / "archive")),
        "first_minute_mean": {k: mean(first, k) for k in keys},
        "last_minute_mean": {k: mean(last, k) for k in keys},
        "growth_percent": {
            k: round(100 * (mean(last, k) - mean(first, k)) / mean(first, k), 2)
            if mean(first, k)
            else None
            for k in keys
        },
        "daemon_exit_code": exit_code,
        "samples": samples,
    }


if __name__ == "__main__":
    raise SystemExit(main())
