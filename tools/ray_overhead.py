"""What the Ray engine costs against the local engine: the same backlog, the same backend, one
worker each (a local worker process, or one actor of a private one-machine Ray).

Usage:
    .venv/bin/python tools/ray_overhead.py --corpus fixtures/benchmark_pdfs --rounds 3 \
        --repeat 2 --output docs/reference/ray-overhead.json

Each round runs ``tools/benchmark.py``'s daemon run (drop the corpus ``repeat`` times, wait for
every sidecar) once per engine, taking turns, so that both meet the same load on a shared
machine. Reported: each side's median drop-to-last-sidecar seconds and their ratio (target: Ray
at most 1.15x the local engine), and the resident memory of the daemon's whole process tree
when ready and at its peak (what a private Ray adds: target at most 1 GiB).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import benchmark
from toolkit import REPO, write_report

CONFIGS = {
    "local": REPO / "tools" / "bench-configs" / "pymupdf-cpu.toml",
    "ray": REPO / "tools" / "bench-configs" / "pymupdf-cpu-ray.toml",
}
MIB = 1024 * 1024


def one_run(engine: str, corpus: Path, repeat: int) -> dict[str, Any]:
    args = argparse.Namespace(
        config=CONFIGS[engine], corpus=corpus, repeat=repeat, timeout=3600, ready_timeout=900
    )
    result = benchmark.run(args)
    jobs = result["summary"]
    if jobs["failed_jobs"]:
        raise SystemExit(f"{engine}: {jobs['failed_jobs']} files did not succeed")
    engines = {job.get("engine") for job in result["jobs"]} - {None}
    profile = result["resource_profile"]
    return {
        "wall_seconds": jobs["wall_seconds"],
        "jobs": jobs["total_jobs"],
        "rss_ready_bytes": profile["rss_first_bytes"],
        "rss_peak_bytes": profile["peak_rss_bytes"],
        "engines_in_sidecars": sorted(engines),
    }


def side(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [run["wall_seconds"] for run in runs]
    return {
        "runs": runs,
        "median_wall_seconds": round(statistics.median(walls), 3),
        "median_rss_ready_mib": round(statistics.median(r["rss_ready_bytes"] for r in runs) / MIB),
        "max_rss_peak_mib": round(max(r["rss_peak_bytes"] for r in runs) / MIB),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="drops of the corpus per run")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    for _round in range(args.rounds):
        for engine in runs:
            runs[engine].append(one_run(engine, args.corpus, args.repeat))
    local, ray = side(runs["local"]), side(runs["ray"])
    report = {
        "command": " ".join(["tools/ray_overhead.py", *sys.argv[1:]]),
        "configs": {name: str(path.relative_to(REPO)) for name, path in CONFIGS.items()},
        "local": local,
        "ray": ray,
        "ray_over_local_wall": round(ray["median_wall_seconds"] / local["median_wall_seconds"], 3),
        "ray_adds_at_ready_mib": ray["median_rss_ready_mib"] - local["median_rss_ready_mib"],
        "ray_adds_at_peak_mib": ray["max_rss_peak_mib"] - local["max_rss_peak_mib"],
        "targets": {"ray_over_local_wall": 1.15, "ray_adds_mib": 1024},
    }
    write_report(args.output, report)
    print(
        f"local {local['median_wall_seconds']} s, ray {ray['median_wall_seconds']} s "
        f"({report['ray_over_local_wall']}x); Ray adds {report['ray_adds_at_ready_mib']} MiB "
        f"at ready, {report['ray_adds_at_peak_mib']} MiB at peak"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
