"""Benchmark the real daemon on a folder of PDFs: latency, throughput, memory, CPU, GPU.

Usage:
    .venv/bin/python tools/benchmark.py --config CFG --corpus DIR --output OUT.json [--repeat N]

Every setting of CFG is used as it is, except the five folders, which move to a scratch root so
that a benchmark never touches a real inbox. The daemon runs as a process (`sir-convert run`),
exactly as systemd starts it. Each round moves all PDFs of DIR (recursively) into the inbox in
one burst (each file written elsewhere first, so every file is complete when it appears), then
waits for each file's terminal output. Latency is drop to sidecar; percentiles interpolate
linearly; RSS covers the daemon and its worker process, sampled every 0.2 s; CPU seconds are the
daemon's and its worker's, from the kernel's accounting of reaped children.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import tomli_w

from harness.daemon import Daemon
from sir_convert_a_lot.config import PATH_KEYS
from toolkit import REPO, exit_on_sigterm, tree_rss_bytes

POLL_SECONDS = 0.05


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return dict.fromkeys(("min", "mean", "p50", "p95", "p99", "max"))
    return {
        "min": round(min(latencies), 4),
        "mean": round(sum(latencies) / len(latencies), 4),
        "p50": round(percentile(latencies, 0.50), 4),
        "p95": round(percentile(latencies, 0.95), 4),
        "p99": round(percentile(latencies, 0.99), 4),
        "max": round(max(latencies), 4),
    }


class Sampler:
    """RSS of the daemon's process tree and, where NVML works, GPU memory and utilisation."""

    def __init__(self, pid: int, gpu_index: int | None) -> None:
        self.pid = pid
        self.rss: list[tuple[float, int]] = []
        self.gpu_utilisation: list[int] = []
        self.gpu_memory: list[int] = []
        self._stop = threading.Event()
        self._nvml: Any = None
        if gpu_index is not None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(gpu_index))
            except Exception:
                self._nvml = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rss.append((time.monotonic(), tree_rss_bytes(self.pid)))
            if self._nvml is not None:
                pynvml, handle = self._nvml
                try:
                    self.gpu_utilisation.append(
                        int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                    )
                    self.gpu_memory.append(int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
                except Exception:
                    self._nvml = None
            self._stop.wait(0.2)


def benchmark_config(source: Path, root: Path) -> tuple[Path, dict[str, Any]]:
    document = tomllib.loads(source.read_text(encoding="utf-8"))
    document.setdefault("paths", {}).update({key: str(root / key) for key in PATH_KEYS})
    document.setdefault("logging", {}).update(format="json", level="info")  # we read its events
    document.setdefault("instances", {}).setdefault("name", "benchmark")
    models = document.get("gpu", {}).get("models_path")
    if models and not Path(models).is_absolute():
        document["gpu"]["models_path"] = str((source.parent / models).resolve())
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path, document


def find_pdfs(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")


def terminal_output(outbox: Path, relative: Path) -> Path | None:
    folder = outbox / relative.parent
    stem = relative.stem
    for name in (f"{stem}.json", f"{stem}.error.json"):
        if (folder / name).exists():
            return folder / name
    return None


def wait_ready(log_path: Path, process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    worker: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"the daemon exited ({process.returncode}):\n{log_path.read_text()[-3000:]}"
            )
        for line in log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "worker_ready":
                worker = event
            if event.get("event") == "daemon_ready":
                return worker
        time.sleep(0.1)
    raise SystemExit("the daemon did not become ready in time")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One daemon, started on a scratch folder, fed the corpus and stopped; the folder goes with
    it, and so does the daemon when the run fails or is interrupted (Ctrl-C, SIGTERM)."""
    root = Path(tempfile.mkdtemp(prefix="sca-bench-"))
    daemon: Daemon | None = None
    exit_on_sigterm()
    try:
        config_path, document = benchmark_config(args.config, root)
        pdfs = find_pdfs(args.corpus)
        if not pdfs:
            raise SystemExit(f"no PDFs under {args.corpus}")
        log_path = root / "daemon.log"
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        daemon = Daemon(config_path, env=_daemon_environment(), log_path=log_path, cwd=REPO)
        process = daemon.start(wait_ready=False).process
        assert process is not None
        worker = wait_ready(log_path, process, timeout=args.ready_timeout)
        ready_seconds = time.monotonic() - started
        sampler = Sampler(process.pid, document.get("gpu", {}).get("device_index", 0))
        sampler.start()
        jobs, wall_seconds = run_rounds(args, root, pdfs, process, log_path)
        sampler.stop()
        exit_code = daemon.terminate(timeout=120)
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if getattr(args, "keep_outbox", None):
            shutil.copytree(root / "outbox", args.keep_outbox, dirs_exist_ok=True)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
    timing = (ready_seconds, jobs, sampler, wall_seconds, usage_before, usage_after, exit_code)
    return report(args, document, worker, *timing)


def _daemon_environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }


def run_rounds(
    args: argparse.Namespace,
    root: Path,
    pdfs: list[Path],
    process: subprocess.Popen[bytes],
    log_path: Path,
) -> tuple[list[dict[str, Any]], float]:
    """Every round: drop the corpus in one burst, collect each file's terminal output. Returns
    the jobs and the wall seconds from the first drop to the last drain."""
    jobs: list[dict[str, Any]] = []
    drained_at = time.monotonic()
    first_drop = None
    for round_number in range(1, args.repeat + 1):
        prefix = Path(f"round-{round_number}") if args.repeat > 1 else Path()
        dropped = drop_round(root, pdfs, args.corpus, prefix)
        first_drop = first_drop or dropped
        pending = {prefix / pdf.relative_to(args.corpus): dropped for pdf in pdfs}
        jobs += collect_round(root, pending, dropped + args.timeout, process, log_path)
        drained_at = time.monotonic()
    return jobs, drained_at - (first_drop or drained_at)


def drop_round(root: Path, pdfs: list[Path], corpus: Path, prefix: Path) -> float:
    """Write every file elsewhere first, then rename the top-level entries into the inbox, so
    every file is complete when it appears. Returns when they were dropped."""
    staging = root / "staging"
    for pdf in pdfs:
        target = staging / prefix / pdf.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf, target)
    dropped = time.monotonic()
    for top in sorted(staging.iterdir()):
        os.rename(top, root / "inbox" / top.name)  # one rename per top-level entry
    return dropped


def collect_round(
    root: Path,
    pending: dict[Path, float],
    deadline: float,
    process: subprocess.Popen[bytes],
    log_path: Path,
) -> list[dict[str, Any]]:
    """A job record for each pending file once its output appears; ``timeout`` for the rest."""
    jobs: list[dict[str, Any]] = []
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for relative in list(pending):
            output = terminal_output(root / "outbox", relative)
            if output is not None:
                jobs.append(job_record(relative, output, now - pending.pop(relative)))
        if process.poll() is not None:
            raise SystemExit(f"the daemon died: {log_path.read_text()[-3000:]}")
        time.sleep(POLL_SECONDS)
    for relative in pending:
        jobs.append(
            {
                "source_file": str(relative),
                "status": "timeout",
                "pages": None,
                "error_code": None,
                "latency_seconds": None,
                "backend_used": None,
                "acceleration_used": None,
            }
        )
    return jobs


def job_record(relative: Path, output: Path, latency: float) -> dict[str, Any]:
    document = json.loads(output.read_text(encoding="utf-8"))
    failed = document["status"] == "failed"
    metadata = {} if failed else document["result"]["conversion_metadata"]
    return {
        "source_file": str(relative),
        "status": document["status"],
        "pages": document["source"].get("pages"),
        "error_code": document["error"]["code"] if failed else None,
        "latency_seconds": round(latency, 4),
        "backend_used": metadata.get("backend_used"),
        "engine": document["execution"].get("engine"),
        "acceleration_used": metadata.get("acceleration_used"),
        "convert_ms": document["execution"]["timings_ms"].get("convert_ms"),
        "gpu_memory_peak_bytes": (document["execution"].get("device") or {}).get(
            "memory_peak_bytes"
        ),
        "batching": document["execution"].get("batching") or {},
    }


def batching(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model stage over all jobs: model calls, pages, mean and largest batch. A call that
    carried several documents' pages is in each of their sidecars; their shares of it add up
    to one call."""
    totals: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for stage, seen in (job.get("batching") or {}).items():
            total = totals.setdefault(stage, {"calls": 0.0, "pages": 0, "max_batch": 0})
            total["calls"] += seen.get("share_of_calls", seen["calls"])
            total["pages"] += seen["pages"]
            total["max_batch"] = max(total["max_batch"], seen["max_batch"])
    for total in totals.values():
        total["calls"] = round(total["calls"])
        total["mean_batch"] = round(total["pages"] / total["calls"], 2) if total["calls"] else None
    return dict(sorted(totals.items()))


def report(
    args: argparse.Namespace,
    document: dict[str, Any],
    worker: dict[str, Any],
    ready_seconds: float,
    jobs: list[dict[str, Any]],
    sampler: Sampler,
    wall_seconds: float,
    before: resource.struct_rusage,
    after: resource.struct_rusage,
    exit_code: int,
) -> dict[str, Any]:
    succeeded = [j for j in jobs if j["status"] == "succeeded"]
    gpu_name = None
    gpu = worker.get("gpu") or {}
    if gpu.get("cuda_available"):
        gpu_name = (gpu.get("device") or {}).get("name")
    return {
        "benchmark_id": f"bench_{uuid.uuid4().hex[:12]}",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["tools/benchmark.py", *sys.argv[1:]]),
        "host": {
            "hostname": socket.gethostname(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "gpu": gpu,
        },
        "runtime_config": {
            "config": str(args.config),
            "corpus": str(args.corpus),
            "repeat": args.repeat,
            "watch": document.get("watch", {}),
            "conversion": document.get("conversion", {}),
            "gpu": document.get("gpu", {}),
            "governance": document.get("governance", {}),
            "daemon_ready_seconds": round(ready_seconds, 3),
            "model_load_seconds": worker.get("load_seconds"),
            "warm_seconds": worker.get("warm_seconds"),
            "daemon_exit_code": exit_code,
        },
        "summary": summary(jobs, succeeded, wall_seconds),
        "batching": batching(succeeded),
        "resource_profile": resource_profile(sampler, succeeded, before, after, gpu_name),
        "jobs": jobs,
    }


def summary(
    jobs: list[dict[str, Any]], succeeded: list[dict[str, Any]], wall_seconds: float
) -> dict[str, Any]:
    latencies = [j["latency_seconds"] for j in jobs if j["latency_seconds"] is not None]
    pages = sum(j["pages"] or 0 for j in succeeded)
    return {
        "total_jobs": len(jobs),
        "succeeded_jobs": len(succeeded),
        "failed_jobs": len(jobs) - len(succeeded),
        "success_rate": round(len(succeeded) / len(jobs), 4) if jobs else 0.0,
        "throughput_jobs_per_minute": round(len(jobs) / (wall_seconds / 60), 2)
        if wall_seconds
        else None,
        "throughput_pages_per_second": round(pages / wall_seconds, 3) if wall_seconds else None,
        "pages": pages,
        "wall_seconds": round(wall_seconds, 3),
        "latency_seconds": latency_summary(latencies),
    }


def resource_profile(
    sampler: Sampler,
    succeeded: list[dict[str, Any]],
    before: resource.struct_rusage,
    after: resource.struct_rusage,
    gpu_name: str | None,
) -> dict[str, Any]:
    gpu_peaks = [j["gpu_memory_peak_bytes"] for j in succeeded if j.get("gpu_memory_peak_bytes")]
    return {
        "peak_rss_bytes": max((rss for _at, rss in sampler.rss), default=0),
        "rss_first_bytes": sampler.rss[0][1] if sampler.rss else 0,
        "rss_last_bytes": sampler.rss[-1][1] if sampler.rss else 0,
        "cpu_seconds": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3
        ),
        "gpu": None
        if gpu_name is None
        else {
            "name": gpu_name,
            "memory_peak_bytes": max(gpu_peaks, default=None),
            "device_memory_used_peak_bytes": max(sampler.gpu_memory, default=None),
            "utilization_mean_percent": round(
                sum(sampler.gpu_utilisation) / len(sampler.gpu_utilisation), 1
            )
            if sampler.gpu_utilisation
            else None,
        },
        # NVML's utilisation is the share of each sample period in which a kernel ran.
        "gpu_busy_fraction": round(
            sum(sampler.gpu_utilisation) / len(sampler.gpu_utilisation) / 100, 3
        )
        if sampler.gpu_utilisation
        else None,
        "acceleration_observed": sorted({j["acceleration_used"] for j in succeeded}),
        "backend_observed": sorted({j["backend_used"] for j in succeeded}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per round")
    parser.add_argument("--ready-timeout", type=float, default=900)
    parser.add_argument("--keep-outbox", type=Path, help="copy the outputs here (for quality.py)")
    args = parser.parse_args()
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus}: no such folder")
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    summary = result["summary"]
    print(
        json.dumps({"summary": summary, "resource_profile": result["resource_profile"]}, indent=2)
    )
    timed_out = [j for j in result["jobs"] if j["status"] == "timeout"]
    clean_stop = result["runtime_config"]["daemon_exit_code"] == 0
    return 0 if summary["total_jobs"] and not timed_out and clean_stop else 1


if __name__ == "__main__":
    raise SystemExit(main())
