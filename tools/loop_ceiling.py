"""The daemon's own ceiling: how many jobs a second its watch, claim, job, publish and dispose
loop carries when converting costs nothing.

Usage: .venv/bin/python tools/loop_ceiling.py --files 1500 --threads 1,4,16 --rounds 3 \\
           --output docs/reference/loop-ceiling.json

For each value of ``--threads`` the tool starts a daemon of its own as a subprocess
(``loop_ceiling.py serve``): the real ``Service`` (watcher, intake, dispatch, spool, the job
threads, ``JobRunner``, publish, disposal, heartbeat, logging) with one thing swapped, through
``Service(engine_factory=...)``: a ``NoOpEngine`` that answers every ``convert`` at once with a
fixed one-page Markdown, as if the worker had converted it in no time. No worker process starts,
nothing is converted, and no config key can ask for this engine. ``gpu.max_pages_in_flight`` is
set to the thread count: with one-page files it is how many jobs are claimed and in the engine
at once, each on a job thread of its own (``service.runners``).

Once the daemon is ready, N one-page PDFs are moved into its inbox in one burst (written
elsewhere first, as ``tools/backlog.py`` does) and the tool waits until every sidecar is out.
Reported per run: jobs per second from the drop to the last sidecar (the stability window
included, and without it) and from the first sidecar to the last (the steady rate), and the
daemon's CPU seconds over the drain, per job, from /proc. With ``--rounds R`` every thread
count runs R times, the counts taking turns, and each count's median round is its figure: on a
shared machine, whatever else runs spreads over all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.configs import write_config
from harness.daemon import Daemon
from harness.pdfs import pdf_bytes
from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, Governance, load
from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.interface import ProgressSink, WorkerInfo, WorkerMemory
from sir_convert_a_lot.engine.policy import Decision, RunOn, decide
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.versions import component_versions
from toolkit import READY_TIMEOUT, tree_cpu_seconds, write_report

INSTANCE = "test-instance"  # the name harness.configs gives
MARKDOWN = "# Page 1\n\nNothing was converted: the loop-ceiling engine answers at once.\n"
NO_GPU = GpuProbe(
    cuda_available=False,
    device=None,
    reason="the loop-ceiling engine probes nothing",
    nvml="not probed",
    torch_cuda="not probed",
)


class NoOpEngine:
    """A ``ConversionEngine`` that converts nothing: every document is one page, reported at
    once (as the worker's first ``Progress`` does, which the claim pacing waits for) and answered
    at once with ``MARKDOWN``, on the CPU. Where a job may run is still the real GPU-first lock
    (``engine.policy.decide``) over a probe that saw no GPU."""

    kind = "noop"

    def __init__(self, governance: Governance, on_progress: ProgressSink) -> None:
        self.governance = governance
        self.on_progress = on_progress
        self.info: WorkerInfo | None = None
        self.starts = 0

    @property
    def probe(self) -> GpuProbe | None:
        return NO_GPU

    @property
    def alive(self) -> bool:
        return self.info is not None

    def silent_seconds(self) -> float:
        return 0.0

    def memory(self) -> WorkerMemory:
        return WorkerMemory()

    def max_pages_in_flight(self, per_worker: int) -> int:
        return per_worker  # one worker, as the local engine

    def start(self) -> WorkerInfo:
        self.starts += 1
        self.info = WorkerInfo(
            pid=os.getpid(),
            thread_id=threading.get_ident(),
            probe=NO_GPU,
            versions=component_versions(),
            loaded=(("noop", "cpu"),),
            load_seconds=0.0,
            warm_seconds=0.0,
        )
        return self.info

    def decide(self, options: ConversionOptions, source_name: str = "") -> Decision:
        return decide(options, NO_GPU, self.governance, source_name=source_name)

    def convert(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
        *,
        alone: bool = False,
    ) -> Converted:
        self.on_progress(job_id, 0, 1)
        self.on_progress(job_id, 1, 1)
        return Converted(
            job_id=job_id,
            markdown=MARKDOWN,
            pages=1,
            backend_used="noop",
            acceleration_used="cpu",
            ocr_enabled=False,
            warnings=(),
            timings_ms={"convert_ms": 0.0},
            thread_id=threading.get_ident(),
        )

    def abort(self) -> None:
        pass

    def stop(self) -> None:
        self.info = None


def serve(config: Config) -> int:
    """The daemon as ``sir-convert run`` starts it, with the ``NoOpEngine`` in place of the
    supervised worker."""
    from sir_convert_a_lot.service.daemon import Service

    def engine(on_progress: ProgressSink) -> NoOpEngine:
        return NoOpEngine(config.governance, on_progress)

    return Service(config, engine_factory=engine).run()


@dataclass
class Drain:
    """One run: when the burst was dropped and when every sidecar was out (wall clock, as the
    sidecars' mtimes), and the daemon's CPU seconds over that time."""

    dropped: float
    drained: float
    first_sidecar: float
    last_sidecar: float
    cpu_seconds: float


def run_once(root: Path, files: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start a no-op daemon that converts ``threads`` jobs at once, drop ``files`` files and
    wait for every sidecar; what it measured, and what ended where."""
    config = write_config(
        root,
        watch={"stability_seconds": args.stability_seconds},
        logging={"level": args.log_level},
        gpu={"max_pages_in_flight": threads},
        instances={"lease_seconds": 60},
    )
    staging = root / "staging"
    staging.mkdir()
    content = pdf_bytes()
    names = [f"ceiling-{i:05d}.pdf" for i in range(files)]
    for name in names:
        (staging / name).write_bytes(content)
    command = [sys.executable, str(Path(__file__).resolve()), "serve", "--config", str(config)]
    daemon = Daemon(config, command=command, log_path=root / "daemon.log")
    daemon.start(timeout=READY_TIMEOUT, by_lease=True)
    try:
        drain = drop_and_drain(daemon.pid, root, staging, names, daemon.poll)
    finally:
        daemon.stop()
    return summarise(root, names, threads, drain, args.stability_seconds)


def drop_and_drain(
    pid: int, root: Path, staging: Path, names: list[str], poll: Callable[[], int | None]
) -> Drain:
    """Move every file into the inbox at once and wait until each has its sidecar."""
    outbox = root / "outbox"
    cpu_before = tree_cpu_seconds(pid)
    dropped = time.time()
    for name in names:
        os.rename(staging / name, root / "inbox" / name)
    while sum(1 for n in os.listdir(outbox) if n.endswith(".json")) < len(names):
        if poll() is not None:
            raise SystemExit(f"the daemon exited early: see {root / 'daemon.log'}")
        time.sleep(0.2)
    cpu = tree_cpu_seconds(pid) - cpu_before
    stamps = [p.stat().st_mtime for p in outbox.iterdir() if p.name.endswith(".json")]
    return Drain(dropped, time.time(), min(stamps), max(stamps), cpu)


def summarise(
    root: Path, names: list[str], threads: int, drain: Drain, window: float
) -> dict[str, Any]:
    """The run's figures, and the check that every file ended once: a succeeded sidecar each,
    every original archived, nothing left in the inbox or the spool."""
    outbox, files = root / "outbox", len(names)
    sidecars = [json.loads((outbox / n.replace(".pdf", ".json")).read_text()) for n in names]
    statuses = [sidecar["status"] for sidecar in sidecars]
    timings = [sidecar.get("execution", {}).get("timings_ms", {}) for sidecar in sidecars]
    wall = drain.last_sidecar - drain.dropped
    steady = drain.last_sidecar - drain.first_sidecar
    return {
        "max_pages_in_flight": threads,
        "job_threads": min(threads, 32),
        "succeeded": statuses.count("succeeded"),
        "archived": len(os.listdir(root / "archive")),
        "left_in_inbox": len(os.listdir(root / "inbox")),
        "left_in_state": sum(len(f) for _, _, f in os.walk(root / "state" / "claimed")),
        "numbered_duplicates": sum(" (2)" in n for n in os.listdir(outbox)),
        "seconds_drop_to_first_sidecar": round(drain.first_sidecar - drain.dropped, 3),
        "seconds_drop_to_last_sidecar": round(wall, 3),
        "jobs_per_second": round(files / wall, 1),
        "jobs_per_second_beyond_window": round(files / max(wall - window, 1e-9), 1),
        "steady_jobs_per_second": round((files - 1) / steady, 1) if steady > 0 else None,
        "daemon_cpu_seconds": round(drain.cpu_seconds, 2),
        "daemon_cpu_ms_per_job": round(1000 * drain.cpu_seconds / files, 3),
        "daemon_cpu_cores_busy": round(drain.cpu_seconds / wall, 2),
        # per job, from its claim: waiting for a job thread; publishing; claim to sidecar
        "sidecar_timings_ms_median": {
            key: statistics.median(t[key] for t in timings if key in t)
            for key in ("queue_wait_ms", "publish_ms", "total_ms")
        },
    }


def measure(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Every thread count once per round, the rounds one after another, so that whatever else
    the machine does spreads over all of them; each count's median round is its figure."""
    runs = []
    for round_number in range(1, args.rounds + 1):
        for threads in args.threads:
            root = Path(tempfile.mkdtemp(prefix=f"sca-ceiling-{threads}-", dir=args.scratch))
            load_before = os.getloadavg()[0]
            run = run_once(root, args.files, threads, args)
            runs.append({"round": round_number, "load_average_1min_before": load_before, **run})
    medians = {
        str(threads): statistics.median(
            float(run["jobs_per_second"]) for run in runs if run["max_pages_in_flight"] == threads
        )
        for threads in args.threads
    }
    best = max(medians, key=lambda threads: medians[threads])
    return {
        "command": " ".join([".venv/bin/python tools/loop_ceiling.py", *argv]),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "engine": "NoOpEngine: every convert answered at once, 1 page, acceleration cpu",
        "files": args.files,
        "rounds": args.rounds,
        "stability_seconds": args.stability_seconds,
        "log_level": args.log_level,
        "runs": runs,
        "median_jobs_per_second_by_max_pages_in_flight": medians,
        "ceiling_jobs_per_second": medians[best],
        "ceiling_at_max_pages_in_flight": int(best),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    serving = sub.add_parser("serve", help="run the no-op daemon (the tool starts it itself)")
    serving.add_argument("--config", type=Path, required=True)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument(
        "--threads",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 4, 16],
        help="comma-separated gpu.max_pages_in_flight values, one run each (default 1,4,16)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each thread count")
    parser.add_argument("--stability-seconds", type=float, default=1.0)
    parser.add_argument("--log-level", default="info", help="the daemon's (default: info)")
    parser.add_argument("--scratch", type=Path, help="where the runs' folders go (default: /tmp)")
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.mode == "serve":
        config = load(args.config)
        logs.configure(config.logging.level, config.logging.format)
        return serve(config)
    if args.output is None:
        raise SystemExit("--output is required")
    write_report(args.output, measure(args, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
