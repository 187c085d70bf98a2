"""Test seams stay out of the product: no module of the package injects faults, sleeps or
allocates for a test, or pretends a GPU probe; the daemon takes its config and nothing else a
user could set; and the engine's one seam, the worker's entry point, is the real worker wherever
a config builds an engine. The tests' own worker lives in ``tests/plugins``."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.choose import build_engine
from sir_convert_a_lot.engine.pool import EnginePool
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.local import LocalProcessTransport
from sir_convert_a_lot.engine.transports.ray_actor import RayActorTransport, WorkerActor
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import REPO, load_config

PACKAGE = REPO / "daemon" / "sir_convert_a_lot"

# What the fault hooks and test switches that once lived in the product were made of: their
# names, the hour-long sleep of a "hang", the 64 MiB steps of a memory bomb, the faked probe.
FORBIDDEN = re.compile(
    r"fault_injection|inject_?faults?|injected fault|crash_on|probe_override"
    r"|install_signal_handlers|sleep\(\s*3600|bytearray\(\s*64\s*\*"
)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_of_the_package_has_a_fault_hook_or_a_test_switch() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert found == []


def test_no_function_of_the_package_kills_its_own_process() -> None:
    """A worker that dies on a hostile PDF is the operating system's doing (or the tests'
    scripted worker's), never a branch of the product's code."""
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or getattr(node.func, "attr", "") != "kill":
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Call) and getattr(first.func, "attr", "") == "getpid":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


def test_the_daemon_takes_its_config_and_only_the_engine_seam_besides() -> None:
    parameters = list(inspect.signature(Service.__init__).parameters)
    assert parameters == ["self", "config", "engine_factory"]
    # The CLI, the one production caller, passes the config alone.
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Service":
                assert not node.keywords and len(node.args) == 1, path


def test_every_engine_a_config_builds_runs_the_real_worker(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    local = build_engine(config, config.governance, instance="a")
    assert isinstance(local, Engine)
    assert local.transport_factory is LocalProcessTransport
    assert LocalProcessTransport(local.settings).serve is worker.serve
    ray = load_config(tmp_path, engine={"kind": "ray", "ray_address": "local"})
    pool = build_engine(ray, ray.governance, instance="b")
    assert isinstance(pool, EnginePool) and pool.serve is worker.serve
    for part in (LocalProcessTransport, RayActorTransport, WorkerActor, EnginePool):
        assert inspect.signature(part).parameters["serve"].default is worker.serve, part


def _keys(document: object, prefix: str = "") -> list[str]:
    if not isinstance(document, dict):
        return []
    found = []
    for key, value in document.items():
        found += [f"{prefix}{key}", *_keys(value, f"{prefix}{key}.")]
    return found


def test_no_config_key_reaches_the_worker_entry_point_or_a_fault() -> None:
    keys = _keys(config_module.default_document(Path("/srv/sca")))
    assert len(keys) > 50  # every key, as init-config writes them
    words = {word for key in keys for word in re.split(r"[._]", key.lower())}
    assert not words & {"fault", "faults", "inject", "serve", "entry", "probe", "scripted"}
