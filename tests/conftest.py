from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.stand_in_models import build_stand_in_models

from tests.helpers import OFFLINE, SHARED_CORPUS


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
