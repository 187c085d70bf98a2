"""Deferred jobs wait ``DEFER_SECONDS`` and then run again, once; other outcomes are not kept."""

from __future__ import annotations

from sir_convert_a_lot.jobs.deferral import DEFER_SECONDS, Deferrals, defer
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.options import ConversionOptions


def _job(job_id: str) -> Job:
    return Job(job_id, f"{job_id}.pdf", None, ConversionOptions(), 0.0, 1, 1, "here")


def test_a_deferred_job_runs_again_once_its_wait_is_over_and_only_once() -> None:
    now = [100.0]
    deferrals = Deferrals(lambda: now[0])
    outcome = defer(_job("a"), "job_deferred", PermissionError("outbox"), "tried later")
    assert outcome.status is Status.DEFERRED and outcome.job is not None
    deferrals.add(outcome)
    assert [entry.why for entry in deferrals.waiting] == [outcome.code]
    now[0] += DEFER_SECONDS - 1
    assert deferrals.due() == []
    now[0] += 1
    assert [job.job_id for job in deferrals.due()] == ["a"]
    assert deferrals.due() == [] and deferrals.waiting == ()


def test_outcomes_that_are_not_deferrals_are_not_kept() -> None:
    deferrals = Deferrals(lambda: 0.0)
    deferrals.add(Outcome("a", Status.FAILED, "pdf_unreadable"))
    deferrals.add(Outcome("b", Status.DEFERRED))  # no job to run again
    assert deferrals.waiting == ()
