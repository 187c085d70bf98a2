from __future__ import annotations

import _posixsubprocess
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fixtures.stand_in_models import build_stand_in_models
from tests.helpers import OFFLINE, SHARED_CORPUS


def pytest_sessionstart(session: pytest.Session) -> None:
    """torch runs ldconfig in a subprocess the first time it is imported (its CUDA library
    finder): imported here, before any test, so that the slow-mark guard below blames a test only
    for processes it starts, not for being the first to import torch."""
    import torch  # noqa: F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run only where CUDA works; everywhere else they are skipped, saying why."""
    from sir_convert_a_lot.engine.gpu import probe

    found = probe(0)
    if found.cuda_available:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {found.reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_STARTERS = (
    (subprocess, "_fork_exec"),  # subprocess binds _posixsubprocess.fork_exec at import
    (_posixsubprocess, "fork_exec"),  # multiprocessing looks it up at each start
    (os, "fork"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _no_process_unless_slow(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _no_process_unless_slow(item):
        return (yield)


@contextmanager
def _no_process_unless_slow(item: pytest.Item) -> Iterator[None]:
    """`tools/test --fast` runs the tests not marked slow, and stays fast only if none of them
    starts a process: a daemon, a worker, Ray, or any command. Such a test fails, saying so,
    whether it starts one itself or through a fixture of any scope set up for it. Every way
    Python starts a process (subprocess, multiprocessing, os.fork, os.posix_spawn) goes through
    one of the functions replaced here."""
    if item.get_closest_marker("slow") is not None:
        yield
        return

    def refuse(name: str) -> Callable[..., Any]:
        def started(*args: object, **kwargs: object) -> Any:
            raise AssertionError(
                f"{item.nodeid} starts a process ({name}) but is not marked slow: add "
                "@pytest.mark.slow, or keep it in-process, so `tools/test --fast` stays fast"
            )

        return started

    saved = [(owner, name, getattr(owner, name)) for owner, name in _STARTERS]
    for owner, name, _ in saved:
        setattr(owner, name, refuse(name))
    try:
        yield
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)


@pytest.fixture
def shared_corpus() -> object:
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"the evaluation corpus is not at {SHARED_CORPUS} (set SIR_CONVERT_CORPUS)")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def stand_in_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docling's models as random-weight stand-ins, built once per test session."""
    return build_stand_in_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model hub: docling and transformers must not try to reach one."""
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
