"""The retry rules: a neighbour's fault never costs a job an attempt nor brings it to
``worker_crashed``; after a shared failure it is tried alone, where a failure is its own; its own
crashes are tried again until ``retry.max_attempts``; its own limits fail it at once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from sir_convert_a_lot.engine.interface import WorkerCrashed, WorkerOverMemory, WorkerTimedOut
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.jobs.custody import Custody
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.retries import RetryRules, TryAgain
from sir_convert_a_lot.options import ConversionOptions

MAX_ATTEMPTS = 3


class _Records:
    """The one custody call the rules make: write the job's record anew."""

    def __init__(self) -> None:
        self.written: list[Job] = []

    def update(self, job: Job, **changes: Any) -> Job:
        self.written.append(replace(job, **changes))
        return self.written[-1]


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_: Any) -> None:
        self.events.append(event)

    warning = info


def _job(attempts: int) -> Job:
    return Job("j1", "a.pdf", None, ConversionOptions(), 0.0, 1, 1, "here", attempts=attempts)


def _rules() -> tuple[RetryRules, _Records]:
    records = _Records()
    return RetryRules(cast(Custody, records), lambda: MAX_ATTEMPTS), records


def test_an_innocent_bystander_goes_round_again_with_its_attempt_given_back() -> None:
    rules, records = _rules()
    log = _Log()
    job, verdict = rules.after_crash(_job(MAX_ATTEMPTS), log, WorkerCrashed(-9, innocent=True))
    assert verdict == TryAgain(alone=False)
    assert job.attempts == MAX_ATTEMPTS - 1 and records.written == [job]
    assert log.events == ["worker_stopped_for_another_job"]


def test_a_shared_crash_goes_round_again_alone_uncounted_even_at_the_last_attempt() -> None:
    rules, _records = _rules()
    job, verdict = rules.after_crash(_job(MAX_ATTEMPTS), _Log(), WorkerCrashed(1, shared=True))
    assert verdict == TryAgain(alone=True)
    assert job.attempts == MAX_ATTEMPTS - 1


def test_its_own_crash_goes_round_again_counted_until_max_attempts_then_fails() -> None:
    rules, records = _rules()
    job, verdict = rules.after_crash(_job(1), _Log(), WorkerCrashed(1))
    assert verdict == TryAgain(alone=False) and job.attempts == 1 and records.written == []
    _job_then, last = rules.after_crash(_job(MAX_ATTEMPTS), _Log(), WorkerCrashed(1))
    assert isinstance(last, JobFailure) and last.code is ErrorCode.WORKER_CRASHED
    assert last.details["attempts"] == MAX_ATTEMPTS


def test_a_shared_timeout_goes_round_again_alone_and_a_timeout_alone_fails() -> None:
    rules, _records = _rules()
    job, verdict = rules.after_stopped(_job(2), _Log(), False, WorkerTimedOut(5, shared=True))
    assert verdict == TryAgain(alone=True) and job.attempts == 1
    _job_alone, alone = rules.after_stopped(_job(2), _Log(), True, WorkerTimedOut(5, shared=True))
    assert isinstance(alone, JobFailure) and alone.code is ErrorCode.CONVERSION_TIMEOUT
    _job_own, own = rules.after_stopped(_job(1), _Log(), False, WorkerTimedOut(5))
    assert isinstance(own, JobFailure) and own.code is ErrorCode.CONVERSION_TIMEOUT


def test_memory_over_the_limit_fails_at_once_naming_the_limit() -> None:
    rules, _records = _rules()
    _job_now, verdict = rules.after_stopped(_job(1), _Log(), False, WorkerOverMemory(2**20, 2**21))
    assert isinstance(verdict, JobFailure) and verdict.code is ErrorCode.WORKER_CRASHED
    assert verdict.details["reason"] == "memory_limit_exceeded"


def test_a_job_started_max_attempts_times_is_not_started_again() -> None:
    rules, _records = _rules()
    assert rules.past_attempts(_job(MAX_ATTEMPTS - 1)) is None
    refused = rules.past_attempts(_job(MAX_ATTEMPTS))
    assert refused is not None and refused.code is ErrorCode.WORKER_CRASHED
