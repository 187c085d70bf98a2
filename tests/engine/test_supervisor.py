"""The worker process as the supervisor sees it: one conversion thread, hard time limits, crashes
that cost an attempt and never the daemon."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.gpu import GpuDevice, GpuProbe
from sir_convert_a_lot.engine.interface import ConversionEngine, WorkerOverMemory
from sir_convert_a_lot.engine.policy import RunOn
from sir_convert_a_lot.engine.protocol import (
    Converted,
    Failed,
    Load,
    Probed,
    Progress,
    Ready,
    WorkerSettings,
)
from sir_convert_a_lot.engine.supervisor import Engine, WorkerCrashed, WorkerTimedOut, load_plan
from sir_convert_a_lot.engine.transports.base import Transport, TransportClosed
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import UNLOCK, copy_sample, load_config, make_pdf, wait_for
from tests.plugins.scripted_service import scripted_service, scripted_transport
from tests.plugins.scripted_worker import ScriptedWorker

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

CPU = RunOn("cpu")
NO_GPU = GpuProbe(False, None, "no usable GPU: test", "nvml_unavailable: test", "not_checked")
A_GPU = GpuProbe(True, GpuDevice(0, "Test GPU", "999.1", 80 << 30), "ok", "ok", "available")


EngineFactory = Callable[..., Engine]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineFactory]:
    config = load_config(tmp_path)
    made: list[Engine] = []

    def build(**kwargs: object) -> Engine:
        built = Engine(config, config.governance, instance="engine-test", **kwargs)  # type: ignore[arg-type]
        made.append(built)
        return built

    yield build
    for built in made:
        built.stop()


def _options(**changes: object) -> ConversionOptions:
    base = ConversionOptions(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_every_job_runs_on_the_thread_that_loaded_and_warmed_the_models(
    engine: EngineFactory, tmp_path: Path
) -> None:
    worker = engine()
    info = worker.start()
    assert info.loaded == (("pymupdf", "cpu"),)
    assert info.warm_seconds > 0
    threads = set()
    for index in range(3):
        source = make_pdf(tmp_path / f"same-thread-{index}.pdf", pages=2)
        answer = worker.convert(f"job_{index}", str(source), _options(), CPU)
        assert isinstance(answer, Converted)
        assert answer.pages == 2
        threads.add(answer.thread_id)
    assert threads == {info.thread_id}
    assert worker.starts == 1


def test_a_crashing_worker_raises_and_the_next_job_gets_a_fresh_worker(
    engine: EngineFactory, tmp_path: Path
) -> None:
    worker = engine(transport=scripted_transport(ScriptedWorker({"boom.pdf": "crash"})))
    first_pid = worker.start().pid
    boom = make_pdf(tmp_path / "boom.pdf")
    with pytest.raises(WorkerCrashed) as crashed:
        worker.convert("job_boom", str(boom), _options(), CPU, source_name="boom.pdf")
    assert crashed.value.exitcode == -9
    fine = make_pdf(tmp_path / "fine.pdf")
    answer = worker.convert("job_fine", str(fine), _options(), CPU, source_name="fine.pdf")
    assert isinstance(answer, Converted)
    assert worker.starts == 2
    assert worker.info is not None and worker.info.pid != first_pid


def test_a_conversion_past_its_time_limit_is_killed(engine: EngineFactory, tmp_path: Path) -> None:
    worker = engine(transport=scripted_transport(ScriptedWorker({"stuck.pdf": "hang"})))
    worker.start()
    stuck = make_pdf(tmp_path / "stuck.pdf")
    with pytest.raises(WorkerTimedOut) as timed_out:
        worker.convert(
            "job_stuck",
            str(stuck),
            _options(document_timeout_seconds=2),
            CPU,
            source_name="stuck.pdf",
        )
    assert timed_out.value.seconds == 2
    assert not worker.alive


def test_a_converter_exception_fails_the_job_and_keeps_the_worker(
    engine: EngineFactory, tmp_path: Path
) -> None:
    worker = engine(transport=scripted_transport(ScriptedWorker({"bug.pdf": "raise"})))
    info = worker.start()
    bug = make_pdf(tmp_path / "bug.pdf")
    answer = worker.convert("job_bug", str(bug), _options(), CPU, source_name="bug.pdf")
    assert isinstance(answer, Failed)
    assert answer.code == "conversion_internal_error"
    assert answer.details["exception"] == "RuntimeError"
    assert worker.alive and worker.info is not None and worker.info.pid == info.pid


def test_preflight_failures_come_back_with_their_codes(
    engine: EngineFactory, tmp_path: Path
) -> None:
    worker = engine()
    worker.start()
    encrypted = copy_sample("r2-user-password.pdf", tmp_path)
    answer = worker.convert("job_enc", str(encrypted), _options(), CPU)
    assert isinstance(answer, Failed) and answer.code == "pdf_encrypted"


def test_the_load_plan_follows_the_lock() -> None:
    docling = ConversionOptions()
    pymupdf = _options()
    locked = load_plan([docling, pymupdf], NO_GPU, load_config_governance(False))
    assert locked == ()
    unlocked = load_plan([docling, pymupdf], NO_GPU, UNLOCK)
    assert unlocked == (("pymupdf", "cpu"),)
    with_gpu = load_plan([docling, pymupdf], A_GPU, UNLOCK)
    assert with_gpu == (("docling", "cuda"), ("pymupdf", "cpu"))


def load_config_governance(unlocked: bool) -> Governance:
    return UNLOCK if unlocked else Governance()


def _run_service(service: Service) -> threading.Thread:
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    assert service.ready.wait(60), "the service did not become ready"
    return thread


def test_a_file_that_crashes_the_worker_every_time_fails_with_worker_crashed(
    tmp_path: Path,
) -> None:
    config = load_config(tmp_path)
    service = scripted_service(config, ScriptedWorker({"poison.pdf": "crash"}))
    thread = _run_service(service)
    try:
        make_pdf(tmp_path / "inbox" / "poison.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "poison.error.json").exists(), timeout=90)
        make_pdf(tmp_path / "inbox" / "after.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "after.json").exists(), timeout=60)
    finally:
        service.request_stop()
        thread.join(60)
    envelope = json.loads((tmp_path / "outbox" / "poison.error.json").read_text())
    assert envelope["error"]["code"] == "worker_crashed"
    assert envelope["error"]["retryable"] is True
    assert envelope["execution"]["attempt"] == config.retry.max_attempts
    assert (tmp_path / "failed" / "poison.pdf").exists()
    assert service.engine.starts == 1 + config.retry.max_attempts


def test_a_timed_out_conversion_fails_the_file_and_the_daemon_carries_on(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    quick = replace(config, defaults=replace(config.defaults, document_timeout_seconds=2))
    service = scripted_service(quick, ScriptedWorker({"slow.pdf": "hang"}))
    thread = _run_service(service)
    try:
        make_pdf(tmp_path / "inbox" / "slow.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "slow.error.json").exists(), timeout=60)
        make_pdf(tmp_path / "inbox" / "next.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "next.json").exists(), timeout=60)
    finally:
        service.request_stop()
        thread.join(60)
    error = json.loads((tmp_path / "outbox" / "slow.error.json").read_text())["error"]
    assert error["code"] == "conversion_timeout"
    assert error["retryable"] is True
    assert error["details"]["timeout_seconds"] == 2


def test_a_conversion_that_outgrows_the_memory_limit_fails_once_and_the_daemon_carries_on(
    tmp_path: Path,
) -> None:
    limit = 1024 * 1024 * 1024
    config = load_config(tmp_path, conversion={"max_worker_memory_bytes": limit})
    service = scripted_service(config, ScriptedWorker({"greedy.pdf": "bloat"}))
    thread = _run_service(service)
    try:
        make_pdf(tmp_path / "inbox" / "greedy.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "greedy.error.json").exists(), timeout=60)
        make_pdf(tmp_path / "inbox" / "modest.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "modest.json").exists(), timeout=60)
    finally:
        service.request_stop()
        thread.join(60)
    envelope = json.loads((tmp_path / "outbox" / "greedy.error.json").read_text())
    error = envelope["error"]
    assert error["code"] == "worker_crashed"
    assert error["details"]["reason"] == "memory_limit_exceeded"
    assert limit < error["details"]["worker_memory_bytes"] < limit + 512 * 1024 * 1024
    assert envelope["execution"]["attempt"] == 1  # not retried: it would only grow again
    assert (tmp_path / "failed" / "greedy.pdf").exists()


def test_stopping_mid_conversion_past_the_grace_returns_the_file_uncounted(tmp_path: Path) -> None:
    config = load_config(tmp_path, service={"stop_grace_seconds": 1})
    service = scripted_service(config, ScriptedWorker({"long.pdf": "hang"}))
    thread = _run_service(service)
    make_pdf(tmp_path / "inbox" / "long.pdf")
    wait_for(lambda: service.activity.job_id is not None, timeout=30)
    service.request_stop()
    thread.join(60)
    assert not thread.is_alive()
    assert (tmp_path / "inbox" / "long.pdf").exists()
    assert not list((tmp_path / "outbox").iterdir())
    assert not list((tmp_path / "state" / "claimed" / config.instances.name).iterdir())


# -- the supervisor over a transport of the test's own: no process, no pipe ---------------------


class ScriptedTransport:
    """A worker in memory: it answers the handshake at once; conversions answer only when the
    test puts their messages in ``inbox``."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.inbox: deque[object] = deque()
        self.sent: list[object] = []
        self.running = False
        self.memory: int | None = None

    def start(self) -> None:
        self.running = True
        self.inbox.append(Probed(pid=4242, probe=NO_GPU.to_dict(), versions={}))

    def send(self, message: object) -> None:
        if not self.running:
            raise TransportClosed("gone")
        self.sent.append(message)
        if isinstance(message, Load):
            self.inbox.append(Ready(4242, 1, message.plan, 0.0, 0.0))

    def receive(self, timeout: float) -> object | None:
        if self.inbox:
            return self.inbox.popleft()
        if not self.running:
            raise TransportClosed("gone")
        time.sleep(min(timeout, 0.01))
        return None

    def alive(self) -> bool:
        return self.running

    def silent_seconds(self) -> float:
        return 0.0

    def resident_bytes(self) -> int | None:
        return self.memory if self.running else None

    def exit_code(self, wait: float = 0.0) -> int | None:
        return None if self.running else -9

    def lost_with_node(self) -> bool:
        return False

    def kill(self) -> None:
        self.running = False

    def close(self) -> None:
        self.running = False


def _scripted(tmp_path: Path, **sections: dict[str, object]) -> tuple[Engine, ScriptedTransport]:
    made: list[ScriptedTransport] = []

    def factory(settings: WorkerSettings) -> Transport:
        made.append(ScriptedTransport(settings))
        return made[-1]

    config = load_config(tmp_path, **sections)
    engine = Engine(config, UNLOCK, instance="scripted", transport=factory)
    engine.start()
    return engine, made[-1]


def _converted(job_id: str) -> Converted:
    return Converted(job_id, f"# {job_id}", 1, "pymupdf", "cpu", False, (), {}, 1)


def test_the_engine_is_what_the_jobs_ask_for(tmp_path: Path) -> None:
    engine, _ = _scripted(tmp_path)
    as_used: ConversionEngine = engine  # mypy checks the class against the interface
    assert as_used.info is not None and as_used.info.pid == 4242


def test_answers_for_documents_in_flight_together_are_paired_by_job_id(tmp_path: Path) -> None:
    engine, transport = _scripted(tmp_path)
    seen: list[tuple[str, int, int]] = []
    engine.on_progress = lambda job_id, page, pages: seen.append((job_id, page, pages))
    engine.submit("job_a", "/a.pdf", _options(), CPU)
    engine.submit("job_b", "/b.pdf", _options(), CPU)
    transport.inbox.extend([Progress("job_b", 1, 1), _converted("job_b"), _converted("job_a")])
    assert engine.wait("job_a") == _converted("job_a")
    assert engine.wait("job_b") == _converted("job_b")
    assert seen == [("job_b", 1, 1)]
    assert engine.alive and engine.starts == 1


def test_a_deadline_kills_the_worker_and_the_other_job_in_it_is_innocent(tmp_path: Path) -> None:
    engine, _ = _scripted(tmp_path)
    engine.submit("job_slow", "/slow.pdf", _options(document_timeout_seconds=1), CPU)
    engine.submit("job_other", "/other.pdf", _options(), CPU)
    with pytest.raises(WorkerTimedOut) as timed_out:
        engine.wait("job_slow")
    assert timed_out.value.seconds == 1
    with pytest.raises(WorkerCrashed) as bystander:
        engine.wait("job_other")
    assert bystander.value.innocent
    assert not engine.alive


def test_a_lost_worker_crashes_every_job_in_it_and_the_next_gets_a_fresh_one(
    tmp_path: Path,
) -> None:
    engine, transport = _scripted(tmp_path)
    engine.submit("job_a", "/a.pdf", _options(), CPU)
    transport.kill()
    with pytest.raises(WorkerCrashed) as crashed:
        engine.wait("job_a")
    assert crashed.value.exitcode == -9 and not crashed.value.innocent
    engine.submit("job_b", "/b.pdf", _options(), CPU)
    assert engine.starts == 2


def test_a_worker_over_its_memory_limit_is_stopped(tmp_path: Path) -> None:
    limit = 1 << 30
    engine, transport = _scripted(tmp_path, conversion={"max_worker_memory_bytes": limit})
    transport.memory = limit + 1
    engine.submit("job_big", "/big.pdf", _options(), CPU)
    with pytest.raises(WorkerOverMemory) as over:
        engine.wait("job_big")
    assert (over.value.limit_bytes, over.value.rss_bytes) == (limit, limit + 1)
    assert not engine.alive
