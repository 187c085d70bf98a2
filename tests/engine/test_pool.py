"""The Ray engine (``engine.kind = "ray"``) on a private one-machine Ray with two CPU actors,
under the test unlock: documents convert on the actors and say so, an actor that dies takes the
crash path, a hung document times out inside its actor, a daemon killed mid-drain converts
every file exactly once after its restart and leaves no Ray process behind, and every port the
private Ray opens listens on the loopback address only."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.daemon import Daemon
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.pool import EnginePool
from sir_convert_a_lot.engine.ray_cluster import MARK_VARIABLE
from sir_convert_a_lot.engine.ray_reaper import marked_processes, reap, with_descendants
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import Sink, load_config, make_pdf, wait_for, write_config
from tests.plugins.scripted_service import scripted_service
from tests.plugins.scripted_worker import ScriptedWorker
from tests.private_ray import my_private_rays, private_ray_processes, processes_of

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

RAY = {"kind": "ray", "ray_address": "local", "workers": 2, "gpus_per_worker": 0}
RAY_CPUS = {**RAY, "cpus_per_worker": 1}
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture(autouse=True)
def no_ray_left_behind() -> Iterator[None]:
    yield
    assert wait_for(lambda: not private_ray_processes(), timeout=30), private_ray_processes()


def _running(
    config: Config, script: ScriptedWorker | None = None
) -> tuple[Service, threading.Thread]:
    service = Service(config) if script is None else scripted_service(config, script)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    assert service.ready.wait(120), "the service did not become ready"
    return service, thread


def _stop(service: Service, thread: threading.Thread) -> None:
    service.request_stop()
    thread.join(60)
    assert not thread.is_alive()


def _sidecar(tmp_path: Path, stem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "outbox" / f"{stem}.json").read_text())
    return data


def test_documents_convert_on_two_actors_and_the_sidecar_says_ray(tmp_path: Path) -> None:
    service, thread = _running(load_config(tmp_path, engine=RAY_CPUS))
    try:
        pool = service.engine
        assert isinstance(pool, EnginePool)
        workers = pool.workers()
        assert len(workers) == 2 and all(w["alive"] for w in workers)
        assert all(w["host"] == os.uname().nodename for w in workers)
        assert len({w["pid"] for w in workers}) == 2  # two actor processes
        assert os.getpid() not in {w["pid"] for w in workers}
        names = [f"doc-{i}" for i in range(6)]
        for name in names:
            make_pdf(tmp_path / "inbox" / f"{name}.pdf", pages=2)
        wait_for(lambda: all((tmp_path / "outbox" / f"{n}.json").exists() for n in names), 120)
    finally:
        _stop(service, thread)
    for name in names:
        sidecar = _sidecar(tmp_path, name)
        assert sidecar["status"] == "succeeded"
        assert sidecar["execution"]["engine"] == "ray"
        assert sidecar["execution"]["host"] == os.uname().nodename
        assert sidecar["result"]["conversion_metadata"]["acceleration_used"] == "cpu"
        assert sidecar["source"]["pages"] == 2
        assert (tmp_path / "outbox" / f"{name}.md").read_text().strip()
    # Claims were paced over both actors: twice one worker's pages in flight.
    assert service.max_pages_in_flight() == 2 * service.config.gpu.max_pages_in_flight_in_effect


def test_an_actor_that_dies_on_a_file_takes_the_crash_path(tmp_path: Path) -> None:
    config = load_config(tmp_path, engine=RAY_CPUS)
    service, thread = _running(config, ScriptedWorker({"poison.pdf": "crash"}))
    try:
        make_pdf(tmp_path / "inbox" / "poison.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "poison.error.json").exists(), timeout=180)
        make_pdf(tmp_path / "inbox" / "after.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "after.json").exists(), timeout=120)
        starts = service.engine.starts
    finally:
        _stop(service, thread)
    envelope = json.loads((tmp_path / "outbox" / "poison.error.json").read_text())
    assert envelope["error"]["code"] == "worker_crashed"
    assert envelope["error"]["retryable"] is True
    assert envelope["execution"]["attempt"] == config.retry.max_attempts
    assert envelope["execution"]["engine"] == "ray"
    assert (tmp_path / "failed" / "poison.pdf").exists()
    # two actors at start, and a fresh actor after each crash
    assert starts >= 2 + config.retry.max_attempts - 1


def test_an_actor_killed_mid_job_costs_one_attempt_and_the_job_goes_on(tmp_path: Path) -> None:
    config = load_config(tmp_path, engine=RAY_CPUS)
    quick = replace(config, defaults=replace(config.defaults, document_timeout_seconds=5))
    service, thread = _running(quick, ScriptedWorker({"stuck.pdf": "hang"}))
    try:
        pool = service.engine
        assert isinstance(pool, EnginePool)
        make_pdf(tmp_path / "inbox" / "stuck.pdf")
        holding = wait_for(lambda: next((w for w in pool.workers() if w["jobs"]), None), timeout=60)
        os.kill(int(holding["pid"]), signal.SIGKILL)  # the actor's process, from outside
        wait_for(lambda: (tmp_path / "outbox" / "stuck.error.json").exists(), timeout=120)
        make_pdf(tmp_path / "inbox" / "next.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "next.json").exists(), timeout=120)
        restarted = pool.workers()[holding["actor"]]
    finally:
        _stop(service, thread)
    envelope = json.loads((tmp_path / "outbox" / "stuck.error.json").read_text())
    # The kill cost attempt 1; attempt 2 hung in a live actor until its own limit.
    assert envelope["error"]["code"] == "conversion_timeout"
    assert envelope["execution"]["attempt"] == 2
    # The killed actor was replaced by a fresh one when a document went its way.
    assert restarted["alive"] and restarted["pid"] != holding["pid"]


def test_a_document_that_hangs_times_out_inside_its_actor(tmp_path: Path) -> None:
    config = load_config(tmp_path, engine=RAY_CPUS)
    quick = replace(config, defaults=replace(config.defaults, document_timeout_seconds=3))
    service, thread = _running(quick, ScriptedWorker({"slow.pdf": "hang"}))
    try:
        make_pdf(tmp_path / "inbox" / "slow.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "slow.error.json").exists(), timeout=120)
        make_pdf(tmp_path / "inbox" / "next.pdf")
        wait_for(lambda: (tmp_path / "outbox" / "next.json").exists(), timeout=120)
    finally:
        _stop(service, thread)
    error = json.loads((tmp_path / "outbox" / "slow.error.json").read_text())["error"]
    assert error["code"] == "conversion_timeout"
    assert error["details"]["timeout_seconds"] == 3
    assert _sidecar(tmp_path, "next")["execution"]["engine"] == "ray"


def test_a_daemon_killed_mid_drain_converts_each_file_once_and_leaves_no_ray(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, engine=RAY_CPUS)
    names = [f"file-{i:02d}" for i in range(12)]
    daemon = Daemon(config).start(timeout=120)
    try:
        for name in names:
            make_pdf(tmp_path / "inbox" / f"{name}.pdf", pages=3)
        daemon.wait_event("job_succeeded", timeout=120)
        [ray] = my_private_rays()
        assert len(processes_of(ray)) > 1, "the private Ray should be running"
    finally:
        daemon.kill()
    # The reaper takes the whole private Ray down with the daemon, its agents included.
    assert wait_for(lambda: not private_ray_processes(), timeout=30), private_ray_processes()
    assert not Path(ray.folder).exists()
    with Daemon(config).start(timeout=120) as again:
        wait_for(lambda: all((tmp_path / "outbox" / f"{n}.json").exists() for n in names), 180)
        time.sleep(1)
        # SIGTERM is still the daemon's graceful stop with a Ray inside it (Ray's own handler
        # would exit at once with code 15).
        assert again.terminate() == 0
        again.wait_event("daemon_stopped", timeout=10)
    outputs = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert outputs == sorted([f"{n}.json" for n in names] + [f"{n}.md" for n in names])
    assert sorted(p.name for p in (tmp_path / "archive").rglob("*.pdf")) == sorted(
        f"{n}.pdf" for n in names
    )
    assert not list((tmp_path / "inbox").glob("*.pdf"))


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """Every listening TCP socket of this network namespace: inode -> (address, port), read
    from the kernel's tables (IPv4 and IPv6) rather than from ``ss``, which a host may lack."""
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                hex_address, hex_port = fields[1].split(":")
                # The kernel prints the address as 32-bit words in the host's byte order.
                raw = b"".join(
                    int(hex_address[i : i + 8], 16).to_bytes(4, sys.byteorder)
                    for i in range(0, len(hex_address), 8)
                )
                address = ipaddress.ip_address(raw)
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped  # gRPC's IPv6 socket bound to 127.0.0.1
                found[int(fields[9])] = (str(address), int(hex_port, 16))
    return found


def _listening_by_process(pids: set[int]) -> dict[int, list[tuple[str, int]]]:
    """The listening TCP sockets each of ``pids`` holds, by the socket inodes of its open
    descriptors."""
    listening = _listening_sockets()
    held: dict[int, list[tuple[str, int]]] = {}
    for pid in pids:
        inodes = set()
        with contextlib.suppress(OSError):  # the process ended
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):  # the descriptor closed while we looked
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(int(target[len("socket:[") : -1]))
        held[pid] = sorted(listening[inode] for inode in inodes if inode in listening)
    return held


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@pytest.mark.slow
def test_every_port_of_a_private_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    # The daemon's process holds the driver's port; what it listened on before is not Ray's.
    daemon = os.getpid()
    before = set(_listening_by_process({daemon})[daemon])
    service, thread = _running(load_config(tmp_path, engine=RAY_CPUS))
    try:
        pool = service.engine
        assert isinstance(pool, EnginePool)
        actors = {int(w["pid"]) for w in pool.workers()}
        assert len(actors) == 2 and pool.cluster is not None
        mark = pool.cluster.mark  # this Ray's, not another private Ray's on the host

        def every_part_listens() -> dict[int, tuple[str, list[tuple[str, int]]]] | None:
            """pid -> (name, sockets) of every Ray process that listens, once the GCS, the
            raylet, the runtime-env agent, both actors and the driver all do."""
            ray = set(with_descendants(marked_processes(mark))) | {daemon}
            held = _listening_by_process(ray)
            held[daemon] = [s for s in held[daemon] if s not in before]
            listening = {pid: (_process_name(pid), s) for pid, s in held.items() if s}
            names = {name for name, _ in listening.values()}
            parts = {"gcs_server", "raylet", "ray::RuntimeEnv"}
            up = parts <= names and actors | {daemon} <= listening.keys()
            return listening if up else None

        # The agents start beside the actors: wait until every expected part listens.
        listening = wait_for(every_part_listens, timeout=60)
    finally:
        _stop(service, thread)
    beyond = {
        f"{name} (pid {pid})": [f"[{a}]:{port}" for a, port in sockets if a not in LOOPBACK]
        for pid, (name, sockets) in listening.items()
    }
    assert {who: found for who, found in beyond.items() if found} == {}, listening
    # Nothing that listened outlives the daemon's stop, the agents (unmarked) included.
    assert wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in listening if pid != daemon), 30
    )


def test_ray_s_one_machine_mode_holds_only_while_a_private_ray_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray
    from ray._private import services

    from sir_convert_a_lot.engine.ray_cluster import _one_machine

    constants = ray._private.ray_constants
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")  # an operator's, say
    monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", True)
    with _one_machine(ray):
        # Ray keeps the address it is given instead of swapping in the host's own.
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # for Ray's processes
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
    assert constants.ENABLE_RAY_CLUSTER is True
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    with _one_machine(ray):
        pass
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


@pytest.fixture
def two_node_cluster() -> Iterator[Any]:
    """A Ray head with no CPUs and two worker nodes of one CPU each, all on this machine; every
    process it started is killed afterwards (they carry a mark of their own)."""
    from ray.cluster_utils import Cluster

    mark = f"test-{os.getpid()}-{time.monotonic_ns()}"
    folder = tempfile.mkdtemp(prefix="sca-t-")  # short: Ray's socket paths live under it
    default_folder = Path(tempfile.gettempdir()) / "ray"  # Ray notes the newest cluster there
    had_default_folder = default_folder.exists()
    default_folder.mkdir(exist_ok=True)
    cluster = None
    os.environ[MARK_VARIABLE] = mark
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, "temp_dir": folder},
        )
        for _ in range(2):
            cluster.add_node(num_cpus=1, temp_dir=folder)
        cluster.sca_mark, cluster.sca_folder = mark, folder  # for nodes added later
        os.environ.pop(MARK_VARIABLE, None)
        yield cluster
    finally:
        os.environ.pop(MARK_VARIABLE, None)
        if cluster is not None:
            cluster.shutdown()
        reap(mark, folder, frozenset({os.getpid()}))
        if not had_default_folder:
            shutil.rmtree(default_folder, ignore_errors=True)


def _add_node(cluster: Any) -> None:
    """One more one-CPU node, carrying the fixture's mark so that it is reaped too."""
    os.environ[MARK_VARIABLE] = cluster.sca_mark
    try:
        cluster.add_node(num_cpus=1, temp_dir=cluster.sca_folder)
    finally:
        os.environ.pop(MARK_VARIABLE, None)


def test_a_lost_node_s_job_is_converted_once_elsewhere_and_its_actor_returns_with_it(
    tmp_path: Path, two_node_cluster: Any
) -> None:
    engine = {**RAY_CPUS, "ray_address": two_node_cluster.address}
    service, thread = _running(
        load_config(tmp_path, engine=engine), ScriptedWorker({"long.pdf": "slow"})
    )
    try:
        pool = service.engine
        assert isinstance(pool, EnginePool)
        assert len({w["node_id"] for w in pool.workers()}) == 2  # one actor per node
        make_pdf(tmp_path / "inbox" / "long.pdf")
        holding = wait_for(lambda: next((w for w in pool.workers() if w["jobs"]), None), timeout=60)
        node = next(n for n in two_node_cluster.worker_nodes if n.node_id == holding["node_id"])
        two_node_cluster.remove_node(node)
        wait_for(lambda: (tmp_path / "outbox" / "long.json").exists(), timeout=120)
        survivors = {w["node_id"] for w in pool.workers() if w["alive"]}
        # The node comes back: the gone actor is revived there, in the background.
        _add_node(two_node_cluster)
        make_pdf(tmp_path / "inbox" / "after.pdf")
        wait_for(lambda: sum(w["alive"] for w in pool.workers()) == 2, timeout=120)
    finally:
        _stop(service, thread)
    sidecar = _sidecar(tmp_path, "long")
    assert sidecar["execution"]["attempt"] == 1  # the node's loss did not count against it
    assert holding["node_id"] not in survivors
    long = [p.name for p in (tmp_path / "outbox").iterdir() if p.name.startswith("long")]
    assert sorted(long) == ["long.json", "long.md"]
    assert [o.job_id for o in service.outcomes].count(sidecar["job_id"]) == 1


def test_an_actor_takes_its_host_s_gpu_lock_before_loading_and_a_second_is_refused(
    tmp_path: Path,
) -> None:
    from sir_convert_a_lot.engine import worker
    from sir_convert_a_lot.engine.protocol import WorkerSettings
    from sir_convert_a_lot.errors import JobFailure

    settings = WorkerSettings(
        device_index=0,
        models_path="",
        max_file_bytes=1 << 20,
        max_pages=10,
        host_gpu=3,  # Ray gave it the host's GPU 3, which it sees as cuda:0
        lock_instance="pool-a",
        lock_folder=str(tmp_path),
    )
    first = worker._Worker(Sink(), settings)
    first._lock_device((("pymupdf", "cpu"),))
    assert not (tmp_path / "gpu3.lock").exists()  # nothing on the GPU: no lock taken
    first._lock_device((("docling", "cuda"),))
    holder = json.loads((tmp_path / "gpu3.lock").read_text())
    assert holder["instance"] == "pool-a" and holder["pid"] == os.getpid()
    second = worker._Worker(Sink(), replace(settings, lock_instance="pool-b"))
    with pytest.raises(JobFailure) as refused:
        second._lock_device((("docling", "cuda"),))
    assert refused.value.details["reason"] == "device_busy"
    assert "GPU 3" in refused.value.message and "pool-a" in refused.value.message
    assert first.device_lock is not None
    first.device_lock.release()


def test_auto_with_no_cluster_or_a_stale_one_fails_the_start_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sir_convert_a_lot.config import EngineSection
    from sir_convert_a_lot.engine.interface import EngineStartError
    from sir_convert_a_lot.engine.ray_cluster import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    auto = EngineSection(kind="ray", ray_address="auto")
    started = time.monotonic()
    with pytest.raises(EngineStartError, match="no Ray cluster runs on this host") as none:
        connect(auto)
    assert none.value.reason == "ray_unreachable"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")  # a head long gone
    with pytest.raises(EngineStartError, match="'auto'") as stale:
        connect(auto)
    assert stale.value.reason == "ray_unreachable"
    assert time.monotonic() - started < 15  # Ray alone retries for minutes


def test_an_actor_converts_a_docx_from_its_own_copy_of_the_file(tmp_path: Path) -> None:
    """The worker reads a file's format from the name it is sent, never from where the bytes
    lie (the actor's copy, which keeps the suffix too), so an actor converts every format. A
    DOCX runs no model: no device, whatever the lock."""
    from harness.documents import docx_bytes
    from sir_convert_a_lot.engine.policy import RunOn
    from sir_convert_a_lot.engine.protocol import Converted

    config = load_config(tmp_path, engine={**RAY_CPUS, "workers": 1})
    pool = EnginePool(config, config.governance, instance="ray-docx")
    try:
        pool.start()
        decision = pool.decide(config.defaults, "sub/letter.docx")
        assert decision == RunOn("none")
        source = tmp_path / "claimed-letter"  # the claimed file's name says nothing
        source.write_bytes(docx_bytes(text="Read on an actor."))
        answer = pool.convert("job_1", str(source), config.defaults, decision, "sub/letter.docx")
    finally:
        pool.stop()
    assert isinstance(answer, Converted), answer
    assert "Read on an actor." in answer.markdown and answer.acceleration_used == "none"
