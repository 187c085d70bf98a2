"""Joining a Ray cluster, or starting a private one that cannot outlive the daemon.

``engine.ray_address = "auto"`` joins the cluster of this host (``ray start --head`` or
``ray start --address`` ran here); ``HOST:PORT`` joins that head. ``"local"`` starts a private
one-machine Ray inside the daemon (``ray.init``). Ray ties most of a private cluster's processes
to the driver's life, but not all (its agents stay behind a killed driver), so a private Ray
also gets a reaper (``engine.ray_reaper``): a small process that reads a pipe only the daemon
holds, and when the pipe closes (the daemon stopped, crashed or was killed), kills every process
that carries this cluster's mark in its environment and removes its temporary folder. Every
port of a private Ray listens on 127.0.0.1 only (``_one_machine``).

Ray is an optional extra: nothing here imports it until a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import EngineSection, listen_address
from sir_convert_a_lot.engine.interface import EngineStartError

MARK_VARIABLE = "SIR_CONVERT_RAY_MARK"  # names the private cluster a process belongs to
_REAPER_WAIT_SECONDS = 15.0
_CONNECT_SECONDS = 5.0
# Ray's switch for a cluster that cannot grow past this machine (its default on Windows and
# macOS). Only with it off does Ray keep the node address 127.0.0.1, and only with that address
# do its GCS, raylet, workers and agents bind 127.0.0.1 instead of every interface.
_CLUSTERS_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK = ("127.0.0.1", "::1")
# Ray must not call home, and a private cluster needs none of its dashboard.
_QUIET_RAY = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}


def import_ray() -> Any:
    """Ray, or an ``EngineStartError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise EngineStartError(
            "ray_not_installed",
            'engine.kind is "ray" but Ray is not installed; install the extra '
            "(pip install '.[ray]', or tools/install, which includes it)",
        ) from None
    return ray


@dataclass
class RayCluster:
    """A connection to a Ray cluster; for a private one, also its reaper and folder."""

    address: str
    private: bool
    ray: Any
    temp_dir: str | None = None
    reaper: subprocess.Popen[bytes] | None = None
    mark: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def gpus(self) -> float:
        return float(self.ray.cluster_resources().get("GPU", 0.0))

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the cluster knows: id, host, address, alive, CPUs and GPUs."""
        return [
            {
                "node_id": node.get("NodeID", ""),
                "host": node.get("NodeManagerHostname", ""),
                "address": node.get("NodeManagerAddress", ""),
                "alive": bool(node.get("Alive")),
                "cpus": float(node.get("Resources", {}).get("CPU", 0.0)),
                "gpus": float(node.get("Resources", {}).get("GPU", 0.0)),
            }
            for node in self.ray.nodes()
        ]

    def node_alive(self, node_id: str) -> bool:
        return any(n["node_id"] == node_id and n["alive"] for n in self.nodes())

    def shutdown(self) -> None:
        """Disconnect; a private cluster is stopped and its leftovers reaped."""
        with self._lock:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
            reaper, self.reaper = self.reaper, None
            if reaper is not None:
                if reaper.stdin is not None:
                    reaper.stdin.close()  # the signal to reap
                with contextlib.suppress(subprocess.TimeoutExpired):
                    reaper.wait(timeout=_REAPER_WAIT_SECONDS)
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)


def connect(section: EngineSection, *, cpus: float | None = None) -> RayCluster:
    """Join the configured cluster, or start a private one (``ray_address = "local"``) sized
    for ``engine.workers`` actors of ``engine.cpus_per_worker`` CPUs (or ``cpus``)."""
    for name, value in _QUIET_RAY.items():
        os.environ.setdefault(name, value)
    if section.ray_address == "local":
        # Ray guards a local cluster with a token; one of our own, in the environment the
        # cluster inherits, spares Ray writing one under a home the unit keeps read-only.
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray = import_ray()
    logging.getLogger("ray").setLevel(logging.ERROR)
    if section.ray_address == "local":
        return _start_private(ray, section, cpus)
    address = section.ray_address
    _reachable(address)
    try:
        _init(
            ray,
            address=address,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
            namespace="sir-convert",
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for "no cluster there"
        if "AuthToken" in str(exc) or "Authentication" in type(exc).__name__:
            raise EngineStartError(
                "ray_auth_failed",
                f"the Ray cluster at engine.ray_address {address!r} refused this daemon's "
                "token; give the daemon the cluster's RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(the unit's EnvironmentFile, /etc/sir-convert/ray.env)",
            ) from None
        raise EngineStartError(
            "ray_unreachable",
            f"no Ray cluster at engine.ray_address {address!r} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); start one with `ray start --head` on this host, or set "
            'engine.ray_address = "local" for a private one',
        ) from None
    return RayCluster(address=address, private=False, ray=ray)


def _init(ray: Any, **arguments: Any) -> None:
    """``ray.init``, keeping the daemon's own SIGTERM and SIGINT handlers: Ray replaces
    SIGTERM's with an immediate exit, which would skip the graceful stop systemd asks for."""
    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(**arguments)
    finally:
        for number, handler in saved.items():
            if handler is not None:
                signal.signal(number, handler)


@contextlib.contextmanager
def _one_machine(ray: Any) -> Iterator[None]:
    """Ray's one-machine mode while a private Ray starts, so that nothing of it listens beyond
    127.0.0.1. Ray 2.60 rewrites a node address of 127.0.0.1 to the host's own address (its
    ``services.resolve_ip_for_localhost``) unless ``ray_constants.ENABLE_RAY_CLUSTER`` is off;
    that constant is read from the environment when Ray is first imported, so it is set too.
    The variable travels to the processes Ray starts; the daemon's later children lose it."""
    constants = ray._private.ray_constants
    saved_variable = os.environ.get(_CLUSTERS_VARIABLE)
    saved_constant = getattr(constants, "ENABLE_RAY_CLUSTER", True)
    os.environ[_CLUSTERS_VARIABLE] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_variable is None:
            os.environ.pop(_CLUSTERS_VARIABLE, None)
        else:
            os.environ[_CLUSTERS_VARIABLE] = saved_variable


def _reachable(address: str) -> None:
    """An explicit head address answers on TCP at once, or the start fails fast: Ray itself
    retries for minutes before it gives up on an address."""
    label = repr(address)
    if address == "auto":
        address = _auto_address()
        label = f"'auto' (this host's head, {address})"
    found = listen_address(address.removeprefix("ray://"))
    if found is None:
        return
    try:
        socket.create_connection(found, timeout=_CONNECT_SECONDS).close()
    except OSError as exc:
        raise EngineStartError(
            "ray_unreachable",
            f"no Ray cluster answers at engine.ray_address {label} ({exc.strerror or exc}); "
            "start its head with `ray start --head`, or check the address and the firewall",
        ) from None


def _auto_address() -> str:
    """The head ``"auto"`` means: ``RAY_ADDRESS``, else the one this host's ``ray start``
    noted in Ray's folder; a start fails at once when there is none."""
    noted = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    address = os.environ.get("RAY_ADDRESS", "")
    with contextlib.suppress(OSError):
        address = address or noted.read_text(encoding="utf-8").strip()
    if not address:
        raise EngineStartError(
            "ray_unreachable",
            'engine.ray_address is "auto" but no Ray cluster runs on this host (nothing in '
            f"RAY_ADDRESS or {noted}); start one with `ray start --head`, give the head's "
            'HOST:PORT, or set engine.ray_address = "local" for a private one',
        )
    return address


def _start_private(ray: Any, section: EngineSection, cpus: float | None) -> RayCluster:
    mark = uuid.uuid4().hex
    os.environ[MARK_VARIABLE] = mark  # every process the cluster starts inherits it
    temp_dir = tempfile.mkdtemp(prefix="sca-ray-")
    reaper = subprocess.Popen(
        [sys.executable, "-m", "sir_convert_a_lot.engine.ray_reaper", mark, temp_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C must not take it before the daemon
    )
    workers = max(1, section.workers)
    wanted_cpus = cpus if cpus is not None else max(1.0, workers * section.cpus_per_worker)
    try:
        with _one_machine(ray):
            _init(
                ray,
                num_cpus=int(wanted_cpus + 0.999),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=False,
                namespace="sir-convert",
                _temp_dir=temp_dir,
                _node_ip_address="127.0.0.1",  # kept so by _one_machine: nothing listens beyond
            )
        node_address = ray.util.get_node_ip_address()
        if node_address not in _LOOPBACK:  # a Ray that no longer heeds the switch
            raise RuntimeError(f"its node address is {node_address}, not 127.0.0.1")
    except Exception as exc:  # noqa: BLE001
        os.environ.pop(MARK_VARIABLE, None)
        cluster = RayCluster("local", True, ray, temp_dir, reaper, mark)
        cluster.shutdown()
        raise EngineStartError(
            "ray_start_failed",
            f"a private Ray could not start ({type(exc).__name__}: {str(exc)[:200]})",
        ) from None
    # The cluster's processes have it; what the daemon starts later (tests, tools) must not.
    os.environ.pop(MARK_VARIABLE, None)
    return RayCluster("local", True, ray, temp_dir, reaper, mark)
