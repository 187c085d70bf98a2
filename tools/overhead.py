"""What the daemon costs on top of its engine: the same files through the same engine in one
process, against the daemon's drop-to-last-sidecar time for the batch.

Usage:
    .venv/bin/python tools/overhead.py --config CFG --corpus DIR --output OUT.json [--rounds 3]

In-process: one Engine (the same worker process, models loaded once, not timed), the files
converted one after another; the time from the first request to the last answer.
Daemon: tools/benchmark.py's run (drop all at once, wait for every sidecar); its wall time minus
one stability window (the window is a deliberate wait, not overhead). Each side runs ``rounds``
times and the medians are compared. Overhead = daemon / in-process - 1; the goal is <= 10 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import benchmark
from sir_convert_a_lot.config import load
from sir_convert_a_lot.engine.policy import RunOn
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.engine.supervisor import Engine
from toolkit import write_report


def in_process(config_path: Path, pdfs: list[Path], rounds: int) -> dict[str, Any]:
    config = load(config_path)
    engine = Engine(config, config.governance, instance="overhead-in-process")
    info = engine.start()
    decision = engine.decide(config.defaults)
    assert isinstance(decision, RunOn), f"the config cannot convert here: {decision}"
    times = []
    pages = 0
    try:
        for _round in range(rounds):
            started = time.monotonic()
            pages = 0
            for index, pdf in enumerate(pdfs):
                answer = engine.convert(f"job_{index}", str(pdf), config.defaults, decision)
                if isinstance(answer, Converted):
                    pages += answer.pages
            times.append(time.monotonic() - started)
    finally:
        engine.stop()
    return {
        "seconds": [round(t, 3) for t in times],
        "median_seconds": round(statistics.median(times), 3),
        "pages": pages,
        "model_load_seconds": round(info.load_seconds, 3),
    }


def daemon(config_path: Path, corpus: Path, rounds: int) -> dict[str, Any]:
    times, window = [], 0.0
    for _round in range(rounds):
        args = argparse.Namespace(
            config=config_path, corpus=corpus, repeat=1, timeout=3600, ready_timeout=900
        )
        result = benchmark.run(args)
        window = float(result["runtime_config"]["watch"].get("stability_seconds", 5))
        times.append(result["summary"]["wall_seconds"])
    return {
        "wall_seconds": times,
        "median_wall_seconds": round(statistics.median(times), 3),
        "stability_seconds": window,
        "median_seconds_beyond_window": round(statistics.median(times) - window, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pdfs = benchmark.find_pdfs(args.corpus)
    engine_side = in_process(args.config, pdfs, args.rounds)
    daemon_side = daemon(args.config, args.corpus, args.rounds)
    overhead = daemon_side["median_seconds_beyond_window"] / engine_side["median_seconds"] - 1
    report = {
        "command": " ".join(["tools/overhead.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": len(pdfs),
        "in_process": engine_side,
        "daemon": daemon_side,
        "overhead_percent": round(overhead * 100, 2),
        "goal_percent": 10.0,
        "goal_met": overhead <= 0.10,
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
