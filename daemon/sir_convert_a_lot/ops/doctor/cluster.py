"""The Ray cluster, when ``engine.kind = "ray"``: Ray installed, the cluster reachable, GPUs
enough for the actors, and the same release of this package, docling and Ray on every node.

Doctor joins the cluster only for these checks and leaves it before it ends (``ray.shutdown``);
with ``engine.ray_address = "local"`` there is no cluster yet (the daemon starts a private one),
so nothing is joined. Before joining, the head's port is tried with a short timeout: Ray itself
waits minutes for an address where nothing answers.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from sir_convert_a_lot.config import Config, EngineSection
from sir_convert_a_lot.engine import ray_cluster
from sir_convert_a_lot.engine.interface import EngineStartError
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, Check
from sir_convert_a_lot.versions import package_version

NODE_SECONDS = 60.0  # how long the nodes together may take to say their versions
COMPARED = ("sir_convert_a_lot", "docling", "ray")
_START_HEAD = (
    "start the cluster with `ray start --head` on the head host (and `ray start --address "
    "HEAD:PORT` on the others), or correct engine.ray_address"
)


def cluster(config: Config) -> Iterator[Check]:
    section = config.engine
    try:
        ray = ray_cluster.import_ray()
    except EngineStartError as exc:
        yield Check(FAIL, "ray", str(exc), "pip install '.[ray]'")
        return
    yield Check(OK, "ray", f"Ray {ray.__version__} installed")
    if section.ray_address == "local":
        yield Check(
            OK,
            "ray cluster",
            'engine.ray_address = "local": the daemon starts a private one-machine Ray on '
            "this host (its GPUs are the GPU row's)",
        )
        return
    try:  # an address where nothing answers fails in seconds (ray_cluster tries it first)
        joined = ray_cluster.connect(section)
    except EngineStartError as exc:
        yield Check(FAIL, "ray cluster", str(exc), _START_HEAD)
        return
    try:
        yield from on_cluster(joined, section)
    finally:
        joined.shutdown()


def on_cluster(joined: ray_cluster.RayCluster, section: EngineSection) -> Iterator[Check]:
    """The rows for a cluster doctor is connected to: its nodes, GPUs and versions."""
    nodes = [node for node in joined.nodes() if node["alive"]]
    yield Check(
        OK,
        "ray cluster",
        f"reachable at {joined.address}: {len(nodes)} node{'s' if len(nodes) != 1 else ''} "
        f"({', '.join(sorted(str(n['host']) for n in nodes))})",
    )
    yield gpus(joined.gpus(), len(nodes), section)
    yield versions(node_versions(joined, nodes))


def gpus(count: float, nodes: int, section: EngineSection) -> Check:
    per_worker = section.gpus_per_worker
    keys = f"engine.workers = {section.workers}, engine.gpus_per_worker = {per_worker:g}"
    if per_worker <= 0:
        return Check(OK, "ray GPUs", f"CPU actors ({keys}); the cluster has {count:g} GPUs")
    if count <= 0:
        return Check(
            FAIL,
            "ray GPUs",
            f"the cluster's {nodes} node(s) show no GPU, but {keys}: no actor can start",
            "start Ray on the GPU hosts (`ray start` sees their GPUs), or set "
            "engine.gpus_per_worker = 0 and engine.workers for CPU actors",
        )
    wanted = section.workers * per_worker
    if wanted > count:
        return Check(
            FAIL,
            "ray GPUs",
            f"{keys} needs {wanted:g} GPUs; the cluster has {count:g}: the others never start",
            "lower engine.workers (0: one actor per GPU the cluster has), or add GPU nodes",
        )
    actors = section.workers or int(count // per_worker)
    return Check(OK, "ray GPUs", f"{count:g} GPUs on {nodes} node(s): {actors} actor(s) ({keys})")


def versions_here() -> dict[str, str]:
    """This process's host and the versions that must match across the cluster."""
    return {
        "host": socket.gethostname(),
        "sir_convert_a_lot": package_version(),
        "docling": _installed("docling"),
        "ray": _installed("ray"),
        "python": platform.python_version(),
    }


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


_PROBES: dict[int, Any] = {}  # the remote function, made once per Ray module


def node_versions(
    joined: ray_cluster.RayCluster, nodes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One tiny task pinned to each node (no CPU reserved): its host and versions, or why not."""
    ray = joined.ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = _PROBES.setdefault(id(ray), ray.remote(num_cpus=0, max_retries=0)(versions_here))
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"], soft=False)
        ).remote()
        for node in nodes
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=NODE_SECONDS)
    found = []
    for node, ref in zip(nodes, refs, strict=True):
        entry = {"node_id": node["node_id"], "host": node["host"]}
        if ref not in ready:
            ray.cancel(ref, force=True)
            entry["error"] = f"did not answer within {NODE_SECONDS:g} s"
        else:
            try:
                entry.update(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - the node cannot run the package at all
                entry["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
        found.append(entry)
    return found


def versions(found: list[dict[str, Any]]) -> Check:
    """Every node against this host: the package, docling and Ray must be the same release."""
    here = versions_here()
    mine = ", ".join(f"{key} {here[key]}" for key in COMPARED)
    differ = []
    for node in found:
        name = f"{node.get('host')} (node {str(node.get('node_id'))[:8]})"
        if "error" in node:
            differ.append(f"{name}: {node['error']}")
            continue
        wrong = [f"{key} {node.get(key)}" for key in COMPARED if node.get(key) != here[key]]
        if wrong:
            differ.append(f"{name}: {', '.join(wrong)}")
    if differ:
        return Check(
            FAIL,
            "ray versions",
            f"not as on this host ({mine}): " + "; ".join(differ),
            "install the same release on every node (the same package, docling and Ray), then "
            "restart Ray there (`ray stop`, `ray start --address HEAD:PORT`)",
        )
    return Check(OK, "ray versions", f"{len(found)} node(s) run {mine}, as this host")
