"""Memory of the daemon under docling over a long steady flow, with recycling off and on (issue 26).

Usage:
    .venv/bin/python tools/memory_soak.py --minutes 30 --arms off,on \
        --output docs/reference/memory-soak.json --plot docs/reference/memory-soak.png

Each arm is a fresh daemon on the docling backend with the tiny stand-in models (built into a
temporary folder unless ``--models`` names them), the governed CPU fallback where there is no GPU:
``off`` with ``engine.recycle_after_jobs = 0`` and ``recycle_above_bytes = 0``, ``on`` at the
documented defaults (or ``--recycle-after-jobs N``; ``--recycle-overlap`` loads its replacement
worker beside the old one, ``engine.recycle_overlap = true``). The arms run one after the other in
``--arms`` order, or with ``--together`` both at once (CPU only: two daemons would queue for one
GPU's lock), so that a shared machine's load weighs on both alike. Each keeps ``--backlog``
documents waiting or converting for ``--minutes``: generated PDFs, three in ten of two to five
pages, every page with a heading, a paragraph and a ruled table of random figures, every document
different. Every ``--sample-seconds`` (15) it samples the resident memory of the daemon, of its
worker (the largest process under it) and of all its processes together, with the documents
converted so far. After the flow: files lost (dropped, no sidecar or error envelope) or doubled,
attempts over one, recycles from the journal (with their mean load and warm-up, time to the
replacement's ready and overlap of the two workers), and on a GPU torch's allocated and reserved
memory after each job (the sidecars' ``execution.device``). The report (``memory_report``) fits the
slope of the total against documents after ``--warmup-minutes``, compares the peak after
``--baseline-minutes`` with the peak before, compares throughput (documents a minute after warm-up,
the drain left out), and judges issue 26's acceptance; the plot is the total against documents for
each arm.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import gpu_memory_check
import memory_report
from harness.configs import write_config
from harness.daemon import Daemon
from toolkit import READY_TIMEOUT, exit_on_sigterm

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
INSTANCE = "test-instance"


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def document(rng: random.Random, number: int) -> bytes:
    """One generated PDF: one page (seven in ten) or two to five, each with a table."""
    import pymupdf

    pages = 1 if rng.random() < 0.7 else rng.randint(2, 5)
    pdf = pymupdf.open()
    for page_number in range(pages):
        page = pdf.new_page(width=595, height=842)
        page.insert_text((72, 80), f"Report {number}, page {page_number + 1}", fontsize=16)
        words = " ".join(rng.choice(("growth", "memory", "worker", "daemon", "table", "page"))
                         for _ in range(14))  # fmt: skip
        page.insert_text((72, 115), words.capitalize() + ".", fontsize=11)
        rows, cols = rng.randint(3, 8), rng.randint(3, 5)
        width = 450 / cols
        for row in range(rows):
            for col in range(cols):
                x0, y0 = 72 + col * width, 150 + row * 22
                page.draw_rect(pymupdf.Rect(x0, y0, x0 + width, y0 + 22), color=(0, 0, 0))
                text = f"c{col}" if row == 0 else f"{rng.uniform(0, 1000):.1f}"
                page.insert_text((x0 + 4, y0 + 15), text, fontsize=9)
    data: bytes = pdf.tobytes()
    pdf.close()
    return data


class Flow:
    """Keeps ``backlog`` documents dropped and not yet finished; counts what finished."""

    def __init__(self, root: Path, backlog: int, seed: int) -> None:
        self.inbox, self.outbox = root / "inbox", root / "outbox"
        self.staging = root / "staging"
        self.staging.mkdir(exist_ok=True)
        self.backlog = backlog
        self.rng = random.Random(seed)
        self.dropped: list[str] = []
        self.pending: set[str] = set()
        self.finished = 0

    def top_up(self) -> None:
        for stem in list(self.pending):
            if (self.outbox / f"{stem}.json").exists() or (
                self.outbox / f"{stem}.error.json"
            ).exists():
                self.pending.discard(stem)
                self.finished += 1
        while len(self.pending) < self.backlog:
            stem = f"soak-{len(self.dropped):06d}"
            (self.staging / f"{stem}.pdf").write_bytes(document(self.rng, len(self.dropped)))
            os.rename(self.staging / f"{stem}.pdf", self.inbox / f"{stem}.pdf")
            self.dropped.append(stem)
            self.pending.add(stem)

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.backlog = 0
        while self.pending and time.monotonic() < deadline:
            self.top_up()
            time.sleep(0.5)


def processes() -> dict[int, tuple[int, int]]:
    """Every process: pid -> (parent pid, resident bytes), from /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry)] = (int(fields[1]), int(fields[21]) * page)
    return found


def sample(pid: int, t: float, documents: int) -> dict[str, Any]:
    """The daemon, its largest descendant (the worker) and all of them, now."""
    table = processes()
    below: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        children = [child for child, (parent, _) in table.items() if parent == current]
        below += children
        stack += children
    worker = max(below, key=lambda p: table[p][1], default=0)
    return {
        "t": round(t, 1),
        "wall": round(time.time(), 1),
        "documents": documents,
        "daemon_rss": table.get(pid, (0, 0))[1],
        "worker_rss": table[worker][1] if worker else 0,
        "worker_pid": worker,
        "tree_rss": table.get(pid, (0, 0))[1] + sum(table[p][1] for p in below),
        "processes": 1 + len(below),
    }


def arm_engine(name: str, after_jobs: int | None, overlap: bool) -> dict[str, Any]:
    """The ``[engine]`` keys an arm sets: ``off`` never recycles; ``on`` keeps the defaults
    but for what the command line names."""
    if name == "off":
        return {"recycle_after_jobs": 0, "recycle_above_bytes": 0}
    engine: dict[str, Any] = {"recycle_overlap": True} if overlap else {}
    if after_jobs is not None:
        engine["recycle_after_jobs"] = after_jobs
    return engine


def run_arm(name: str, args: argparse.Namespace, models: Path) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"sca-memsoak-{name}-"))
    engine = arm_engine(name, args.recycle_after_jobs, args.recycle_overlap)
    config = write_config(
        root,
        conversion={"backend_strategy": "docling", "acceleration_policy": "gpu_prefer"},
        governance={"allow_cpu_only": False, "allow_cpu_fallback": True},
        gpu={"models_path": str(models), "layout_batch_size": 4, "table_batch_size": 4},
        engine=engine,
        instances={"name": INSTANCE, "lease_seconds": 60},
        logging={"level": "info", "format": "json"},
    )
    flow = Flow(root, args.backlog, seed=args.seed)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    env = {**os.environ, **OFFLINE}
    daemon = Daemon(config, env=env, log_path=root / "daemon.log")
    daemon.start(timeout=READY_TIMEOUT, by_lease=True)
    started = time.monotonic()

    def sampler() -> None:
        while True:
            samples.append(sample(daemon.pid, time.monotonic() - started, flow.finished))
            if stop.wait(args.sample_seconds):
                return

    thread = threading.Thread(target=sampler, name="sampler", daemon=True)
    try:
        thread.start()
        at_warmup = None
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            flow.top_up()
            if at_warmup is None and elapsed >= args.warmup_minutes * 60:
                at_warmup = (elapsed, flow.finished)
            time.sleep(0.2)
        flow.top_up()
        at_end = (time.monotonic() - started, flow.finished)
        stop.set()
        thread.join()
        flow.drain(timeout=600)
    finally:
        stop.set()
        daemon.stop()
    return analyse(name, root, flow, samples, at_warmup or (0.0, 0), at_end, args, engine)


def analyse(
    name: str,
    root: Path,
    flow: Flow,
    samples: list[dict[str, Any]],
    at_warmup: tuple[float, int],
    at_end: tuple[float, int],
    args: argparse.Namespace,
    engine: dict[str, Any],
) -> dict[str, Any]:
    outbox = set(os.listdir(root / "outbox"))
    stems = set(flow.dropped)
    lost = [
        s for s in flow.dropped if f"{s}.json" not in outbox and f"{s}.error.json" not in outbox
    ]
    terminal = [n for n in outbox if n.endswith(".json")]
    doubled = [n for n in terminal if n.split(".")[0] not in stems] + [
        s for s in flow.dropped if f"{s}.json" in outbox and f"{s}.error.json" in outbox
    ]
    sidecars = [json.loads((root / "outbox" / f"{s}.json").read_text())
                for s in flow.dropped if f"{s}.json" in outbox]  # fmt: skip
    events = _events(root / "daemon.log")
    recycled = [e for e in events if e.get("event") == "worker_recycled"]
    later = [s for s in samples if s["t"] >= args.warmup_minutes * 60]
    minutes = max(1e-9, (at_end[0] - at_warmup[0]) / 60)
    return {
        "arm": name,
        "engine": engine or "documented defaults",
        "folder": str(root),
        "dropped": len(flow.dropped),
        "finished": flow.finished,
        "lost": len(lost),
        "duplicated": len(doubled),
        "failed": sum(n.endswith(".error.json") for n in outbox),
        "attempts_over_one": sum(s["execution"]["attempt"] > 1 for s in sidecars),
        "pages": sum(s["source"]["pages"] for s in sidecars),
        "per_minute": round((at_end[1] - at_warmup[1]) / minutes, 2),
        "recycles": len(recycled),
        "recycle_seconds_mean": _mean([e["load_seconds"] + e["warm_seconds"] for e in recycled]),
        "ready_seconds_mean": _mean([e.get("ready_seconds", 0.0) for e in recycled]),
        "overlap_seconds_mean": _mean([e.get("overlap_seconds", 0.0) for e in recycled]),
        "fit_tree": memory_report.fit(
            [s["documents"] for s in later], [s["tree_rss"] for s in later]
        ),
        "fit_worker": memory_report.fit(
            [s["documents"] for s in later], [s["worker_rss"] for s in later]
        ),
        "peaks_tree": memory_report.peaks(samples, "tree_rss", args.baseline_minutes * 60),
        "peaks_tree_outside_overlaps": memory_report.peaks(
            memory_report.outside(samples, _overlaps(recycled)),
            "tree_rss",
            args.baseline_minutes * 60,
        ),
        "peaks_worker": memory_report.peaks(samples, "worker_rss", args.baseline_minutes * 60),
        "gpu": _gpu(sidecars),
        "samples": samples,
    }


def _overlaps(recycled: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """When each recycle's two workers were both up: ``overlap_seconds`` up to its journal line,
    which is written once the old worker is gone (a few seconds' slack each side)."""
    windows = []
    for event in recycled:
        end = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        windows.append((end - event.get("overlap_seconds", 0.0) - 5.0, end + 5.0))
    return windows


def _events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def _gpu(sidecars: list[dict[str, Any]]) -> dict[str, Any] | None:
    """torch's allocated and reserved memory after each job, in the order the jobs ended, judged
    as gpu-check judges it (``gpu_memory_check``)."""
    jobs = [
        {
            "status": "succeeded",
            "finished_at": s["execution"]["finished_at"],
            "device": s["execution"].get("device"),
        }
        for s in sidecars
    ]
    found = gpu_memory_check.summary(jobs)
    if not found["measured"]:
        return None
    devices = gpu_memory_check.readings(jobs)
    return {
        **found,
        "allocated": [device["memory_allocated_bytes"] for device in devices],
        "reserved": [device.get("memory_reserved_bytes") for device in devices],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="of flow, per arm")
    parser.add_argument("--arms", default="off,on", help="off, on or both, in the order run")
    parser.add_argument("--recycle-after-jobs", type=int, default=None)
    parser.add_argument(
        "--recycle-overlap", action="store_true", help="on: the replacement loads beside the old"
    )
    parser.add_argument("--backlog", type=int, default=8)
    parser.add_argument("--sample-seconds", type=float, default=15)
    parser.add_argument("--warmup-minutes", type=float, default=1)
    parser.add_argument("--baseline-minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--together", action="store_true", help="run the arms at once (CPU)")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    exit_on_sigterm()
    models = args.models or _stand_ins()
    names = args.arms.split(",")
    if args.together:
        with ThreadPoolExecutor(len(names)) as pool:
            ran = pool.map(lambda name: run_arm(name, args, models), names)
            arms = dict(zip(names, ran, strict=True))
    else:
        arms = {name: run_arm(name, args, models) for name in names}
    report = {
        "command": " ".join(["tools/memory_soak.py", *sys.argv[1:]]),
        "together": args.together,
        "recycle_overlap": args.recycle_overlap,
        "cpus": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "arms": arms,
        "acceptance": memory_report.acceptance(arms),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.plot is not None:
        memory_report.plot(args.plot, arms)
    brief = {k: v for k, v in report.items() if k != "arms"}
    brief["arms"] = {
        name: {k: v for k, v in arm.items() if k not in ("samples", "gpu")}
        for name, arm in arms.items()
    }
    print(json.dumps(brief, indent=2, sort_keys=True))
    return 0 if all(a["lost"] == 0 and a["duplicated"] == 0 for a in arms.values()) else 1


def _stand_ins() -> Path:
    from harness.stand_in_models import build_stand_in_models

    return build_stand_in_models(Path(tempfile.mkdtemp(prefix="sca-models-")), ocr=False)


if __name__ == "__main__":
    raise SystemExit(main())
