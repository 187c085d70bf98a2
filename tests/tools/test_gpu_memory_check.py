"""Issue 26's GPU memory check in tools/gpu-check, judged on sidecar rows: a level that comes
back passes, one that climbs fails and says by how much, and a CPU run is not a failure."""

from __future__ import annotations

import sys
from typing import Any

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import gpu_memory_check


def _job(finished_at: str, allocated: int | None, status: str = "succeeded") -> dict[str, Any]:
    device = None if allocated is None else {"memory_allocated_bytes": allocated}
    return {"status": status, "finished_at": finished_at, "device": device}


def _jobs(levels: list[int]) -> list[dict[str, Any]]:
    # Listed out of order: the first is the job that ended first, not the first in the list.
    rows = [_job(f"2026-12-07T10:00:{second:02d}Z", level) for second, level in enumerate(levels)]
    return rows[1:] + rows[:1]


def test_a_level_that_comes_back_after_every_job_passes() -> None:
    found = gpu_memory_check.summary(_jobs([1_000_000, 1_009_000, 995_000, 1_000_000]))
    assert found["measured"] == found["jobs"] == 4
    assert found["allocated_first_bytes"] == 1_000_000
    assert found["largest_departure_percent"] == 0.9
    assert gpu_memory_check.problems(found, on_gpu=True) == []


def test_a_level_that_climbs_fails_and_says_how_many_jobs_and_how_far() -> None:
    climbing = [1_000_000 + 4_000 * job for job in range(6)]  # +0.4 % a job
    found = gpu_memory_check.summary(_jobs(climbing))
    assert found["allocated_first_bytes"] == 1_000_000  # the earliest to end, not the list's first
    assert found["allocated_last_bytes"] == 1_020_000
    [problem] = gpu_memory_check.problems(found, on_gpu=True)
    assert "3 jobs ended more than 1.0 % away" in problem and "2.0 %" in problem


def test_a_sidecar_without_the_reading_or_a_failed_job_fails_on_a_gpu() -> None:
    jobs = [*_jobs([1_000_000, 1_000_000]), _job("2026-12-07T10:01:00Z", None)]
    found = gpu_memory_check.summary(jobs)
    [problem] = gpu_memory_check.problems(found, on_gpu=True)
    assert "only 2 sidecars" in problem
    failed = [*_jobs([1_000_000]), _job("2026-12-07T10:01:00Z", 1_000_000, "failed")]
    assert gpu_memory_check.problems(gpu_memory_check.summary(failed), on_gpu=True)


def test_models_that_left_nothing_on_the_gpu_are_a_failure_there() -> None:
    [problem] = gpu_memory_check.problems(gpu_memory_check.summary(_jobs([0, 0])), on_gpu=True)
    assert "not on the GPU" in problem


def test_on_a_cpu_nothing_is_measured_and_nothing_fails() -> None:
    found = gpu_memory_check.summary([_job("2026-12-07T10:00:00Z", None)] * 3)
    assert found == {"jobs": 3, "measured": 0}
    assert gpu_memory_check.problems(found, on_gpu=False) == []
    assert "not measured (3 jobs, none on a GPU)" in gpu_memory_check.render(found)[0]
