"""The daemon's side of systemd's notify protocol, checked on a NOTIFY_SOCKET of the test's own:
READY only when it can really work, STATUS lines, WATCHDOG pings that stop when it is stuck,
STOPPING on SIGTERM, and SIGHUP reloads."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot.jobs import endings as endings_module
from sir_convert_a_lot.jobs import publish as publish_module
from sir_convert_a_lot.service import heartbeat as heartbeat_module
from sir_convert_a_lot.service.daemon import Service
from tests.daemon import Daemon
from tests.helpers import copy_sample, load_config, make_pdf, wait_for, write_config
from tests.plugins.scripted_service import scripted_service
from tests.plugins.scripted_worker import ScriptedWorker

pytestmark = pytest.mark.slow


class NotifySocket:
    """A datagram socket standing in for systemd; collects every message with its time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(at, m) for at, m in list(self.messages) if key in m]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def _env(notify: NotifySocket, watchdog_seconds: float = 1.0) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(int(watchdog_seconds * 1e6))}


def test_ready_status_watchdog_and_stopping_over_a_real_run(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_config(tmp_path, watch={"stability_seconds": 0.5})
    notified = Daemon(config, env=_env(notify, watchdog_seconds=2.0), quick=True)
    with notified.start(wait_ready=False) as daemon:
        wait_for(lambda: notify.with_key("READY"), timeout=60)
        _ready_at, ready = notify.with_key("READY")[0]
        # READY comes after the worker is warm and the start-up scan is done
        events = [e["event"] for e in daemon.events()]
        assert events.index("worker_ready") < events.index("daemon_ready")
        assert ready["READY"] == "1"
        assert ready["STATUS"] == "idle"
        for index in range(3):
            copy_sample("multi_page.pdf", tmp_path / "inbox", f"report-{index}.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "report-2.json").exists(), timeout=60)
        statuses = [m["STATUS"] for _at, m in notify.with_key("STATUS")]
        assert any(s.startswith("converting report-") and "(page " in s for s in statuses)
        assert any("queued" in s for s in statuses)
        wait_for(lambda: notify.with_key("STATUS")[-1][1]["STATUS"] == "idle", timeout=10)
        pings = [at for at, _m in notify.with_key("WATCHDOG")]
        assert len(pings) >= 3
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 2.0  # systemd's deadline is WATCHDOG_USEC; we aim for half of it
        assert daemon.terminate() == 0
    stopping = notify.with_key("STOPPING")
    assert stopping and stopping[0][1]["STOPPING"] == "1"
    assert not [at for at, _m in notify.with_key("READY") if at > stopping[0][0]]


def test_sighup_applies_a_live_change_and_refuses_bad_or_restart_only_ones(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_config(tmp_path)
    with Daemon(config, env=_env(notify, watchdog_seconds=10), quick=True).start() as daemon:
        assert daemon.process is not None
        write_config(tmp_path, watch={"stability_seconds": 0.3}, conversion={"normalize": "none"})
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_event("config_reloaded")[0]
        assert reloaded["changed"] == ["conversion.normalize", "watch.stability_seconds"]
        wait_for(lambda: notify.with_key("RELOADING"), timeout=10)
        reloading_at, reloading = notify.with_key("RELOADING")[0]
        assert int(reloading["MONOTONIC_USEC"]) > 0
        wait_for(lambda: [at for at, _m in notify.with_key("READY") if at > reloading_at])

        config.write_text(config.read_text() + "\n[watch.typo]\n", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        refused = daemon.wait_event("config_reload_refused")[0]
        assert "watch" in refused["reason"]

        write_config(tmp_path, paths={"outbox": str(tmp_path / "elsewhere")})
        daemon.process.send_signal(signal.SIGHUP)
        refused = daemon.wait_event("config_reload_refused", count=2)[1]
        assert refused["keys"] == ["paths.outbox"]

        # still serving, with the old folders and the reloaded options
        make_pdf(tmp_path / "inbox" / "after-reload.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "after-reload.json").exists(), timeout=30)
        sidecar = json.loads((tmp_path / "outbox" / "after-reload.json").read_text())
        assert sidecar["result"]["conversion_metadata"]["normalize"] == "none"
        assert daemon.terminate() == 0


def test_sighup_refuses_a_config_that_became_group_writable_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start() as daemon:
        assert daemon.process is not None
        write_config(tmp_path, conversion={"normalize": "none"})
        config.chmod(0o664)
        daemon.process.send_signal(signal.SIGHUP)
        refused = daemon.wait_event("config_reload_refused")[0]
        assert "writable by group or others" in refused["reason"]
        assert f"chmod go-w {config}" in refused["reason"]
        assert refused["effect"] == "the old config stays"

        make_pdf(tmp_path / "inbox" / "after-refusal.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "after-refusal.json").exists(), timeout=30)
        sidecar = json.loads((tmp_path / "outbox" / "after-refusal.json").read_text())
        assert sidecar["result"]["conversion_metadata"]["normalize"] == "standard"

        config.chmod(0o644)  # fixed: the same file now reloads
        daemon.process.send_signal(signal.SIGHUP)
        assert daemon.wait_event("config_reloaded")[0]["changed"] == ["conversion.normalize"]
        assert daemon.terminate() == 0


def _service_in_thread(service: Service) -> threading.Thread:
    thread = threading.Thread(target=lambda: setattr(service, "exit_code", service.run()))
    thread.start()
    assert service.ready.wait(60)
    return thread


def test_watchdog_pings_stop_while_a_job_is_stuck_past_its_limit(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(notify, watchdog_seconds=0.5).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(heartbeat_module, "OVERDUE_GRACE_SECONDS", 0.5)
    release = threading.Event()
    real_write = publish_module.write_outputs  # the function runner calls by that name

    def hung_outbox(*args: object, **kwargs: object) -> object:
        release.wait(30)  # a publish stuck on a hung network mount
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(endings_module, "write_outputs", hung_outbox)
    config = load_config(tmp_path)
    config = replace(config, defaults=replace(config.defaults, document_timeout_seconds=1))
    service = Service(config)
    thread = _service_in_thread(service)
    try:
        wait_for(lambda: len(notify.with_key("WATCHDOG")) >= 2, timeout=10)
        make_pdf(tmp_path / "inbox" / "stuck.pdf")
        wait_for(lambda: service.heartbeat.health_problem() is not None, timeout=30)
        assert "past its time limit" in (service.heartbeat.health_problem() or "")
        stuck_since = time.monotonic()
        time.sleep(1.5)
        assert not [at for at, _m in notify.with_key("WATCHDOG") if at > stuck_since + 0.3]
        release.set()
        wait_for(lambda: (tmp_path / "outbox" / "stuck.json").exists(), timeout=30)
        resumed = time.monotonic()
        wait_for(lambda: [at for at, _m in notify.with_key("WATCHDOG") if at > resumed])
    finally:
        release.set()
        service.request_stop()
        thread.join(60)


def test_watchdog_pings_stop_and_the_daemon_exits_when_the_watcher_dies(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(notify, watchdog_seconds=0.5).items():
        monkeypatch.setenv(key, value)
    service = Service(load_config(tmp_path))
    thread = _service_in_thread(service)
    wait_for(lambda: len(notify.with_key("WATCHDOG")) >= 2, timeout=10)
    assert service.watcher is not None
    service.watcher.observer.stop()
    died = time.monotonic()
    thread.join(60)
    assert service.exit_code == 1  # type: ignore[attr-defined]
    late = [at for at, _m in notify.with_key("WATCHDOG") if at > died + 0.5]
    assert not late
    assert notify.with_key("STOPPING")


def test_a_clean_stop_logs_no_watchdog_alarm(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop ends the watcher first; a heartbeat between that and its own end saw "the inbox
    watcher is not running" and logged an error that promised a restart: a false alarm in
    ``journalctl -p warning`` on half of the clean stops."""
    for key, value in _env(notify, watchdog_seconds=0.5).items():
        monkeypatch.setenv(key, value)
    service = Service(load_config(tmp_path))
    real_stop = service.engine.stop

    def slow_stop() -> None:
        time.sleep(1.0)  # a worker taking a moment to end: the heartbeat beats meanwhile
        real_stop()

    monkeypatch.setattr(service.engine, "stop", slow_stop)
    thread = _service_in_thread(service)
    wait_for(lambda: len(notify.with_key("WATCHDOG")) >= 2, timeout=10)
    with capture_logs() as logged:
        service.request_stop()
        thread.join(60)
    assert service.exit_code == 0  # type: ignore[attr-defined]
    said = [entry for entry in logged if entry["event"] == "watchdog_withheld"]
    assert said, "the stopped watcher should still be noted, quietly"
    assert {entry["log_level"] for entry in said} == {"info"}
    assert all("restart" not in entry["effect"] for entry in said)
    alarms = [entry for entry in logged if entry["log_level"] in ("warning", "error")]
    assert alarms == []


def test_sigterm_mid_job_returns_it_uncounted_and_a_restart_converts_it_once(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    config = load_config(tmp_path, service={"stop_grace_seconds": 1})
    service = scripted_service(config, ScriptedWorker({"long.pdf": "hang"}))
    thread = _service_in_thread(service)
    make_pdf(tmp_path / "inbox" / "long.pdf", pages=2)
    wait_for(lambda: service.activity.job_id is not None, timeout=30)
    service.request_stop()
    thread.join(60)
    assert notify.with_key("STOPPING")
    assert (tmp_path / "inbox" / "long.pdf").exists()
    assert not list((tmp_path / "outbox").iterdir())
    again = Service(config)
    thread = _service_in_thread(again)
    try:
        wait_for(lambda: (tmp_path / "outbox" / "long.json").exists(), timeout=30)
    finally:
        again.request_stop()
        thread.join(60)
    sidecar = json.loads((tmp_path / "outbox" / "long.json").read_text())
    assert sidecar["execution"]["attempt"] == 1
