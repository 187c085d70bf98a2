"""The package's layers point one way, so a reader can follow a PDF upward without turning back.

Every ``import`` in the package counts, including those inside functions (lazy imports): a lazy
import is still a dependency, only a later one. Each sub-package is one node and each root module
its own; the order, bottom to top, is the one design.md's "Layers" paragraph draws.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import REPO

DAEMON = REPO / "daemon"
PACKAGE = DAEMON / "sir_convert_a_lot"
TOP = "sir_convert_a_lot"
# Bottom to top; each may import those before it, never those after it.
LAYERS = ("config", "backends", "engine", "jobs", "intake", "service", "ops")
LOWEST = ("backends", "engine")
HARNESSES = ("harness", f"{TOP}.testing")  # the test harness, now and where it once lived


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package, dotted, with its file."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(DAEMON).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``module`` imports, absolute, with the line: top-level and lazy alike."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.module, node.level)
            yield base, node.lineno
            for alias in node.names:  # ``from pkg import sub`` imports pkg.sub when it is one
                yield f"{base}.{alias.name}", node.lineno


def _resolve(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, *([name] if name else [])])


def _node(module: str) -> str | None:
    """The graph node of a module of the package: its sub-package, or itself at the root."""
    parts = module.split(".")
    if parts[0] != TOP:
        return None
    if len(parts) == 1:
        return TOP
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return parts[1]
    return None  # ``from sir_convert_a_lot import API_VERSION``: a name, not a module


@functools.cache
def _edges() -> dict[tuple[str, str], str]:
    """(importer node, imported node) -> one place that shows it, ``file:line``."""
    edges: dict[tuple[str, str], str] = {}
    for module, path in _modules():
        source = _node(module)
        assert source is not None
        for imported, line in _imports(module, path):
            target = _node(imported)
            if target is not None and target != source:
                edges.setdefault((source, target), f"{path.relative_to(DAEMON)}:{line}")
    return edges


def _cycle(edges: dict[tuple[str, str], str]) -> list[str] | None:
    """One cycle as ``node (file:line where it imports the next)`` steps back to its first node,
    or None."""
    graph: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        graph.setdefault(source, []).append(target)
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = []
        if start in done:
            continue
        path.append(start)
        stack.append((start, iter(graph.get(start, []))))
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                done.add(node)
                stack.pop()
                path.pop()
            elif child in path:
                loop = [*path[path.index(child) :], child]
                steps = [f"{a} ({edges[(a, b)]})" for a, b in itertools.pairwise(loop)]
                return [*steps, child]
            elif child not in done:
                path.append(child)
                stack.append((child, iter(graph.get(child, []))))
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = _cycle(_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_each_sub_package_imports_only_the_layers_below_it() -> None:
    upward = {
        f"{source} -> {target}": where
        for (source, target), where in _edges().items()
        if source in LAYERS and target in LAYERS and LAYERS.index(target) > LAYERS.index(source)
    }
    assert upward == {}, "imports that point up the layers (config → … → ops)"


def test_backends_and_engine_import_no_upper_package() -> None:
    # The worker runs backends and engine code on hostile files; nothing there may reach the
    # spool, the inbox, the service or the CLI, not even lazily.
    upper = set(LAYERS[LAYERS.index("engine") + 1 :])
    found = {
        f"{source} -> {target}": where
        for (source, target), where in _edges().items()
        if source in LOWEST and target in upper
    }
    assert found == {}


def test_root_modules_import_no_sub_package_above_config() -> None:
    # Root modules sit at the bottom (logging, errors, names): everything may import them.
    entry_points = {"__main__"}  # ``python -m sir_convert_a_lot`` runs the CLI: the very top
    found = {
        f"{source} -> {target}": where
        for (source, target), where in _edges().items()
        if source not in LAYERS and source not in entry_points and target in LAYERS[1:]
    }
    assert found == {}


def test_no_production_module_imports_the_test_harness() -> None:
    found = [
        f"{path.relative_to(DAEMON)}:{line} imports {imported}"
        for module, path in _modules()
        for imported, line in _imports(module, path)
        if any(imported == h or imported.startswith(f"{h}.") for h in HARNESSES)
    ]
    assert found == []


def test_the_checks_see_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The graph is only as good as its parsing: an import inside a function, and a relative one,
    # must both be found.
    module = tmp_path / "m.py"
    module.write_text(
        "def later() -> None:\n    from sir_convert_a_lot.ops import cli\n"
        "from ..jobs import spool\n",
        encoding="utf-8",
    )
    found = {name for name, _ in _imports(f"{TOP}.engine.m", module)}
    assert f"{TOP}.ops.cli" in found
    assert f"{TOP}.jobs.spool" in found
    assert _node(f"{TOP}.ops.cli") == "ops"
    cycle = _cycle({("a", "b"): "a.py:1", ("b", "c"): "b.py:2", ("c", "a"): "c.py:3"})
    assert cycle == ["a (a.py:1)", "b (b.py:2)", "c (c.py:3)", "a"]
    assert _cycle({("a", "b"): "a.py:1", ("b", "c"): "b.py:2"}) is None
