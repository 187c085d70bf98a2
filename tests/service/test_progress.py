"""Progress on long documents: ``job_progress`` in the journal at most once per
``PROGRESS_LOG_SECONDS`` per job (from where the worker's progress reaches the daemon), and how
long each converting job has run in ``sir-convert status`` (text and ``--json``)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, cast

from structlog.testing import capture_logs

from sir_convert_a_lot.jobs.job import Job, new_job_id
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.ops.status import _instance, render_status
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service.events import Event
from sir_convert_a_lot.service.runners import PROGRESS_LOG_SECONDS, JobThreads
from tests.helpers import wait_for


class HeldRunner:
    """Converts nothing: each job 'runs' until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, job: Job) -> Outcome:
        self.release.wait(30)
        return Outcome(job.job_id, Status.SUCCEEDED)


def _job(name: str) -> Job:
    return Job(
        job_id=new_job_id(),
        relative_path=name,
        profile=None,
        options=ConversionOptions(),
        claimed_at=1.0,
        claimed_size=3,
        claimed_mtime_ns=7,
        instance="me",
    )


def test_progress_reaches_the_journal_at_most_every_few_seconds_per_job() -> None:
    assert PROGRESS_LOG_SECONDS == 5.0
    now = [100.0]
    runner = HeldRunner()
    events: queue.Queue[Event] = queue.Queue()
    threads = JobThreads(
        cast(JobRunner, runner),
        events,
        threading.Event(),
        max_pages_in_flight=lambda: 8,
        on_fatal=lambda _reason: None,
        clock=lambda: now[0],
    )
    first, second = _job("long/a.pdf"), _job("b.pdf")
    try:
        threads.add(first)
        threads.add(second)
        wait_for(lambda: len(threads.converting()) == 2, timeout=10)
        with capture_logs() as logged:
            threads.on_progress(first.job_id, 1, 10)  # just started: nothing yet
            now[0] = 104.9
            threads.on_progress(first.job_id, 2, 10)  # under 5 s
            now[0] = 105.0
            threads.on_progress(first.job_id, 3, 10)  # 5 s: said
            threads.on_progress(second.job_id, 1, 4)  # its own clock: said too
            now[0] = 109.0
            threads.on_progress(first.job_id, 4, 10)  # 4 s after the last: not yet
            now[0] = 110.5
            threads.on_progress(first.job_id, 5, 10)
            threads.on_progress("job_unknown", 1, 1)  # not converting here: nothing
    finally:
        runner.release.set()
        threads.stop(time.monotonic() + 10, lambda _ids: None)
    said = [entry for entry in logged if entry["event"] == "job_progress"]
    assert [(e["job_id"], e["page"], e["pages"], e["seconds"]) for e in said] == [
        (first.job_id, 3, 10, 5.0),
        (second.job_id, 1, 4, 5.0),
        (first.job_id, 5, 10, 10.5),
    ]
    assert said[0]["source"] == "long/a.pdf"
    assert threads.converting() == []


def _lease(**jobs_and_more: Any) -> dict[str, Any]:
    return {"state": "ready", "activity": "converting", "host": "h", "pid": 1, **jobs_and_more}


def test_status_says_how_long_each_job_has_run_in_text_and_json() -> None:
    started = time.time() - 125
    lease = _lease(
        jobs=[
            {"job_id": "job_1", "source": "a.pdf", "page": 3, "pages": 12, "started_at": started},
            {"job_id": "job_2", "source": "b.pdf", "page": 0, "pages": 0, "seconds": 4.2},
        ]
    )
    instance = _instance("gpu0", True, 1.0, lease)
    jobs = instance["jobs"]
    assert 125 <= jobs[0]["seconds"] < 135  # as of now, not as of the heartbeat
    assert jobs[1]["seconds"] == 4.2  # a lease without started_at: as the heartbeat said
    status = {
        "queue": {"inbox": 0, "claimed": 2, "failed": 0},
        "instances": [instance],
        "recent_failures": [],
    }
    text = render_status(status)
    assert "    converting: a.pdf (page 3/12, 2 min 0" in text
    assert "    converting: b.pdf (4 s)" in text

    alone = _instance("gpu1", True, 1.0, _lease(jobs=[{"source": "c.pdf", "seconds": 7500}]))
    text = render_status({**status, "instances": [alone]})
    assert "converting c.pdf (2 h 05 min)" in text
