"""What gpu-check counts as a pass: the checks over its report, each problem one line."""

from __future__ import annotations

import json
from typing import Any

import gpu_memory_check
import gpu_tables

SCAN_STEM = "scanned"  # the scanned page gpu-check writes, read by OCR


def verdict(report: dict[str, Any], allow_cpu: bool) -> list[str]:
    want = "cpu" if allow_cpu else "cuda"
    problems = []
    if not allow_cpu and not report["probe"]["cuda_available"]:
        problems.append(f"no usable GPU: {report['probe']['reason']}")
    for run in report["runs"]:
        label = f"batch {run['batch_size']} ({run.get('engine', 'local')})"
        if run.get("engines") != [run.get("engine", "local")]:
            problems.append(f"{label}: sidecars say engine {run.get('engines')}")
        if run.get("jobs_succeeded") != run.get("jobs_total"):
            problems.append(
                f"{label}: {run.get('jobs_total', 0) - run.get('jobs_succeeded', 0)} jobs failed"
            )
        if run.get("acceleration_used") != [want]:
            problems.append(
                f"{label}: acceleration_used {run.get('acceleration_used')}, want {want}"
            )
        if len(run.get("conversion_threads") or []) != 1:
            problems.append(f"{label}: model calls on threads {run.get('conversion_threads')}")
        if len(run.get("worker_pids") or []) != 1:
            problems.append(f"{label}: more than one worker process {run.get('worker_pids')}")
        lock = run.get("device_lock")
        if lock is not None and not lock.get("second_instance_waited"):
            problems.append(f"{label}: a second instance did not wait for the device lock")
    problems += scan_problems(report, want) + determinism_problems(report)
    problems += gpu_memory_check.problems(report["memory"], on_gpu=not allow_cpu)
    return problems + gpu_tables.problems(report["tables"])


def all_jobs(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [job for run in report["runs"] for job in run.get("alone", []) + run.get("jobs", [])]


def scan_problems(report: dict[str, Any], want: str) -> list[str]:
    """The scanned PDF's every model stage, OCR included, ran on the device."""
    scans = [j for j in all_jobs(report) if j["pdf"] == SCAN_STEM]
    report["scan_stage_devices"] = sorted({json.dumps(j.get("stage_devices")) for j in scans})
    wrong = [
        j["source"]
        for j in scans
        if j["status"] != "succeeded"
        or "ocr" not in j["stage_devices"]
        or set(j["stage_devices"].values()) != {want}
    ]
    return [f"scanned PDF: stages not all on {want} (or no OCR) in {wrong}"] if wrong else []


def determinism_problems(report: dict[str, Any]) -> list[str]:
    """Each PDF's Markdown the same alone, among its copies, at every batch size and engine; its
    lossless JSON the same alone and among its copies at each batch size (contract section 6:
    outputs never depend on the neighbours; another batch size is other options, and its
    coordinates may differ in their last digits)."""
    markdown: dict[str, set[str]] = {}
    lossless: dict[str, set[str]] = {}
    for run in report["runs"]:
        for job in run.get("alone", []) + run.get("jobs", []):
            if job["status"] != "succeeded":
                continue
            markdown.setdefault(job["pdf"], set()).add(job["markdown_sha256"])
            if job.get("json_sha256"):
                key = f"{job['pdf']} at batch {run['batch_size']}"
                lossless.setdefault(key, set()).add(job["json_sha256"])
    report["markdown_variants"] = {pdf: len(found) for pdf, found in sorted(markdown.items())}
    report["json_variants"] = {key: len(found) for key, found in sorted(lossless.items())}
    return [f"{pdf}: {n} different Markdowns" for pdf, n in markdown.items() if len(n) > 1] + [
        f"{key}: {n} different lossless JSONs" for key, n in lossless.items() if len(n) > 1
    ]
