"""Recycling (``engine.recycle_after_jobs``, ``engine.recycle_above_bytes``): a worker replaced
between jobs, never during one. Overlapped (a local engine): its replacement loads beside it
while it goes on converting, no document waits for that load, and the documents still in it
finish there. Drained (Ray actors): a new document waits for the fresh worker. Either way no
document is lost, doubled or charged an attempt for it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.config import MetricsSection
from sir_convert_a_lot.engine import recycle
from sir_convert_a_lot.engine.interface import WorkerCrashed
from sir_convert_a_lot.engine.protocol import (
    Converted,
    ConvertRequest,
    Load,
    Ready,
    Shutdown,
    StartupFailed,
    WorkerSettings,
)
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.base import Transport
from sir_convert_a_lot.ops.doctor import Check, run_checks
from sir_convert_a_lot.ops.status import gather_status, render_status, worker_memory_text
from sir_convert_a_lot.service.metrics import Metrics, Sample
from tests.daemon import Daemon
from tests.engine.test_supervisor import CPU, ScriptedTransport, _options
from tests.helpers import UNLOCK, files_under, load_config, make_pdf, wait_for, write_config
from tests.plugins.scripted_service import scripted_transport
from tests.plugins.scripted_worker import ScriptedWorker
from tests.service.test_runners import _converted

_ENGINES: list[Engine] = []  # made by this module's tests, stopped after each


@pytest.fixture(autouse=True)
def _stopped() -> Iterator[None]:
    yield
    while _ENGINES:
        _ENGINES.pop().stop()


def _engine(
    tmp_path: Path, *, overlap: bool | None = True, **engine: object
) -> tuple[Engine, list[ScriptedTransport]]:
    made: list[ScriptedTransport] = []

    def factory(settings: WorkerSettings) -> Transport:
        made.append(ScriptedTransport(settings))
        return made[-1]

    config = load_config(tmp_path, engine=dict(engine))
    built = Engine(config, UNLOCK, instance="recycle", transport=factory, overlap=overlap)
    _ENGINES.append(built)
    built.start()
    return built, made


def _requested(transport: ScriptedTransport) -> list[str]:
    return [m.job_id for m in list(transport.sent) if isinstance(m, ConvertRequest)]


def test_a_worker_is_replaced_after_its_jobs_and_the_next_document_goes_to_the_fresh_one(
    tmp_path: Path,
) -> None:
    engine, made = _engine(tmp_path, recycle_after_jobs=2)
    with capture_logs() as logged:
        for job_id in ("job_a", "job_b"):
            engine.submit(job_id, f"/{job_id}.pdf", _options(), CPU)
            made[0].inbox.append(_converted(job_id))
            assert engine.wait(job_id) == _converted(job_id)
        # The second answer made it due; empty, it is replaced at once, not at the next job.
        wait_for(lambda: engine.starts == 2 and not engine.recycling, timeout=10)
    old, fresh = made
    assert any(isinstance(m, Shutdown) for m in old.sent) and not old.running
    engine.submit("job_c", "/c.pdf", _options(), CPU)
    fresh.inbox.append(_converted("job_c"))
    assert engine.wait("job_c") == _converted("job_c")
    assert (_requested(old), _requested(fresh)) == (["job_a", "job_b"], ["job_c"])
    [recycled] = [e for e in logged if e["event"] == "worker_recycled"]
    assert (recycled["reason"], recycled["jobs"], recycled["recycle_after_jobs"]) == ("jobs", 2, 2)
    assert engine.memory().recycles == {"jobs": 1} and engine.memory().jobs == 1


@pytest.mark.parametrize(
    ("overlap", "engine_keys"),
    [(None, {}), (False, {"recycle_overlap": True})],
    ids=["the-default", "a-ray-actor"],
)
def test_drained_documents_in_a_due_worker_finish_there_and_a_new_one_waits_for_the_fresh_one(
    tmp_path: Path, overlap: bool | None, engine_keys: dict[str, object]
) -> None:
    """The default (``engine.recycle_overlap = false``), and always a Ray actor's recycle
    (``overlap=False``: its replacement needs what it holds)."""
    engine, made = _engine(tmp_path, overlap=overlap, recycle_after_jobs=1, **engine_keys)
    engine.submit("job_a", "/a.pdf", _options(), CPU)
    engine.submit("job_b", "/b.pdf", _options(), CPU)  # both in the first worker
    made[0].inbox.append(_converted("job_a"))
    assert engine.wait("job_a") == _converted("job_a")  # the worker is due from here on
    assert engine.recycling
    submitted = threading.Thread(
        target=engine.submit, args=("job_c", "/c.pdf", _options(), CPU), daemon=True
    )
    submitted.start()
    time.sleep(0.5)
    assert submitted.is_alive() and engine.starts == 1  # job_b is still in the old worker
    made[0].inbox.append(_converted("job_b"))
    assert engine.wait("job_b") == _converted("job_b")  # finished where it was, no error
    submitted.join(10)
    assert not submitted.is_alive() and engine.starts == 2
    made[1].inbox.append(_converted("job_c"))
    assert engine.wait("job_c") == _converted("job_c")
    assert (_requested(made[0]), _requested(made[1])) == (["job_a", "job_b"], ["job_c"])
    assert engine.memory().recycles == {"jobs": 1}


def test_a_stop_during_a_drained_recycle_leaves_no_worker_behind(tmp_path: Path) -> None:
    """Stopped while the recycling thread spawns the replacement (after the old worker is shut
    down, before the new one is in place, where ``stop`` cannot see it): the replacement is
    discarded, not loaded beside a stopped engine, and no failure is reported (issue 26)."""
    spawning, spawned = threading.Event(), threading.Event()
    made: list[ScriptedTransport] = []

    def factory(settings: WorkerSettings) -> Transport:
        if made:
            spawning.set()
            spawned.wait(10)
        made.append(ScriptedTransport(settings))
        return made[-1]

    config = load_config(tmp_path, engine={"recycle_after_jobs": 1})
    engine = Engine(config, UNLOCK, instance="recycle", transport=factory, overlap=False)
    _ENGINES.append(engine)
    engine.start()
    with capture_logs() as logged:
        engine.submit("job_a", "/a.pdf", _options(), CPU)
        made[0].inbox.append(_converted("job_a"))
        assert engine.wait("job_a") == _converted("job_a")  # due: the recycling thread acts
        assert spawning.wait(10)
        engine.stop()
        spawned.set()
        wait_for(lambda: not engine.recycling, timeout=10)
    assert len(made) == 2 and not made[0].alive() and not made[1].alive()
    assert not engine.alive
    assert [e for e in logged if e["event"].startswith("worker_recycle")] == []


# -- overlapped: the replacement loads beside the due worker ------------------------------------


class LoadingTransport(ScriptedTransport):
    """A worker in memory whose model load ends when the test says (``loaded``), in ``Ready``,
    or in ``StartupFailed`` when ``fails``."""

    def __init__(self, settings: WorkerSettings, loaded: threading.Event, fails: bool) -> None:
        super().__init__(settings)
        self.loaded, self.fails = loaded, fails
        self._answer: object | None = None

    def send(self, message: object) -> None:
        if not isinstance(message, Load):
            super().send(message)
            return
        self.sent.append(message)
        failed = StartupFailed("scripted", "a scripted load failure", {})
        self._answer = failed if self.fails else Ready(4242, 1, message.plan, 0.0, 0.0)

    def receive(self, timeout: float) -> object | None:
        if self._answer is not None and self.loaded.is_set():
            self.inbox.append(self._answer)
            self._answer = None
        return super().receive(timeout)


def _loading(
    tmp_path: Path, fails: set[int] | None = None, **engine: object
) -> tuple[Engine, list[LoadingTransport], list[threading.Event]]:
    """An overlapping engine whose workers' loads end when the test sets their event (the first
    one's is set: it loads at once); the starts numbered in ``fails`` fail their load."""
    made: list[LoadingTransport] = []
    loaded: list[threading.Event] = []

    def factory(settings: WorkerSettings) -> Transport:
        loaded.append(threading.Event())
        if not made:
            loaded[-1].set()
        made.append(LoadingTransport(settings, loaded[-1], len(made) in (fails or set())))
        return made[-1]

    config = load_config(tmp_path, engine={**engine, "recycle_overlap": True})
    built = Engine(config, UNLOCK, instance="recycle", transport=factory)
    _ENGINES.append(built)
    built.start()
    return built, made, loaded


def _submit_at_once(engine: Engine, job_id: str) -> None:
    """Submit ``job_id``, failing the test if the submit waits (for a model load, say)."""
    submitting = threading.Thread(
        target=engine.submit, args=(job_id, f"/{job_id}.pdf", _options(), CPU), daemon=True
    )
    submitting.start()
    submitting.join(2.0)
    assert not submitting.is_alive(), f"{job_id} waited to be submitted"


def _convert(engine: Engine, transport: ScriptedTransport, job_id: str) -> None:
    _submit_at_once(engine, job_id)
    assert job_id in _requested(transport)
    transport.inbox.append(_converted(job_id))
    assert engine.wait(job_id) == _converted(job_id)


def test_documents_go_on_to_a_due_worker_while_its_replacement_loads_and_none_waits(
    tmp_path: Path,
) -> None:
    engine, made, loaded = _loading(tmp_path, recycle_after_jobs=2)
    with capture_logs() as logged:
        _convert(engine, made[0], "job_a")
        _convert(engine, made[0], "job_b")  # due: its replacement starts loading
        wait_for(lambda: len(made) == 2 and any(isinstance(m, Load) for m in made[1].sent))
        assert engine.recycling and engine.starts == 1
        _convert(engine, made[0], "job_c")  # the due worker converts while the other loads
        _submit_at_once(engine, "job_d")
        assert "job_d" in _requested(made[0])
        loaded[1].set()  # ready: documents go to it from now on
        wait_for(lambda: engine.starts == 2)
        _submit_at_once(engine, "job_e")
        assert _requested(made[1]) == ["job_e"]
        assert made[0].running and engine.recycling  # job_d is still in the old worker
        made[0].inbox.append(_converted("job_d"))
        assert engine.wait("job_d") == _converted("job_d")  # finished where it was, no error
        wait_for(lambda: not made[0].running and not engine.recycling, timeout=10)
        made[1].inbox.append(_converted("job_e"))
        assert engine.wait("job_e") == _converted("job_e")
    assert any(isinstance(m, Shutdown) for m in made[0].sent)
    assert _requested(made[0]) == ["job_a", "job_b", "job_c", "job_d"]
    [recycled] = [e for e in logged if e["event"] == "worker_recycled"]
    assert (recycled["reason"], recycled["jobs"], recycled["overlap"]) == ("jobs", 4, True)
    assert 0 <= recycled["ready_seconds"] <= recycled["overlap_seconds"]
    assert engine.memory().recycles == {"jobs": 1} and engine.memory().jobs == 1


def test_a_replacement_that_fails_to_start_leaves_the_old_worker_serving_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "RETRY_SECONDS", 1.0)
    engine, made, loaded = _loading(tmp_path, fails={1}, recycle_after_jobs=1)
    with capture_logs() as logged:
        _convert(engine, made[0], "job_a")  # due: its replacement starts, and fails
        wait_for(lambda: len(made) == 2)
        loaded[1].set()
        wait_for(lambda: not made[1].running)
        _convert(engine, made[0], "job_b")  # the old worker goes on
        assert engine.starts == 1 and made[0].running
        wait_for(lambda: len(made) == 3, timeout=10)  # tried again after RETRY_SECONDS
        loaded[2].set()
        wait_for(lambda: engine.starts == 2 and not engine.recycling, timeout=10)
        _convert(engine, made[2], "job_c")
    [failed] = [e for e in logged if e["event"] == "worker_recycle_failed"]
    assert failed["reason"] == "scripted" and "old worker goes on converting" in failed["effect"]
    [recycled] = [e for e in logged if e["event"] == "worker_recycled"]
    assert recycled["jobs"] == 2 and engine.memory().recycles == {"jobs": 1}
    assert not made[0].running


def test_a_due_worker_that_crashes_while_its_replacement_loads_takes_the_crash_path(
    tmp_path: Path,
) -> None:
    engine, made, loaded = _loading(tmp_path, recycle_after_jobs=1)
    _convert(engine, made[0], "job_a")
    wait_for(lambda: len(made) == 2)
    _submit_at_once(engine, "job_b")
    made[0].kill()  # the old worker dies with job_b in it
    with pytest.raises(WorkerCrashed) as crashed:
        engine.wait("job_b")
    assert not crashed.value.innocent  # counted, as after any crash
    # A document that finds no worker waits for the replacement already loading: no third start.
    waiting = threading.Thread(
        target=engine.submit, args=("job_c", "/c.pdf", _options(), CPU), daemon=True
    )
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive() and len(made) == 2
    loaded[1].set()
    waiting.join(10)
    assert not waiting.is_alive() and _requested(made[1]) == ["job_c"]
    made[1].inbox.append(_converted("job_c"))
    assert engine.wait("job_c") == _converted("job_c")
    assert engine.starts == 2 and engine.memory().recycles == {}  # a restart, not a recycle


def test_an_old_worker_that_crashes_while_it_finishes_takes_only_its_own_documents(
    tmp_path: Path,
) -> None:
    engine, made, loaded = _loading(tmp_path, recycle_after_jobs=2)
    for job_id in ("job_a", "job_b", "job_c"):
        _submit_at_once(engine, job_id)
    made[0].inbox.extend([_converted("job_a"), _converted("job_b")])
    engine.wait("job_a")
    engine.wait("job_b")  # due, with job_c still in it
    wait_for(lambda: len(made) == 2)
    loaded[1].set()
    wait_for(lambda: engine.starts == 2)
    _submit_at_once(engine, "job_d")  # to the fresh worker
    made[0].kill()
    with pytest.raises(WorkerCrashed) as crashed:
        engine.wait("job_c")
    assert not crashed.value.innocent  # counted, as after any crash
    made[1].inbox.append(_converted("job_d"))
    assert engine.wait("job_d") == _converted("job_d")  # the fresh worker is untouched
    wait_for(lambda: not engine.recycling, timeout=10)
    assert engine.alive and engine.starts == 2 and engine.memory().recycles == {"jobs": 1}


# -- overlapped, with worker processes ----------------------------------------------------------


def _processes(tmp_path: Path, script: ScriptedWorker, **engine: object) -> Engine:
    """An engine of worker processes running ``script``, started."""
    config = load_config(tmp_path, engine={**engine, "recycle_overlap": True})
    built = Engine(
        config, config.governance, instance="recycle", transport=scripted_transport(script)
    )
    _ENGINES.append(built)
    built.start()
    return built


def _timed(engine: Engine, tmp_path: Path, name: str) -> float:
    """Convert a fresh one-page PDF ``name`` and say how long it took, from submit to answer."""
    source = make_pdf(tmp_path / name)
    began = time.monotonic()
    answer = engine.convert(name, str(source), _options(), CPU, source_name=name)
    assert isinstance(answer, Converted), answer
    return time.monotonic() - began


@pytest.mark.slow
def test_no_document_waits_for_the_replacement_s_model_load(tmp_path: Path) -> None:
    load = 8.0
    engine = _processes(tmp_path, ScriptedWorker(load_seconds=load), recycle_after_jobs=3)
    assert engine.info is not None
    first = engine.info.pid
    took: list[float] = []
    with capture_logs() as logged:
        deadline = time.monotonic() + 180
        while not any(e["event"] == "worker_recycled" for e in logged):
            assert time.monotonic() < deadline, "no recycle"
            took.append(_timed(engine, tmp_path, f"doc-{len(took)}.pdf"))
    [recycled] = [e for e in logged if e["event"] == "worker_recycled"]
    assert recycled["old_pid"] == first and recycled["pid"] != first
    assert recycled["load_seconds"] >= load and recycled["ready_seconds"] >= load
    # The due worker went on converting, one document after another, while the other loaded;
    # in a drained recycle the first document after it would have waited the whole load.
    assert recycled["jobs"] > 3 + 2
    assert max(took) < load / 2, took


@pytest.mark.slow
def test_a_replacement_process_that_fails_to_load_leaves_the_old_one_converting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "RETRY_SECONDS", 2.0)
    broken = tmp_path / "loads-fail"
    engine = _processes(tmp_path, ScriptedWorker(fail_load_if=str(broken)), recycle_after_jobs=1)
    assert engine.info is not None
    first = engine.info.pid
    broken.touch()
    with capture_logs() as logged:
        _timed(engine, tmp_path, "due.pdf")
        wait_for(lambda: any(e["event"] == "worker_recycle_failed" for e in logged), timeout=60)
        for number in range(3):
            _timed(engine, tmp_path, f"still-{number}.pdf")
        assert engine.starts == 1 and engine.info.pid == first and engine.alive
        broken.unlink()
        wait_for(lambda: engine.starts == 2 and not engine.recycling, timeout=60)
        _timed(engine, tmp_path, "fresh.pdf")
    assert engine.info.pid != first
    failed = [e for e in logged if e["event"] == "worker_recycle_failed"]
    assert failed and {e["reason"] for e in failed} == {"scripted"}
    [recycled] = [e for e in logged if e["event"] == "worker_recycled"]
    assert recycled["jobs"] == 4 and engine.memory().recycles == {"jobs": 1}


@pytest.mark.slow
def test_a_due_worker_process_that_crashes_during_the_overlap_takes_the_crash_path(
    tmp_path: Path,
) -> None:
    script = ScriptedWorker({"boom.pdf": "crash"}, load_seconds=6.0)
    engine = _processes(tmp_path, script, recycle_after_jobs=1)
    _timed(engine, tmp_path, "due.pdf")  # due: the replacement loads for 6 s or more
    assert engine.recycling
    boom = make_pdf(tmp_path / "boom.pdf")
    with pytest.raises(WorkerCrashed) as crashed:
        engine.convert("boom", str(boom), _options(), CPU, source_name="boom.pdf")
    assert crashed.value.exitcode == -9 and not crashed.value.innocent
    _timed(engine, tmp_path, "after.pdf")  # waits for the replacement already loading
    assert engine.starts == 2 and engine.memory().recycles == {}  # a restart, not a recycle


def test_a_worker_over_the_recycling_threshold_is_replaced_before_the_memory_limit(
    tmp_path: Path,
) -> None:
    engine, made = _engine(tmp_path, recycle_after_jobs=0, recycle_above_bytes=1 << 30)
    made[0].memory = 1 << 29
    engine.submit("job_a", "/a.pdf", _options(), CPU)
    made[0].inbox.append(_converted("job_a"))
    engine.wait("job_a")
    assert not engine.recycling  # under the threshold
    made[0].memory = (1 << 30) + 1
    engine.submit("job_b", "/b.pdf", _options(), CPU)
    made[0].inbox.append(_converted("job_b"))
    assert engine.wait("job_b") == _converted("job_b")  # over it after the job: not during
    wait_for(lambda: engine.starts == 2 and not engine.recycling, timeout=10)
    assert engine.memory().recycles == {"memory": 1}


def test_without_thresholds_a_worker_is_never_recycled(tmp_path: Path) -> None:
    engine, made = _engine(tmp_path, recycle_after_jobs=0, recycle_above_bytes=0)
    made[0].memory = 1 << 33  # 8 GiB, under the 16 GiB limit
    for number in range(5):
        engine.submit(f"job_{number}", "/a.pdf", _options(), CPU)
        made[0].inbox.append(_converted(f"job_{number}"))
        engine.wait(f"job_{number}")
    assert engine.starts == 1 and not engine.recycling
    assert engine.memory().jobs == 5 and engine.memory().rss_bytes == 1 << 33


def test_recycles_are_counted_by_reason_and_not_as_restarts(tmp_path: Path) -> None:
    metrics = Metrics(MetricsSection(), "test")
    metrics.sample(Sample(0, 0, 1))
    metrics.sample(Sample(0, 0, 3, recycles={"jobs": 1}))  # one recycle, one crash restart
    text = metrics.render().decode()
    assert 'sir_convert_worker_recycles_total{daemon="test",reason="jobs"} 1.0' in text
    assert 'sir_convert_worker_restarts_total{daemon="test"} 1.0' in text


# -- the daemon, with documents arriving while its worker is recycled -------------------------


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [False, True], ids=["drained", "overlapped"])
def test_documents_keep_arriving_while_the_worker_is_recycled_and_each_ends_once(
    tmp_path: Path, overlap: bool
) -> None:
    every = 3
    names: list[str] = []
    engine = {"recycle_after_jobs": every, "recycle_overlap": overlap}
    config = write_config(tmp_path, engine=engine)
    with Daemon(config, quick=True).start() as daemon:
        # A steady flow until two recycles are over: documents arrive while workers load,
        # overlap and retire.
        while len([e for e in daemon.events() if e["event"] == "worker_recycled"]) < 2:
            assert len(names) < 100, "two recycles did not happen"
            names.append(f"doc-{len(names):02d}.pdf")
            make_pdf(tmp_path / "inbox" / names[-1], pages=1 + len(names) % 3)
            time.sleep(0.3)
        wait_for(
            lambda: all((tmp_path / "outbox" / n.replace(".pdf", ".json")).exists() for n in names),
            timeout=180,
        )
        recycled = daemon.wait_event("worker_recycled", count=2, timeout=60)
        shown = _status_and_doctor(config)
        assert daemon.terminate() == 0
    assert sorted(files_under(tmp_path / "archive")) == names  # each once, none lost
    outputs = sorted(files_under(tmp_path / "outbox"))
    assert outputs == sorted(
        [n.replace(".pdf", ".md") for n in names] + [n.replace(".pdf", ".json") for n in names]
    )  # no error envelope, no second copy
    sidecars = [
        json.loads((tmp_path / "outbox" / n.replace(".pdf", ".json")).read_text()) for n in names
    ]
    assert {s["execution"]["attempt"] for s in sidecars} == {1}  # no attempt charged
    assert {(e["reason"], e["overlap"]) for e in recycled} == {("jobs", overlap)}
    # Due at its third answer; overlapped, it goes on converting while its replacement loads.
    assert all(e["jobs"] >= every for e in recycled)
    assert sum(e["jobs"] for e in recycled) <= len(names)
    assert len({s["execution"]["worker"]["pid"] for s in sidecars}) > 1  # several workers
    crashes = [e for e in daemon.events() if "crash" in e["event"] or "stopped_for" in e["event"]]
    assert crashes == []
    worker, line, row = shown
    assert worker["recycle_after_jobs"] == every and worker["recycles"]["jobs"] >= 2
    assert 0 < worker["memory_bytes"] < worker["max_worker_memory_bytes"]
    assert (
        line.startswith("    worker: ") and " resident, limit 16.0 GiB, recycled after 3 " in line
    )
    assert row.status == "OK" and row.detail == line.removeprefix("    worker: ")


def _status_and_doctor(path: Path) -> tuple[dict[str, Any], str, Check]:
    """What status and doctor say of the running daemon's worker."""
    config = config_module.load(path)
    status = gather_status(config)
    [instance] = status["instances"]
    [line] = [x for x in render_status(status).splitlines() if x.startswith("    worker:")]
    [row] = [c for c in run_checks(config, {}, deep_gpu=False) if c.name == "worker memory"]
    return instance["worker"], line, row


def test_doctor_warns_when_recycling_could_never_act_before_the_memory_limit(
    tmp_path: Path,
) -> None:
    config = load_config(
        tmp_path,
        conversion={"max_worker_memory_bytes": 8 << 30},
        engine={"recycle_above_bytes": 8 << 30},
    )
    [row] = [c for c in run_checks(config, {}, deep_gpu=False) if c.name == "worker recycling"]
    assert row.status == "WARN" and "8.0 GiB" in row.detail and "below the limit" in row.fix
    [idle] = [c for c in run_checks(config, {}, deep_gpu=False) if c.name == "worker memory"]
    assert idle.status == "OK" and "no running instance" in idle.detail


def test_status_shows_the_worker_beside_its_limits_and_torch_on_a_gpu() -> None:
    worker = {
        "memory_bytes": 3 << 30,
        "max_worker_memory_bytes": 16 << 30,
        "recycle_above_bytes": 12 << 30,
        "recycle_after_jobs": 1000,
        "jobs_since_start": 412,
        "recycles": {"jobs": 2},
        "gpu_allocated_bytes": 1 << 30,
        "gpu_reserved_bytes": 3 << 29,
    }
    assert worker_memory_text(worker) == (
        "3.0 GiB resident, limit 16.0 GiB, recycled above 12.0 GiB or after 1000 jobs "
        "(412 since its start), 2 recycled for jobs, GPU 1.0 GiB allocated, 1.5 GiB reserved"
    )


@pytest.mark.slow
def test_ray_actors_are_recycled_the_same_way_and_each_document_ends_once(
    tmp_path: Path,
) -> None:
    from tests.engine.test_pool import RAY_CPUS, _running, _stop
    from tests.private_ray import private_ray_processes

    config = load_config(tmp_path, engine={**RAY_CPUS, "recycle_after_jobs": 2})
    names = [f"doc-{number}.pdf" for number in range(8)]
    service, thread = _running(config)
    try:
        for name in names:
            make_pdf(tmp_path / "inbox" / name)
            time.sleep(0.3)
        wait_for(
            lambda: all((tmp_path / "outbox" / n.replace(".pdf", ".json")).exists() for n in names),
            timeout=240,
        )
        wait_for(lambda: sum(service.engine.memory().recycles.values()) >= 2, timeout=60)

        def settled() -> list[dict[str, Any]] | None:
            """Every actor alive: one found due by the last documents may still be reloading."""
            found: list[dict[str, Any]] = service.engine.workers()  # type: ignore[attr-defined]
            return found if found and all(w["alive"] for w in found) else None

        workers = wait_for(settled, timeout=120)
    finally:
        _stop(service, thread)
    assert sorted(files_under(tmp_path / "archive")) == names
    sidecars = [
        json.loads((tmp_path / "outbox" / n.replace(".pdf", ".json")).read_text()) for n in names
    ]
    assert {(s["status"], s["execution"]["attempt"]) for s in sidecars} == {("succeeded", 1)}
    assert sum(w["recycles"] for w in workers) >= 2 and all(w["alive"] for w in workers)
    assert any(isinstance(w["memory_bytes"], int) for w in workers)  # none while reloading
    assert wait_for(lambda: not private_ray_processes(), timeout=30)


def test_a_job_that_waited_for_a_fresh_worker_is_not_taken_for_stuck() -> None:
    """The time limit runs from when the worker took the document (its first progress), as the
    supervisor counts it: a wait for a recycled worker to load is not time past the limit."""
    from types import SimpleNamespace

    from sir_convert_a_lot.service.heartbeat import OVERDUE_GRACE_SECONDS, Heartbeat
    from sir_convert_a_lot.service.snapshot import Activity, ServiceSnapshot

    now = time.monotonic()
    limit = 60.0
    waited = Activity("job_a", "a.pdf", started=now - limit - OVERDUE_GRACE_SECONDS - 30)
    waited.limit_seconds = limit
    snapshot = ServiceSnapshot(None, None, 0.0, converting=(waited,))  # type: ignore[arg-type]
    beat = Heartbeat(
        lambda: snapshot,
        engine=SimpleNamespace(silent_seconds=lambda: 0.0),
        instances=None,  # type: ignore[arg-type]
        notifier=None,  # type: ignore[arg-type]
        lease_seconds=5,
        wake=threading.Event(),
    )
    assert "past its time limit" in (beat.health_problem() or "")  # not yet in the worker
    waited.limit_from = now - 5  # the worker took it 5 s ago, after the wait
    assert beat.health_problem() is None
    waited.limit_from = now - limit - OVERDUE_GRACE_SECONDS - 1
    assert "past its time limit" in (beat.health_problem() or "")


@pytest.mark.slow
def test_the_worker_hands_freed_heap_back_to_the_system() -> None:
    """What the worker does after a document at most every TRIM_EVERY_SECONDS: heap freed in the
    middle (which free() alone keeps) goes back to the system."""
    import os

    from sir_convert_a_lot.engine import worker
    from sir_convert_a_lot.engine.transports.local import resident_bytes

    if worker._malloc_trim() is None:
        pytest.skip("not glibc: no malloc_trim")
    held = [bytes(4096) + bytes([n % 256]) for n in range(60_000)]  # about 250 MB of malloc
    keep = held[-1]  # the top of the heap stays in use: free() alone cannot shrink it
    del held
    before = resident_bytes(os.getpid()) or 0
    worker.release_freed_memory()
    after = resident_bytes(os.getpid()) or 0
    assert keep and before - after > 100 << 20
