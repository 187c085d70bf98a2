from __future__ import annotations

import pytest

from tests.helpers import SHARED_CORPUS


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
