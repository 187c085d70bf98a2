"""Where a docling worker's memory goes: the worker's own code (``engine.worker.serve``) run in
this process over an in-memory channel, so that tracemalloc and gc can look inside it.

Usage:
    .venv/bin/python tools/memory_trace.py --documents 600 --snapshot-at 200 \
        --output docs/reference/memory-trace.json [--trim] [--arena-max 2] [--no-tracemalloc]

The worker is the real one: the handshake, a thread per document, the one model thread, the
docling backend on the tiny stand-in models (``--models``, else built into a temporary folder),
``--concurrency`` documents in it at once, the PDFs of tools/memory_soak.py. After the document
``--snapshot-at`` and after the last it collects garbage, then records the resident size
(``VmRSS``), what tracemalloc traces (the Python heap), the count of live objects by type, and a
tracemalloc snapshot; the report has the difference between the two: the lines that allocated
most of what stayed, the types that grew, and how much of the RSS growth the Python heap
explains (the rest is native: malloc arenas, torch, MuPDF). ``--trim`` calls glibc's
``malloc_trim(0)`` after every document; ``--no-worker-trim`` turns off the worker's own (at
most every ``worker.TRIM_EVERY_SECONDS``), to see the worker as it was before it trimmed;
``--arena-max N`` runs under ``MALLOC_ARENA_MAX=N``.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import logging
import math
import os
import queue
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from memory_soak import OFFLINE, document
from sir_convert_a_lot import logs
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.protocol import (
    Converted,
    ConvertRequest,
    Failed,
    Load,
    Probed,
    Ready,
    Shutdown,
    WorkerSettings,
)
from sir_convert_a_lot.engine.transports.local import resident_bytes
from sir_convert_a_lot.options import ConversionOptions
from toolkit import write_report

OPTIONS = ConversionOptions(
    backend_strategy="docling", ocr_mode="off", acceleration_policy="gpu_prefer"
)
TOP = 25


class Channel:
    """The worker's end of two queues (``worker.Channel``); EOF once ``close``d."""

    def __init__(self) -> None:
        self.to_worker: queue.Queue[object] = queue.Queue()
        self.from_worker: queue.Queue[object] = queue.Queue()

    def send(self, obj: object) -> None:
        self.from_worker.put(obj)

    def recv(self) -> object:
        return self.to_worker.get()


def look(tracing: bool) -> dict[str, Any]:
    """After a full collection: RSS, the Python heap tracemalloc sees, live objects by type."""
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    return {
        "rss": resident_bytes(os.getpid()) or 0,
        "traced": tracemalloc.get_traced_memory()[0] if tracing else None,
        "types": types,
        "snapshot": tracemalloc.take_snapshot() if tracing else None,
    }


def run(args: argparse.Namespace, models: Path) -> dict[str, Any]:
    settings = WorkerSettings(
        device_index=0,
        models_path=str(models),
        max_file_bytes=50 << 20,
        max_pages=2000,
        batch_sizes={"layout": 4, "table": 4, "ocr": 4},
        log_level="warning",
    )
    if not args.worker_trim:
        worker.TRIM_EVERY_SECONDS = math.inf  # the worker as it was before it trimmed
    channel = Channel()
    threading.Thread(target=worker.serve, args=(channel, settings), daemon=True).start()
    probed = channel.from_worker.get()
    assert isinstance(probed, Probed)
    device = "cuda" if probed.probe.get("cuda_available") else "cpu"
    channel.to_worker.put(Load(plan=(("docling", device),), option_sets=(OPTIONS,)))
    ready = channel.from_worker.get()
    assert isinstance(ready, Ready), ready
    folder = Path(tempfile.mkdtemp(prefix="sca-trace-"))
    rng = random.Random(args.seed)
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.trim else None
    rss: list[tuple[int, int]] = []
    looks: dict[str, dict[str, Any]] = {}
    sent = answered = failed = 0
    trim_seconds = 0.0
    started = time.monotonic()
    while answered < args.documents:
        while sent < args.documents and sent - answered < args.concurrency:
            path = folder / f"doc-{sent:06d}.pdf"
            path.write_bytes(document(rng, sent))
            channel.to_worker.put(
                ConvertRequest(f"job_{sent}", str(path), path.name, OPTIONS, device)
            )
            sent += 1
        answer = channel.from_worker.get()
        if not isinstance(answer, Converted | Failed):
            continue
        answered += 1
        failed += isinstance(answer, Failed)
        (folder / f"doc-{answer.job_id.removeprefix('job_'):0>6}.pdf").unlink(missing_ok=True)
        if trim is not None:
            trimming = time.monotonic()
            trim(0)
            trim_seconds += time.monotonic() - trimming
        if answered % 10 == 0:
            rss.append((answered, resident_bytes(os.getpid()) or 0))
        if answered == args.snapshot_at:
            looks["early"] = look(args.tracemalloc)
    looks["late"] = look(args.tracemalloc)
    channel.to_worker.put(Shutdown())
    return {
        "device": device,
        "documents": answered,
        "failed": failed,
        "seconds": round(time.monotonic() - started, 1),
        "malloc_trim_seconds": round(trim_seconds, 3),
        "rss_every_10": rss,
        **compare(looks["early"], looks["late"], args),
    }


def compare(
    early: dict[str, Any], late: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """What stayed between the two looks: RSS, the Python heap, types, allocating lines."""
    jobs = args.documents - args.snapshot_at
    per_1000 = 1000 / max(1, jobs) / 1e6
    grown = (late["types"] - early["types"]).most_common(TOP)
    result: dict[str, Any] = {
        "between_jobs": [args.snapshot_at, args.documents],
        "rss_mb": [round(early["rss"] / 1e6, 1), round(late["rss"] / 1e6, 1)],
        "rss_growth_mb_per_1000": round((late["rss"] - early["rss"]) * per_1000, 2),
        "object_types_grown": [[name, count] for name, count in grown],
        "objects": [sum(early["types"].values()), sum(late["types"].values())],
    }
    if early["snapshot"] is not None:
        result["python_heap_mb"] = [round(early["traced"] / 1e6, 2), round(late["traced"] / 1e6, 2)]
        result["python_heap_growth_mb_per_1000"] = round(
            (late["traced"] - early["traced"]) * per_1000, 2
        )
        stats = late["snapshot"].compare_to(early["snapshot"], "lineno")
        result["lines_grown"] = [
            [str(s.traceback), s.size_diff, s.count_diff] for s in stats[:TOP] if s.size_diff > 0
        ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--snapshot-at", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each document")
    parser.add_argument(
        "--no-worker-trim",
        dest="worker_trim",
        action="store_false",
        help="without the worker's own malloc_trim every worker.TRIM_EVERY_SECONDS",
    )
    parser.add_argument("--arena-max", type=int, default=0, help="run under MALLOC_ARENA_MAX")
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc's traceback depth")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    if args.arena_max and os.environ.get("MALLOC_ARENA_MAX") != str(args.arena_max):
        env = {**os.environ, "MALLOC_ARENA_MAX": str(args.arena_max)}
        # glibc reads it once, at start: run again under it (argv is our own command line)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)  # noqa: S606
    os.environ.update(OFFLINE)
    logs.configure("warning", "json", sys.stderr, library_level=logging.ERROR)  # as the worker
    if args.tracemalloc:
        tracemalloc.start(args.frames)
    if args.models is None:
        from harness.stand_in_models import build_stand_in_models

        args.models = build_stand_in_models(Path(tempfile.mkdtemp(prefix="sca-models-")), ocr=False)
    report = {
        "command": " ".join(["tools/memory_trace.py", *sys.argv[1:]]),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "malloc_trim_after_each": args.trim,
        "worker_trim_every_seconds": worker.TRIM_EVERY_SECONDS if args.worker_trim else None,
        "tracemalloc": args.tracemalloc,
        **run(args, args.models),
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
