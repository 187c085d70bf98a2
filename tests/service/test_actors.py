"""``sir-convert status`` with the Ray engine: the instance says engine ray and lists each actor
with its host, node, device and pid, and a job converting appears under the actor it is in; a
local engine's instance reads as before. Runs a private Ray with two CPU actors in-process."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sir_convert_a_lot.engine.pool import EnginePool
from sir_convert_a_lot.engine.ray_reaper import marked_processes
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.service.actors import ActorView, lease_actors
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import load_config, make_pdf, wait_for
from tests.plugins.scripted_service import scripted_service
from tests.plugins.scripted_worker import ScriptedWorker

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

RAY_CPUS = {
    "kind": "ray",
    "ray_address": "local",
    "workers": 2,
    "gpus_per_worker": 0,
    "cpus_per_worker": 1,
}


def processes_of(mark: str) -> list[int]:
    """The processes of the one private Ray that carries ``mark`` (not another test's)."""
    return marked_processes(mark)


def _status(config_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """What ``status`` printed; not what went before it (an in-process Service's log lines,
    printed to stdout once an earlier test of this process has set logging up that way)."""
    capsys.readouterr()
    assert main(["--config", str(config_path), "status", *extra]) == 0
    return capsys.readouterr().out


def _actor_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("actor ")]


def test_status_lists_each_actor_and_the_job_running_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    config = load_config(tmp_path, engine=RAY_CPUS)
    slow = replace(config, defaults=replace(config.defaults, document_timeout_seconds=120))
    service = scripted_service(slow, ScriptedWorker({"slow.pdf": "hang"}))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    mark = ""
    try:
        assert service.ready.wait(120), "the service did not become ready"
        pool = service.engine
        assert isinstance(pool, EnginePool) and pool.cluster is not None
        mark = pool.cluster.mark
        make_pdf(tmp_path / "inbox" / "slow.pdf", pages=3)
        holder = wait_for(lambda: next((w for w in pool.workers() if w["jobs"]), None), 60)
        text = wait_for(lambda: _shown(tmp_path, capsys), timeout=30)
        data = json.loads(_status(tmp_path / "config.toml", capsys, "--json"))
    finally:
        service.request_stop()
        thread.join(60)
    assert not thread.is_alive()
    assert mark and wait_for(lambda: not processes_of(mark), timeout=30), processes_of(mark)

    host = os.uname().nodename
    lines = _actor_lines(text)
    assert len(lines) == 2, text
    assert "engine ray: 2 actors" in text
    for line in lines:
        assert f"{host} (node " in line and ", CPU, pid " in line and ", alive, 0 restarts" in line
    busy = [line for line in lines if "converting slow.pdf" in line]
    assert len(busy) == 1 and busy[0].startswith(f"actor {holder['actor']}: ")
    assert f"pid {holder['pid']}" in busy[0]
    assert next(line for line in lines if line not in busy).endswith(", idle")

    (instance,) = data["instances"]
    assert instance["engine"] == "ray"
    actors = instance["actors"]
    assert [a["actor"] for a in actors] == [0, 1]
    assert all(a["host"] == host and a["alive"] and a["gpus"] == [] for a in actors)
    assert len({a["pid"] for a in actors}) == 2 and all(a["node_id"] for a in actors)
    (job,) = actors[holder["actor"]]["jobs"]
    assert job["source"] == "slow.pdf" and job["job_id"] == holder["jobs"][0]


def _shown(root: Path, capsys: pytest.CaptureFixture[str]) -> str | None:
    """The status text once the lease shows the job under an actor, with its pid."""
    text = _status(root / "config.toml", capsys)
    lines = _actor_lines(text)
    if len(lines) == 2 and any("converting slow.pdf" in line for line in lines):
        return text if "pid None" not in text else None
    return None


def test_a_local_engine_instance_has_no_engine_or_actors_in_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(tmp_path)
    service = Service(config)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        assert service.ready.wait(60)
        assert "engine" not in service.heartbeat.status()
        data = wait_for(lambda: _with_instance(tmp_path, capsys), timeout=30)
        text = _status(tmp_path / "config.toml", capsys)
    finally:
        service.request_stop()
        thread.join(60)
    (instance,) = data["instances"]
    assert "engine" not in instance and "actors" not in instance
    assert "engine ray" not in text and not _actor_lines(text)


def _with_instance(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object] | None:
    data: dict[str, object] = json.loads(_status(root / "config.toml", capsys, "--json"))
    return data if data["instances"] else None


def test_an_actor_that_does_not_answer_delays_no_heartbeat() -> None:
    # workers() may wait 5 s on an actor that does not say where it runs; the heartbeat's
    # status takes the last list it has instead of waiting.
    release = threading.Event()
    calls: list[float] = []

    def workers() -> list[dict[str, object]]:
        calls.append(time.monotonic())
        if len(calls) > 1:
            release.wait(10)
        return [{"actor": 0, "alive": True, "host": "node-a", "pid": 7, "jobs": []}]

    view = ActorView(workers, wait_seconds=0.2)
    first = view.snapshot()
    try:
        began = time.monotonic()
        assert view.snapshot() == first  # as last seen
        assert view.snapshot() == first  # still one question in flight, not a second
        assert time.monotonic() - began < 2
        assert len(calls) == 2
    finally:
        release.set()
    assert lease_actors(first, [])[0]["host"] == "node-a"
