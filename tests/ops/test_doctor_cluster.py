"""``sir-convert doctor`` with ``engine.kind = "ray"``: Ray missing, an address where no cluster
answers (failing in seconds, not Ray's minutes), a private Ray that is only announced, and the
version check on a real private cluster, which doctor's checks leave behind them."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot.config import EngineSection
from sir_convert_a_lot.engine import ray_cluster
from sir_convert_a_lot.engine.interface import EngineStartError
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.ops.doctor import cluster as doctor_cluster
from tests.helpers import wait_for, write_config
from tests.ops.test_doctor import _row, _rows
from tests.service.test_actors import processes_of

FOLDERS = ("inbox", "outbox", "state", "failed", "archive")
RAY_ROWS = ("ray", "ray cluster", "ray GPUs", "ray versions")


def _doctor(
    root: Path, capsys: pytest.CaptureFixture[str], **engine: Any
) -> tuple[int, str, float]:
    config = write_config(root, engine={"kind": "ray", **engine})
    config.chmod(0o600)
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    code = main(["--config", str(config), "doctor", "--quick"])
    return code, capsys.readouterr().out, time.monotonic() - began


def test_ray_not_installed_fails_with_the_extra_as_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_ray() -> Any:
        raise EngineStartError("ray_not_installed", 'engine.kind is "ray" but Ray is not installed')

    monkeypatch.setattr(ray_cluster, "import_ray", no_ray)
    code, output, _ = _doctor(tmp_path, capsys, ray_address="auto")
    assert code == 1
    row = _row(output, "ray")
    assert row["status"] == "FAIL" and "Ray is not installed" in row["detail"]
    assert row["fix"] == "pip install '.[ray]'"
    assert not [r for r in _rows(output) if r["name"] in RAY_ROWS[1:]]


def test_an_address_where_no_cluster_answers_fails_fast_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output, seconds = _doctor(tmp_path, capsys, ray_address="127.0.0.1:1")
    assert code == 1
    assert seconds < 15, f"doctor took {seconds:.0f} s on a dead address"
    assert _row(output, "ray")["status"] == "OK"
    row = _row(output, "ray cluster")
    assert row["status"] == "FAIL"
    assert "engine.ray_address '127.0.0.1:1'" in row["detail"]
    assert "ray start --head" in row["fix"]


def test_a_private_ray_is_announced_without_starting_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, output, seconds = _doctor(
        tmp_path, capsys, ray_address="local", workers=2, gpus_per_worker=0
    )
    row = _row(output, "ray cluster")
    assert row["status"] == "OK" and "private one-machine Ray" in row["detail"]
    assert _row(output, "ray")["status"] == "OK"
    assert seconds < 15


def test_a_cluster_without_gpus_fails_when_actors_want_them() -> None:
    row = doctor_cluster.gpus(0.0, 2, EngineSection(kind="ray", workers=0, gpus_per_worker=1))
    assert row.status == "FAIL"
    assert "engine.gpus_per_worker = 1" in row.detail and "engine.workers = 0" in row.detail
    too_few = doctor_cluster.gpus(2.0, 1, EngineSection(kind="ray", workers=4, gpus_per_worker=1))
    assert too_few.status == "FAIL" and "needs 4 GPUs; the cluster has 2" in too_few.detail
    enough = doctor_cluster.gpus(4.0, 2, EngineSection(kind="ray", workers=0, gpus_per_worker=1))
    assert enough.status == "OK" and "4 actor(s)" in enough.detail


@pytest.mark.slow
def test_versions_are_checked_on_every_node_of_a_private_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section = EngineSection(kind="ray", ray_address="local", workers=1, gpus_per_worker=0)
    joined = ray_cluster.connect(replace(section, cpus_per_worker=1))
    try:
        rows = list(doctor_cluster.on_cluster(joined, section))
        nodes = [n for n in joined.nodes() if n["alive"]]
        found = doctor_cluster.node_versions(joined, nodes)
    finally:
        joined.shutdown()
    assert wait_for(lambda: not processes_of(joined.mark), timeout=30), processes_of(joined.mark)
    by_name = {row.name: row for row in rows}
    assert by_name["ray cluster"].status == "OK" and "1 node" in by_name["ray cluster"].detail
    assert by_name["ray GPUs"].status == "OK"
    here = doctor_cluster.versions_here()
    assert by_name["ray versions"].status == "OK", by_name["ray versions"]
    assert f"docling {here['docling']}" in by_name["ray versions"].detail
    (node,) = found
    assert node["host"] == here["host"] and node["sir_convert_a_lot"] == here["sir_convert_a_lot"]

    # The same answers read against a host with another docling: the node is named.
    monkeypatch.setattr(doctor_cluster, "_installed", lambda name: f"{name}-elsewhere")
    differ = doctor_cluster.versions(found)
    assert differ.status == "FAIL"
    named = f"{here['host']} (node {node['node_id'][:8]}): docling {here['docling']}"
    assert named in differ.detail
    assert "same release on every node" in differ.fix
