"""Does the worker's GPU memory come back after each job? Issue 26's check, for tools/gpu-check.

gpu-check drops N copies of a one-page PDF into a daemon that holds one page in flight, so
each job is alone in the worker when it ends, and reads from every sidecar what torch's caching
allocator still had allocated once that job ended (``execution.device.memory_allocated_bytes``).
Whatever a job leaves allocated on the GPU (a cache that keeps tensors, a result still
referenced) shows as a level that climbs with the jobs. The check passes when every job's level
is within ``TOLERANCE_PERCENT`` of the first job's. On a CPU there is nothing to read, and the
report says so; it is no failure there.
"""

from __future__ import annotations

from typing import Any

TOLERANCE_PERCENT = 1.0  # issue 26: within 1 % of the level after the first job


def readings(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The device readings of the succeeded jobs that have one, in the order the jobs ended."""
    measured = [
        job
        for job in jobs
        if job["status"] == "succeeded"
        and isinstance(job.get("device"), dict)
        and job["device"].get("memory_allocated_bytes") is not None
    ]
    return [job["device"] for job in sorted(measured, key=lambda job: job["finished_at"])]


def summary(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The allocated bytes after each job, in the order the jobs ended, against the first."""
    devices = readings(jobs)
    found: dict[str, Any] = {"jobs": len(jobs), "measured": len(devices)}
    if not devices:
        return found
    allocated = [device["memory_allocated_bytes"] for device in devices]
    reserved = [device.get("memory_reserved_bytes") or 0 for device in devices]
    first = allocated[0]
    worst = max(abs(level - first) for level in allocated)
    found.update(
        allocated_first_bytes=first,
        allocated_last_bytes=allocated[-1],
        allocated_min_bytes=min(allocated),
        allocated_max_bytes=max(allocated),
        largest_departure_percent=round(100 * worst / first, 4) if first else None,
        over_tolerance=sum(
            1
            for level in allocated
            if first and 100 * abs(level - first) / first > TOLERANCE_PERCENT
        ),
        reserved_first_bytes=reserved[0],
        reserved_max_bytes=max(reserved),
    )
    return found


def problems(found: dict[str, Any], on_gpu: bool) -> list[str]:
    """On a GPU: every job measured, and none more than the tolerance away from the first."""
    if not on_gpu:
        return []
    label = f"GPU memory over {found['jobs']} jobs"
    if found["jobs"] == 0:
        return []
    if found["measured"] != found["jobs"]:
        return [f"{label}: only {found['measured']} sidecars say what torch held after the job"]
    if not found["allocated_first_bytes"]:
        return [f"{label}: nothing allocated after the first job; the models are not on the GPU"]
    if found["over_tolerance"]:
        return [
            f"{label}: {found['over_tolerance']} jobs ended more than {TOLERANCE_PERCENT} % away "
            f"from the first ({found['largest_departure_percent']} % at most)"
        ]
    return []


def render(found: dict[str, Any]) -> list[str]:
    if not found["measured"]:
        return [f"GPU memory after each job: not measured ({found['jobs']} jobs, none on a GPU)"]
    return [
        f"GPU memory after each of {found['measured']} jobs (torch allocated, one job in flight): "
        f"first {found['allocated_first_bytes']} B, last {found['allocated_last_bytes']} B, "
        f"range {found['allocated_min_bytes']} to {found['allocated_max_bytes']} B, "
        f"largest departure from the first {found['largest_departure_percent']} % "
        f"(tolerance {TOLERANCE_PERCENT} %, {found['over_tolerance']} jobs over)"
    ]
