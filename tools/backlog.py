"""Drop a backlog of PDFs into a running daemon at once and measure how it drains.

Usage: .venv/bin/python tools/backlog.py --files 1000 --output docs/reference/backlog-1000.json

Starts the real daemon (a subprocess, CPU backend unlocked by ADR 0002) on a scratch folder,
waits until it is ready, moves N one-page PDFs into the inbox in one burst (each written
elsewhere first, so every file is complete when it appears), and samples the resident memory of
the daemon and its worker once a second until every sidecar exists. Reports jobs per minute, the
CPU seconds the daemon and its worker spent draining, and RSS at ready, early in the drain, at
the end and at its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.configs import write_config
from harness.daemon import Daemon
from harness.pdfs import pdf_bytes
from toolkit import (
    READY_TIMEOUT,
    tree_cpu_seconds,
    tree_rss_bytes,
    write_report,
)


@dataclass
class Drain:
    """What one drain of the backlog measured: RSS samples, when things happened and the CPU
    seconds the daemon and its worker spent from the drop to the last sidecar."""

    rss_ready: int
    dropped: float
    first_done: float | None = None
    drained: float = 0.0
    cpu_seconds: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--stability-seconds", type=float, default=1.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sca-backlog-"))
    config, staging, names = stage(root, args.files, args.stability_seconds)
    drain = run_drain(config, root, staging, names)
    write_report(args.output, build_report(args, root / "outbox", names, drain))
    return 0


def stage(root: Path, files: int, stability_seconds: float) -> tuple[Path, Path, list[str]]:
    """The daemon's config under ``root`` and ``files`` one-page PDFs written beside its inbox,
    ready to be moved in at once. Returns the config, the staging folder and the names."""
    config = write_config(
        root,
        watch={"stability_seconds": stability_seconds},
        logging={"level": "warning"},
        instances={"lease_seconds": 60},
    )
    staging = root / "staging"
    staging.mkdir()
    content = pdf_bytes()
    names = [f"backlog-{i:05d}.pdf" for i in range(files)]
    for name in names:
        (staging / name).write_bytes(content)
    return config, staging, names


def run_drain(
    config: Path,
    root: Path,
    staging: Path,
    names: list[str],
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Drain:
    """Start the daemon (``command`` and ``env`` as for ``harness.daemon.Daemon``), drop every
    file at once and sample its memory until all are done; the daemon stops however it ends."""
    daemon = Daemon(config, command=command, env=env, log_path=root / "daemon.log")
    daemon.start(timeout=READY_TIMEOUT, by_lease=True)
    try:
        return _drain(daemon, root, staging, names)
    finally:
        daemon.stop()


def _drain(daemon: Daemon, root: Path, staging: Path, names: list[str]) -> Drain:
    done = threading.Event()
    drain = Drain(rss_ready=tree_rss_bytes(daemon.pid), dropped=0.0)

    def sample() -> None:
        while not done.is_set():
            drain.samples.append((time.monotonic(), tree_rss_bytes(daemon.pid)))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_at_drop = tree_cpu_seconds(daemon.pid)
    drain.dropped = time.monotonic()
    sampler.start()
    for name in names:
        os.rename(staging / name, root / "inbox" / name)
    outbox = root / "outbox"
    while True:
        finished = sum(1 for n in os.listdir(outbox) if n.endswith(".json"))
        if finished and drain.first_done is None:
            drain.first_done = time.monotonic()
        if finished >= len(names):
            break
        if (code := daemon.poll()) is not None:
            raise SystemExit(f"daemon exited early: {code}")
        time.sleep(0.2)
    drain.drained = time.monotonic()
    drain.cpu_seconds = tree_cpu_seconds(daemon.pid) - cpu_at_drop
    done.set()
    sampler.join()
    return drain


def build_report(
    args: argparse.Namespace, outbox: Path, names: list[str], drain: Drain
) -> dict[str, Any]:
    samples, dropped, drained = drain.samples, drain.dropped, drain.drained
    # a drain shorter than the 1 s sampling may have no sample after its first result
    every = [rss for _at, rss in samples] or [drain.rss_ready]
    during = [rss for at, rss in samples if at >= (drain.first_done or dropped)] or every
    early = during[: max(1, len(during) // 10)]
    late = during[-max(1, len(during) // 10) :]
    succeeded = 0
    for name in names:
        sidecar = json.loads((outbox / name.replace(".pdf", ".json")).read_text())
        succeeded += sidecar["status"] == "succeeded"
    return {
        "command": " ".join(["tools/backlog.py", *sys.argv[1:]]),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "files": args.files,
        "succeeded": succeeded,
        "stability_seconds": args.stability_seconds,
        "seconds_drop_to_first_result": round((drain.first_done or drained) - dropped, 2),
        "seconds_to_drain": round(drained - dropped, 2),
        "cpu_seconds_during_drain": round(drain.cpu_seconds, 2),
        "jobs_per_minute": round(args.files / ((drained - dropped) / 60), 1),
        "rss_bytes": {
            "at_ready": drain.rss_ready,
            "early_drain_mean": int(sum(early) / len(early)),
            "late_drain_mean": int(sum(late) / len(late)),
            "peak": max(every),
        },
        "rss_growth_early_to_late_percent": round(
            100 * (sum(late) / len(late) - sum(early) / len(early)) / (sum(early) / len(early)), 2
        ),
        "rss_samples": len(samples),
    }


if __name__ == "__main__":
    raise SystemExit(main())
