"""The service's own wiring: what a reload (SIGHUP) reaches, and its stop steps."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any, cast

from structlog.testing import capture_logs

from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.interface import ConversionEngine, ProgressSink, WorkerInfo
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import load_config, write_config


class _IdleEngine:
    """Just enough of an engine for a service that is built but never started."""

    kind = "local"
    info = None
    probe = None
    starts = 0

    def max_pages_in_flight(self, per_worker: int) -> int:
        return 2 * per_worker  # two workers: the pacing scales with them

    def silent_seconds(self) -> float:
        return 0.0

    def memory(self) -> Any:
        from sir_convert_a_lot.engine.interface import WorkerMemory

        return WorkerMemory()


def _service(tmp_path: Path, **sections: dict[str, Any]) -> Service:
    def engine(_on_progress: ProgressSink) -> ConversionEngine:
        return cast(ConversionEngine, _IdleEngine())

    return Service(load_config(tmp_path, **sections), engine_factory=engine)


def test_a_reload_reaches_every_part_that_reads_the_config(tmp_path: Path) -> None:
    service = _service(tmp_path, gpu={"max_pages_in_flight": 8})
    # the engine's limit, given at construction
    assert service.dispatcher.max_pages_in_flight() == 16
    write_config(
        tmp_path,
        gpu={"max_pages_in_flight": 3},
        watch={"stability_seconds": 0.3},
        retry={"max_attempts": 5},
        hooks={"timeout_seconds": 5},
    )
    service._reload()
    new = service.config
    assert new.gpu.max_pages_in_flight == 3
    parts = service.reconfigurable
    assert [part.config for part in parts] == [new] * len(parts)  # type: ignore[attr-defined]
    assert service.hooks in parts and service.hooks.section.timeout_seconds == 5
    assert service.runner.config.retry.max_attempts == 5
    assert service.intake.files.window == 0.3
    assert service.dispatcher.max_pages_in_flight() == 6
    assert service.threads.max_pages_in_flight() == 6


def test_a_refused_reload_changes_no_part(tmp_path: Path) -> None:
    service = _service(tmp_path)
    old = service.config
    write_config(
        tmp_path, watch={"stability_seconds": 0.3}, paths={"outbox": str(tmp_path / "elsewhere")}
    )
    service._reload()  # the outbox needs a restart: the whole reload is refused
    assert service.config is old
    assert all(part.config is old for part in service.reconfigurable)  # type: ignore[attr-defined]
    assert service.intake.files.window == old.watch.stability_seconds


def test_a_reload_may_change_the_accepted_formats_but_not_to_an_unknown_one(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    write_config(tmp_path, conversion={"formats": ["pdf", "docx"]})
    service._reload()
    narrowed = service.config
    assert narrowed.defaults.accepted_formats == ("pdf", "docx")
    write_config(tmp_path, conversion={"formats": ["pdf", "pages"]})
    service._reload()  # refused: the config before it stays
    assert service.config is narrowed
    assert all(part.config is narrowed for part in service.reconfigurable)  # type: ignore[attr-defined]


def test_the_heartbeat_shows_what_the_main_thread_published_and_is_woken_by_a_change(
    tmp_path: Path,
) -> None:
    """The heartbeat's thread never reads the main thread's lists while they change: it shows
    the view the main thread last published, which wakes it when something differs."""
    service = _service(tmp_path)
    job = Job("job_a", "late.pdf", None, service.config.defaults, 0.0, 1, 1, "test")
    service.deferrals.add(Outcome(job.job_id, Status.DEFERRED, "output_unwritable", job=job))
    assert service.heartbeat.status()["deferred"] == []  # not published yet
    service._heartbeat_wake.clear()
    service._publish()
    assert service._heartbeat_wake.is_set()
    [deferred] = service.heartbeat.status()["deferred"]
    assert deferred["source"] == "late.pdf" and deferred["why"] == "output_unwritable"
    assert 58 <= deferred["retry_in_seconds"] <= 60
    service._heartbeat_wake.clear()
    service._publish()  # nothing changed: no wake, no extra lease write
    assert not service._heartbeat_wake.is_set()


def test_the_snapshot_says_at_once_that_the_service_stops(tmp_path: Path) -> None:
    """Stopping is shown from the moment it is asked, not from the main thread's next turn."""
    service = _service(tmp_path)
    assert service.heartbeat.status()["state"] == "starting"
    service.request_stop()
    snap = service.snapshot()
    assert snap.stopping and not snap.ready and snap.in_flight == 0
    assert service.heartbeat.status(snap)["state"] == "stopping"


class _EngineThatFailsToStop(_IdleEngine):
    """An engine that starts, is never sent a document, and fails its stop the way issue 26's
    did (EBADF out of a worker's pipe)."""

    alive = True

    def start(self) -> WorkerInfo:
        probe = GpuProbe(False, None, "no usable GPU: test", "not checked", "not checked")
        return WorkerInfo(os.getpid(), 0, probe, {}, (("pymupdf", "cpu"),), 0.0, 0.0)

    def abort(self) -> None:
        pass

    def stop(self) -> None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


def test_a_stop_step_that_fails_leaves_the_steps_after_it_done_and_the_exit_code_1(
    tmp_path: Path,
) -> None:
    """Whatever one part raises while the daemon stops, the parts after it still stop, in their
    order: the heartbeat ends, the stop is noted and the lease removed (no other instance waits
    for it to go stale), and the exit code says that something went wrong."""
    config = load_config(tmp_path)
    engine = _EngineThatFailsToStop()
    service = Service(config, engine_factory=lambda _on_progress: cast(ConversionEngine, engine))
    codes: list[int] = []
    with capture_logs() as logged:
        running = threading.Thread(target=lambda: codes.append(service.run()), daemon=True)
        running.start()
        assert service.ready.wait(30)
        service.request_stop()
        running.join(30)
    assert codes == [1]
    events = [e["event"] for e in logged]
    assert events.index("daemon_stopping") < events.index("stop_step_failed")
    assert events.index("stop_step_failed") < events.index("daemon_stopped")
    [failed] = [e for e in logged if e["event"] == "stop_step_failed"]
    assert failed["step"] == "engine" and "Bad file descriptor" in failed["error"]
    instances = config.paths.state / "instances"
    assert not (instances / f"{config.instances.name}.lease").exists()
    assert (instances / f"{config.instances.name}.stopped").exists()
    assert service.heartbeat._thread is not None and not service.heartbeat._thread.is_alive()
