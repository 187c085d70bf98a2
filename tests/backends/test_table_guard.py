"""TableFormer's fast path runs only on the docling-ibm-models it was verified against, is checked
against docling's own prediction while it runs, and every job's tables are counted: what the
journal, the worker's answer (the sidecar's ``execution.tables``) and the metrics say."""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs

from sir_convert_a_lot.backends import table_batch, table_guard, tableformer_fast
from sir_convert_a_lot.backends.base import BackendContext, BackendResult
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.backends.table_check import BOX_TOLERANCE, difference
from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.backends.table_fast_path import CHECK_FIRST, FastPath, FastPredict
from sir_convert_a_lot.config import MetricsSection
from sir_convert_a_lot.engine.protocol import Converted, ConvertRequest, WorkerSettings
from sir_convert_a_lot.engine.worker import _Worker
from sir_convert_a_lot.jobs.endings import _measured
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service.metrics import Metrics
from tests.helpers import REPO, SAMPLES, Sink, pdf_bytes

OPTIONS = ConversionOptions(backend_strategy="docling", ocr_mode="off", table_mode="fast")
TABLE_PAGE = SAMPLES / "2305.03393v1-pg9.pdf"  # the stand-in layout finds 2 tables on it
MULTI_PAGE = SAMPLES / "multi_page.pdf"

pytestmark = [pytest.mark.usefixtures("offline"), pytest.mark.slow]  # models: seconds per test


# -- which library ------------------------------------------------------------------------------


def test_the_installed_docling_ibm_models_is_one_the_fast_path_was_verified_against() -> None:
    """Fails when docling-ibm-models changes: verify the new one (table_guard's docstring)."""
    assert table_guard.refusal() is None, table_guard.source_hashes()


def test_pyproject_pins_docling_exactly_as_the_constraints_do() -> None:
    """An install without the constraints file cannot pull an unverified docling-ibm-models."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = dict(_requirement(line) for line in project["dependencies"])
    lines = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    constrained = dict(_requirement(line) for line in lines if "==" in line)
    for package in ("docling", "docling-core", "docling-ibm-models", "docling-parse"):
        assert pinned[package] == constrained[package], package
        assert pinned[package].startswith("=="), package
    assert pinned["docling-ibm-models"].removeprefix("==") in table_guard.VERIFIED


def _requirement(line: str) -> tuple[str, str]:
    """``Name_x>=1,<2`` -> (``name-x``, ``>=1,<2``)."""
    found = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", line.strip())
    assert found is not None, line
    return found[1].lower().replace("_", "-"), found[2]


def test_an_unknown_version_or_a_changed_function_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified = table_guard.VERIFIED["4.0.4"]
    changed = {"4.0.4": {**verified, "BBoxDecoder.inference": "0" * 64}}
    monkeypatch.setattr(table_guard, "VERIFIED", changed)
    assert table_guard.refusal() == table_guard.Refusal(
        "source_changed", "4.0.4", "BBoxDecoder.inference"
    )
    monkeypatch.setattr(table_guard, "installed_version", lambda: "4.1.0")
    assert table_guard.refusal() == table_guard.Refusal("unverified_version", "4.1.0")


# -- which tables are checked, and what differs ---------------------------------------------------


def _checked(check_every: int, tables: int) -> list[int]:
    path = FastPath(check_every)
    return [n for n in range(1, tables + 1) if path.due()]


def test_the_first_tables_after_a_start_and_every_nth_after_them_are_checked() -> None:
    assert CHECK_FIRST == 8
    assert _checked(50, 160) == [1, 2, 3, 4, 5, 6, 7, 8, 58, 108, 158]
    assert _checked(1, 30) == list(range(1, 31))
    assert _checked(0, 30) == []


def _prediction(tags: list[int], classes: list[int], shift: float = 0.0) -> Any:
    logits = torch.nn.functional.one_hot(torch.tensor(classes), 3).float()
    boxes = torch.full((len(classes), 4), 0.25) + shift
    return tags, logits, boxes


def test_tags_classes_box_counts_and_boxes_beyond_the_tolerance_differ() -> None:
    library = _prediction([2, 5, 5, 9, 3], [1, 2])
    assert difference(_prediction([2, 5, 5, 9, 3], [1, 2], 0.8 * BOX_TOLERANCE), library) is None
    assert difference(_prediction([2, 5, 5, 9, 3], [1, 2], 1.2 * BOX_TOLERANCE), library) == "boxes"
    assert difference(_prediction([2, 5, 5, 9, 3], [1, 1]), library) == "classes"
    assert difference(_prediction([2, 5, 5, 9, 3], [1]), library) == "box_count"
    assert difference(_prediction([2, 5, 4, 9, 3], [1, 2]), library) == "tags"


# -- through docling's real pipeline, on the stand-in models ---------------------------------------


@pytest.fixture
def new_backend(stand_in_models: Path) -> Iterator[Callable[[int], DoclingBackend]]:
    """A freshly loaded docling backend (a worker start, as far as the fast path knows)."""
    threads: list[ThreadPoolExecutor] = []

    def load(check_every: int) -> DoclingBackend:
        threads.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda"))
        backend = DoclingBackend(_context(stand_in_models, threads[-1], check_every))
        backend.load((OPTIONS,))
        return backend

    yield load
    for thread in threads:
        thread.shutdown()


def _context(models: Path, thread: ThreadPoolExecutor, check_every: int) -> BackendContext:
    sizes = {"layout": 8, "table": 8, "ocr": 8}
    return BackendContext("cpu", 0, thread, str(models), sizes, table_check_every=check_every)


def _convert(backend: DoclingBackend, source: Path | bytes) -> BackendResult:
    data = source if isinstance(source, bytes) else source.read_bytes()
    return backend.convert(open_pdf(data, max_pages=50), OPTIONS, lambda _p, _t: None)


def _table_model(backend: DoclingBackend) -> Any:
    converter = next(iter(backend._converters.values()))
    return next(iter(converter.initialized_pipelines.values())).table_model


def test_with_check_every_one_every_table_is_checked_and_none_differs(
    new_backend: Callable[[int], DoclingBackend],
) -> None:
    backend = new_backend(1)
    for source in (TABLE_PAGE, MULTI_PAGE):
        tables = _convert(backend, source).tables
        assert tables.predicted > 0
        assert tables == TableCounts(tables.predicted, tables.predicted, tables.predicted, 0)


def test_each_document_of_a_merged_table_call_gets_its_own_counts(
    new_backend: Callable[[int], DoclingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = new_backend(1)
    documents: list[Path | bytes] = [TABLE_PAGE, pdf_bytes(text="No table."), MULTI_PAGE]
    alone = [_convert(backend, source).tables for source in documents]
    monkeypatch.setattr(backend._coalescer, "_gather", 60.0)  # wait for all, however slow
    results: list[Any] = [None] * len(documents)
    start = threading.Barrier(len(documents))

    def convert(index: int) -> None:
        start.wait()
        results[index] = _convert(backend, documents[index])

    threads = [threading.Thread(target=convert, args=(n,)) for n in range(len(documents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert [result.tables for result in results] == alone
    assert len({tables.predicted for tables in alone}) == len(alone)  # each its own number
    table_calls = [call for result in results for call in result.batches["table"]]
    assert any(own < every for own, every in table_calls)  # pages of several in one call


def test_an_unverified_docling_ibm_models_keeps_docling_own_prediction_and_says_so(
    stand_in_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the worker as it loads and converts (in this process, so the test can pretend
    the installed library is not verified): the journal, the answer the sidecar is written
    from, and the metrics."""
    monkeypatch.setattr(table_guard, "VERIFIED", {"4.0.3": table_guard.VERIFIED["4.0.4"]})
    settings = WorkerSettings(0, str(stand_in_models), 10**8, 50, table_check_every=1)
    worker = _Worker(conn=Sink(), settings=settings)
    worker.option_sets = (OPTIONS,)
    source = tmp_path / "table.pdf"
    source.write_bytes(TABLE_PAGE.read_bytes())
    try:
        with capture_logs() as logged:
            answer = worker._convert(ConvertRequest("job_1", str(source), "t.pdf", OPTIONS, "cpu"))
        backend = worker.backends[("docling", "cpu")]
        assert isinstance(backend, DoclingBackend)
        assert not isinstance(_table_model(backend).tf_predictor._model.predict, FastPredict)
    finally:
        worker.model_thread.shutdown()
    off = [entry for entry in logged if entry["event"] == "table_fast_path_off"]
    assert len(off) == 1 and off[0]["log_level"] == "warning"
    assert off[0]["reason"] == "unverified_version" and off[0]["version"] == "4.0.4"
    assert off[0]["verified"] == ["4.0.3"]
    assert isinstance(answer, Converted)
    assert answer.tables == TableCounts(predicted=2)  # docling's own predicted both
    metrics = _metrics_after(answer)
    assert metrics["sir_convert_tables_predicted_total"] == 2
    assert metrics["sir_convert_tables_fast_total"] == 0


def _metrics_after(answer: Converted) -> dict[str, float]:
    metrics = Metrics(MetricsSection(), "gpu0")
    metrics.finished(Outcome("job_1", Status.SUCCEEDED, measured=_measured(answer, None, 1.0)))
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics.render().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_mismatch_gives_the_table_docling_prediction_logs_both_and_turns_the_fast_path_off(
    new_backend: Callable[[int], DoclingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _convert(new_backend(1), TABLE_PAGE)
    backend = new_backend(1)

    def shifted(prediction: Any) -> Any:  # a fault in the fast path: every box a bit off
        tags, classes, boxes = prediction
        return tags, classes, boxes + 10 * BOX_TOLERANCE

    predict_many, predict = tableformer_fast.predict_many, tableformer_fast.predict
    monkeypatch.setattr(
        table_batch, "predict_many", lambda *a: [shifted(p) for p in predict_many(*a)]
    )
    monkeypatch.setattr(tableformer_fast, "predict", lambda *a: shifted(predict(*a)))
    with capture_logs() as logged:
        faulty = _convert(backend, TABLE_PAGE)
    # The first table was checked and differed: docling's prediction, then docling's for the
    # second table too, since the fast path is off for the rest of the run.
    assert faulty.tables == TableCounts(predicted=2, fast=1, checked=1, mismatched=1)
    assert faulty.markdown == reference.markdown
    mismatch = next(entry for entry in logged if entry["event"] == "table_mismatch")
    assert mismatch["differs"] == "boxes"
    assert mismatch["box_distance"] == pytest.approx(10 * BOX_TOLERANCE, rel=1e-4)
    assert mismatch["fast"]["tags"] == mismatch["docling"]["tags"]
    assert mismatch["fast"]["boxes"] != mismatch["docling"]["boxes"]
    off = [entry for entry in logged if entry["event"] == "table_fast_path_off"]
    assert [entry["reason"] for entry in off] == ["mismatch"]
    assert _convert(backend, TABLE_PAGE).tables == TableCounts(predicted=2)
    answer = Converted("job_1", "", 1, "docling", "cpu", False, (), {}, 0, tables=faulty.tables)
    assert _metrics_after(answer)["sir_convert_table_mismatches_total"] == 1
