"""The supervisor used by several job threads at once (cross-document batching): one of them
pumps the worker's messages, every answer reaches its own thread, a worker starts once, and a
worker stopped for one job settles every thread waiting on it."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sir_convert_a_lot.engine.protocol import Converted, ConvertRequest, Progress, WorkerSettings
from sir_convert_a_lot.engine.supervisor import Engine, WorkerCrashed, WorkerTimedOut
from sir_convert_a_lot.engine.transports.base import Transport
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service import startup
from sir_convert_a_lot.sharefs import file_id
from tests.engine.test_supervisor import CPU, ScriptedTransport
from tests.helpers import UNLOCK, load_config, make_pdf, wait_for


class SlowStartTransport(ScriptedTransport):
    """Takes a moment to start, so that two threads submitting together would both start one
    if the supervisor let them."""

    def start(self) -> None:
        time.sleep(0.2)
        super().start()


class Converting:
    """``engine.convert`` on a thread of its own; what it returned or raised."""

    def __init__(self, engine: Engine, job_id: str, timeout_seconds: int = 600) -> None:
        self.job_id = job_id
        self.answer: Converted | None = None
        self.error: Exception | None = None
        options = replace(
            ConversionOptions(
                backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
            ),
            document_timeout_seconds=timeout_seconds,
        )
        self.thread = threading.Thread(
            target=self._run, args=(engine, options), name=f"test-{job_id}", daemon=True
        )
        self.thread.start()

    def _run(self, engine: Engine, options: ConversionOptions) -> None:
        try:
            answer = engine.convert(self.job_id, f"/{self.job_id}.pdf", options, CPU)
            assert isinstance(answer, Converted)
            self.answer = answer
        except Exception as exc:  # the test looks at it
            self.error = exc

    def result(self) -> Converted | Exception | None:
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.job_id} is still waiting"
        return self.answer or self.error


def _engine(
    tmp_path: Path, kind: type[ScriptedTransport] = ScriptedTransport
) -> tuple[Engine, list[ScriptedTransport]]:
    made: list[ScriptedTransport] = []

    def factory(settings: WorkerSettings) -> Transport:
        made.append(kind(settings))
        return made[-1]

    config = load_config(tmp_path)
    return Engine(config, UNLOCK, instance="threads", transport=factory), made


def _converted(job_id: str, pages: int = 1) -> Converted:
    return Converted(job_id, f"# {job_id}", pages, "pymupdf", "cpu", False, (), {}, 1)


def _requested(transport: ScriptedTransport) -> set[str]:
    return {m.job_id for m in list(transport.sent) if isinstance(m, ConvertRequest)}


def test_each_thread_gets_its_own_answer_in_whatever_order_they_come(tmp_path: Path) -> None:
    engine, made = _engine(tmp_path)
    engine.start()
    progress: list[tuple[str, int, int]] = []
    engine.on_progress = lambda job_id, page, pages: progress.append((job_id, page, pages))
    jobs = [Converting(engine, f"job_{n}") for n in range(5)]
    transport = made[-1]
    wait_for(lambda: _requested(transport) == {job.job_id for job in jobs}, timeout=10)
    for job in reversed(jobs):  # the last submitted answers first
        transport.inbox.extend([Progress(job.job_id, 0, 3), _converted(job.job_id, 3)])
    for job in jobs:
        assert job.result() == _converted(job.job_id, 3)
    assert sorted(progress) == sorted((job.job_id, 0, 3) for job in jobs)
    assert engine.starts == 1 and engine.alive


def test_threads_that_submit_together_start_one_worker(tmp_path: Path) -> None:
    engine, made = _engine(tmp_path, SlowStartTransport)
    jobs = [Converting(engine, f"job_{n}") for n in range(3)]
    wait_for(lambda: made and _requested(made[-1]) == {job.job_id for job in jobs}, timeout=10)
    for job in jobs:
        made[-1].inbox.append(_converted(job.job_id))
    assert all(isinstance(job.result(), Converted) for job in jobs)
    assert engine.starts == 1 and len(made) == 1


@pytest.mark.slow
def test_a_timeout_fails_its_own_thread_and_the_others_are_innocent(tmp_path: Path) -> None:
    engine, made = _engine(tmp_path)
    engine.start()
    slow = Converting(engine, "job_slow", timeout_seconds=1)
    others = [Converting(engine, f"job_{n}") for n in range(3)]
    wait_for(lambda: len(_requested(made[-1])) == 4, timeout=10)
    timed_out = slow.result()
    assert isinstance(timed_out, WorkerTimedOut) and timed_out.seconds == 1
    assert timed_out.shared  # three others shared the worker with it
    for other in others:
        crashed = other.result()
        assert isinstance(crashed, WorkerCrashed) and crashed.innocent
    assert not engine.alive
    after = Converting(engine, "job_after")  # the next job gets a fresh worker
    wait_for(lambda: len(made) == 2 and _requested(made[-1]) == {"job_after"}, timeout=10)
    made[-1].inbox.append(_converted("job_after"))
    assert after.result() == _converted("job_after")


@pytest.mark.parametrize("how", ["abort", "stop"])
def test_abort_or_stop_from_another_thread_settles_every_waiter(tmp_path: Path, how: str) -> None:
    engine, made = _engine(tmp_path)
    engine.start()
    jobs = [Converting(engine, f"job_{n}") for n in range(3)]
    wait_for(lambda: len(_requested(made[-1])) == 3, timeout=10)
    getattr(engine, how)()
    for job in jobs:
        crashed = job.result()
        assert isinstance(crashed, WorkerCrashed)
        assert crashed.innocent is (how == "stop")  # a stop's bystanders; an abort's crash


# -- the lifecycle: a neighbour's timeout costs a job nothing -----------------------------------


@pytest.mark.slow
def test_the_innocent_bystander_of_a_timeout_goes_round_again_uncounted(tmp_path: Path) -> None:
    # One attempt allowed: had the bystander's killed attempt counted, its second go would be
    # refused with worker_crashed.
    config = load_config(tmp_path, retry={"max_attempts": 1})
    slow_config = replace(config, defaults=replace(config.defaults, document_timeout_seconds=1))
    made: list[ScriptedTransport] = []

    def factory(settings: WorkerSettings) -> Transport:
        made.append(ScriptedTransport(settings))
        return made[-1]

    engine = Engine(config, UNLOCK, instance=config.instances.name, transport=factory)
    engine.start()
    spool = Spool(config.paths, config.instances.name)
    startup.prepare_folders(config, spool)
    jobs = {}
    for name, job_config in (("slow", slow_config), ("bystander", config)):
        source = make_pdf(config.paths.inbox / f"{name}.pdf")
        info = source.stat()
        job = spool.claims.claim(
            f"{name}.pdf", None, job_config.defaults, info.st_size, info.st_mtime_ns, file_id(info)
        )
        assert job is not None
        jobs[name] = job
    runner = JobRunner(config, UNLOCK, spool, engine)
    outcomes: dict[str, Outcome] = {}
    threads = [
        threading.Thread(target=lambda n=n, j=j: outcomes.update({n: runner.run(j)}))
        for n, j in jobs.items()
    ]
    for thread in threads:
        thread.start()
    # The bystander's second go reaches a fresh worker, which answers it. (The slow job goes
    # round alone too, since its time was shared: whichever of the two gets in first, the
    # bystander's answer comes from the newest worker.)
    wait_for(lambda: len(made) >= 2 and jobs["bystander"].job_id in _requested(made[-1]), 20)
    made[-1].inbox.append(_converted(jobs["bystander"].job_id))
    for thread in threads:
        thread.join(30)
    assert outcomes["slow"].status is Status.FAILED
    assert outcomes["slow"].code == "conversion_timeout"
    assert outcomes["bystander"].status is Status.SUCCEEDED
    sidecar = json.loads((config.paths.outbox / "bystander.json").read_text())
    assert sidecar["execution"]["attempt"] == 1
    engine.stop()


class _OneAttemptRunner:
    """A job runner allowing one attempt, on an engine over scripted workers (``made``), that
    runs each job it starts on a thread of its own and keeps the outcomes by job id."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = load_config(tmp_path, retry={"max_attempts": 1})
        self.made: list[ScriptedTransport] = []

        def factory(settings: WorkerSettings) -> Transport:
            self.made.append(ScriptedTransport(settings))
            return self.made[-1]

        name = self.config.instances.name
        self.engine = Engine(self.config, UNLOCK, instance=name, transport=factory)
        self.engine.start()
        self.spool = Spool(self.config.paths, name)
        startup.prepare_folders(self.config, self.spool)
        self.runner = JobRunner(self.config, UNLOCK, self.spool, self.engine)
        self.outcomes: dict[str, Outcome] = {}
        self.job_ids: dict[str, str] = {}  # by file name

    def start(self, name: str, options: ConversionOptions) -> threading.Thread:
        """Claim ``<name>.pdf`` from the inbox and run it on a thread of its own."""
        info = make_pdf(self.config.paths.inbox / f"{name}.pdf").stat()
        job = self.spool.claims.claim(
            f"{name}.pdf", None, options, info.st_size, info.st_mtime_ns, file_id(info)
        )
        assert job is not None
        self.job_ids[name] = job.job_id
        thread = threading.Thread(
            target=lambda: self.outcomes.update({job.job_id: self.runner.run(job)}), daemon=True
        )
        thread.start()
        return thread


# -- a crash with several documents in the worker: each suspect is tried again alone ------------


def test_a_crash_with_several_in_the_worker_is_shared_and_over_memory_names_no_culprit(
    tmp_path: Path,
) -> None:
    engine, made = _engine(tmp_path)
    engine.start()
    jobs = [Converting(engine, f"job_{n}") for n in range(2)]
    wait_for(lambda: len(_requested(made[-1])) == 2, timeout=10)
    made[-1].kill()
    for job in jobs:
        crashed = job.result()
        assert isinstance(crashed, WorkerCrashed) and crashed.shared and not crashed.innocent
    engine.config = replace(
        engine.config,
        conversion=replace(engine.config.conversion, max_worker_memory_bytes=1 << 30),
    )
    jobs = [Converting(engine, f"job_{n}") for n in range(2, 4)]
    wait_for(lambda: len(made) == 2 and len(_requested(made[-1])) == 2, timeout=10)
    made[-1].memory = (1 << 30) + 1
    for job in jobs:
        crashed = job.result()
        assert isinstance(crashed, WorkerCrashed) and crashed.shared


def test_a_job_submitted_alone_waits_for_an_empty_worker_and_keeps_others_out(
    tmp_path: Path,
) -> None:
    engine, made = _engine(tmp_path)
    engine.start()
    transport = made[-1]
    first = Converting(engine, "job_first")
    wait_for(lambda: _requested(transport) == {"job_first"}, timeout=10)
    options = ConversionOptions(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    alone = threading.Thread(
        target=engine.convert,
        args=("job_alone", "/alone.pdf", options, CPU),
        kwargs={"alone": True},
        daemon=True,
    )
    alone.start()
    time.sleep(0.3)  # give it the chance to go in wrongly; the assertion is on what was sent
    assert _requested(transport) == {"job_first"}
    later = Converting(engine, "job_later")
    transport.inbox.append(_converted("job_first"))
    assert first.result() == _converted("job_first")
    wait_for(lambda: "job_alone" in _requested(transport), timeout=10)
    assert "job_later" not in _requested(transport)  # kept out while the lone job runs
    transport.inbox.append(_converted("job_alone"))
    alone.join(10)
    wait_for(lambda: "job_later" in _requested(transport), timeout=10)
    transport.inbox.append(_converted("job_later"))
    assert later.result() == _converted("job_later")


def test_the_jobs_of_a_shared_crash_go_round_again_alone_and_uncounted(tmp_path: Path) -> None:
    bench = _OneAttemptRunner(tmp_path)
    config, made, outcomes = bench.config, bench.made, bench.outcomes
    threads = [bench.start(name, config.defaults) for name in ("one", "two")]
    wait_for(lambda: len(_requested(made[-1])) == 2, timeout=10)
    made[-1].kill()  # the worker goes down with both: neither can be blamed
    seen_alone = []
    while len(outcomes) < 2:
        requested = wait_for(lambda: _unanswered(made, outcomes), timeout=10)
        seen_alone.append(len(requested))
        (job_id,) = requested
        made[-1].inbox.append(_converted(job_id))
        wait_for(lambda: job_id in outcomes, timeout=10)  # noqa: B023 - called at once
    for thread in threads:
        thread.join(10)
    assert seen_alone == [1, 1]  # each alone in the fresh worker
    assert [o.status for o in outcomes.values()] == [Status.SUCCEEDED] * 2
    for name in ("one", "two"):
        sidecar = json.loads((config.paths.outbox / f"{name}.json").read_text())
        assert sidecar["execution"]["attempt"] == 1
    bench.engine.stop()


def _unanswered(made: list[ScriptedTransport], outcomes: dict[str, Outcome]) -> set[str]:
    """The requests the fresh worker got for jobs that have not ended."""
    return _requested(made[-1]) - set(outcomes) if len(made) == 2 else set()


@pytest.mark.slow
def test_a_timeout_alone_in_the_worker_is_not_shared(tmp_path: Path) -> None:
    engine, _made = _engine(tmp_path)
    engine.start()
    slow = Converting(engine, "job_slow", timeout_seconds=1)
    timed_out = slow.result()
    assert isinstance(timed_out, WorkerTimedOut) and not timed_out.shared
    engine.stop()


@pytest.mark.slow
def test_a_job_past_its_limit_among_others_is_tried_alone_before_it_fails(tmp_path: Path) -> None:
    """Its time was shared with its neighbours, so the first timeout is not counted; alone,
    the timeout is its own and it fails conversion_timeout after one counted attempt."""
    bench = _OneAttemptRunner(tmp_path)
    config, made, outcomes = bench.config, bench.made, bench.outcomes
    for name, seconds in (("slow", 1), ("fast", 600)):
        bench.start(name, replace(config.defaults, document_timeout_seconds=seconds))
    wait_for(lambda: len(_requested(made[-1])) == 2, timeout=10)
    fast_id, slow_id = bench.job_ids["fast"], bench.job_ids["slow"]
    # the slow one never answers; the fast one answers in whichever worker it is sent to
    wait_for(lambda: len(made) >= 2 and fast_id in _requested(made[-1]), timeout=15)
    made[-1].inbox.append(_converted(fast_id))
    wait_for(lambda: slow_id in outcomes and fast_id in outcomes, timeout=30)
    assert outcomes[fast_id].status is Status.SUCCEEDED
    assert outcomes[slow_id].status is Status.FAILED
    envelope = json.loads((config.paths.outbox / "slow.error.json").read_text())
    assert envelope["error"]["code"] == "conversion_timeout"
    assert envelope["execution"]["attempt"] == 1  # the shared timeout was not counted
    # it went in twice: beside the fast one, then again (alone) where the timeout was its own
    assert sum(slow_id in _requested(transport) for transport in made) == 2
    bench.engine.stop()


def test_a_job_taken_over_while_queued_is_forgotten_with_lease_lost_not_deferred(
    tmp_path: Path,
) -> None:
    """The stale instance (presumed dead, its job taken over while still queued here) wakes:
    it publishes nothing, says ``lease_lost`` once and forgets the job, instead of deferring
    and retrying it every minute."""
    from structlog.testing import capture_logs

    config = load_config(tmp_path)
    engine = Engine(config, UNLOCK, instance=config.instances.name, transport=ScriptedTransport)
    engine.start()
    stale = Spool(config.paths, config.instances.name)
    startup.prepare_folders(config, stale)
    info = make_pdf(config.paths.inbox / "a.pdf").stat()
    job = stale.claims.claim(
        "a.pdf", None, config.defaults, info.st_size, info.st_mtime_ns, file_id(info)
    )
    assert job is not None
    live = Spool(config.paths, "live-instance")
    live.ensure_layout()
    stale.lease_path.unlink(missing_ok=True)
    old = time.time() - 3600
    os.utime(stale.my_claims, (old, old))
    [taken] = live.instances.take_over_dead(lease_seconds=5)
    try:
        with capture_logs() as logged:
            outcome = JobRunner(config, UNLOCK, stale, engine).run(job)
    finally:
        engine.stop()

    assert (outcome.status, outcome.code) == (Status.RETURNED, "lease_lost")
    assert [e["event"] for e in logged if e["log_level"] in ("warning", "error")] == ["lease_lost"]
    assert list(config.paths.outbox.iterdir()) == []
    assert live.source_path(taken).exists()  # the live instance's job is untouched
