"""docling's real pipeline, several documents at once: their pages share layout calls on the one
model thread, and each document comes out exactly as it does alone. Also pins what the merging
relies on in docling's internals."""

from __future__ import annotations

import inspect
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fixtures.stand_in_models import build_stand_in_models
from sir_convert_a_lot.backends.base import BackendContext, BackendResult
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.policy import RunOn
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.options import ConversionOptions
from tests.backends.together import convert_together
from tests.helpers import OFFLINE, REPO, SAMPLES, docling_config, load_config, pdf_bytes

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

OPTIONS = ConversionOptions(backend_strategy="docling", ocr_mode="off", table_mode="fast")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    models = build_stand_in_models(tmp_path_factory.mktemp("models"))
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    loaded = DoclingBackend(
        BackendContext(
            device="cpu",
            device_index=0,
            model_thread=model_thread,
            models_path=str(models),
            batch_sizes={"layout": 8, "table": 8, "ocr": 8},
        )
    )
    loaded.load((OPTIONS,))
    yield loaded
    model_thread.shutdown()


def _one_page_pdfs(count: int) -> list[bytes]:
    return [pdf_bytes(text=f"Document number {n}: a short paragraph.") for n in range(count)]


@pytest.mark.slow
def test_concurrent_documents_share_layout_calls_and_each_converts_as_it_does_alone(
    backend: DoclingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = [*_one_page_pdfs(3), (SAMPLES / "2305.03393v1-pg9.pdf").read_bytes()]
    alone = [
        backend.convert(open_pdf(data, max_pages=10), OPTIONS, lambda _p, _t: None)
        for data in documents
    ]
    assert all(r.batches["layout"] == ((1, 1),) for r in alone)  # one page, one call, alone
    monkeypatch.setattr(backend._coalescer, "_gather", 60.0)  # wait for all four, however slow
    together = convert_together(backend, [(data, "document.pdf") for data in documents], OPTIONS)
    for by_itself, shared in zip(alone, together, strict=True):
        assert shared.markdown == by_itself.markdown
        assert shared.stage_devices == by_itself.stage_devices
        assert shared.batches["layout"] == ((1, 4),)  # its page, in one call of four pages


@pytest.mark.slow
def test_what_merging_relies_on_in_docling() -> None:
    """Layout and TableFormer use the conversion result they are handed only to time themselves
    and in debug drawings, so a call may carry pages of several documents; docling's stages call
    their model directly when given no model thread. If docling changes either, re-check
    ``backends.coalesce.MERGEABLE_STAGES`` and the pipeline subclass in ``backends.docling``."""
    from docling.models.base_layout_model import BaseLayoutModel
    from docling.models.base_table_model import BaseTableStructureModel
    from docling.models.stages.layout.layout_object_detection_model import (
        LayoutObjectDetectionModel,
    )
    from docling.models.stages.table_structure.table_structure_model import (
        TableStructureModel,
    )
    from docling.pipeline import standard_pdf_pipeline as standard

    allowed = re.compile(
        r"conv_res(: ConversionResult|,| ?\)|\.input\.file)"  # parameters, passing it on, debug
    )
    for method in (
        BaseLayoutModel.__call__,
        LayoutObjectDetectionModel.predict_layout,
        BaseTableStructureModel.__call__,
        TableStructureModel.predict_tables,
    ):
        source = inspect.getsource(method)
        uses = [m.start() for m in re.finditer(r"conv_res", source)]
        assert uses, method.__qualname__
        for at in uses:
            assert allowed.match(source, at), (method.__qualname__, source[at - 40 : at + 40])
    run_model = inspect.getsource(standard.ThreadedPipelineStage._run_model)
    assert "if self._model_executor is None:" in run_model
    assert "return list(self.model(conv_res, pages))" in run_model
    assert set(standard._MODEL_STAGE_NAMES) >= {"ocr", "layout", "table"}
    assert callable(getattr(standard.StandardPdfPipeline, "_borrow_model_threads", None))


def test_the_loaded_tableformer_predicts_with_the_fast_decoding(backend: DoclingBackend) -> None:
    """docling's table model as this docling builds it is the one ``backends.tableformer_fast``
    was written for, so the daemon's tables take the fast path (a docling that changes it keeps
    its own, slower prediction, and this says so)."""
    from sir_convert_a_lot.backends.table_fast_path import FastPredict

    converter = next(iter(backend._converters.values()))
    pipeline = next(iter(converter.initialized_pipelines.values()))
    predict = pipeline.table_model.tf_predictor._model.predict
    assert isinstance(predict, FastPredict)


def _first_pages(path: Path, pages: int) -> bytes:
    """The file's first ``pages`` pages: enough tables for the stand-in layout, in less time
    than all 18."""
    import pymupdf

    document = pymupdf.open(path)
    document.select(list(range(pages)))
    data: bytes = document.tobytes()
    return data


@pytest.mark.slow
def test_the_tables_of_a_call_are_predicted_together_and_come_out_as_alone(
    backend: DoclingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tables of a table call come from one pass over all of them, none is predicted twice,
    and the Markdown is the one each table predicted alone gives."""
    from sir_convert_a_lot.backends import table_batch, tableformer_fast

    data = _first_pages(REPO / "fixtures" / "benchmark_pdfs" / "report_redp5110_sampled.pdf", 8)

    def convert() -> BackendResult:
        return backend.convert(open_pdf(data, max_pages=50), OPTIONS, lambda _p, _t: None)

    alone_calls: list[int] = []
    predict_alone = tableformer_fast.predict

    def counted_alone(*args: Any) -> Any:
        alone_calls.append(1)
        return predict_alone(*args)

    monkeypatch.setattr(table_batch.BatchedTables, "_prepare", lambda *_args: None)
    monkeypatch.setattr(tableformer_fast, "predict", counted_alone)
    one_by_one = convert()
    tables = len(alone_calls)
    assert tables >= 4, "the stand-in layout should find tables on these pages"
    monkeypatch.undo()
    together_sizes: list[int] = []
    predict_many = tableformer_fast.predict_many

    def counted(model: Any, images: list[Any]) -> list[Any]:
        together_sizes.append(len(images))
        return predict_many(model, images)

    monkeypatch.setattr(table_batch, "predict_many", counted)
    monkeypatch.setattr(tableformer_fast, "predict", counted_alone)
    alone_calls.clear()
    together = convert()
    # Every table was predicted once: together with the others of its call, or alone when its
    # call had only one table (how pages group into calls depends on the stage threads' timing).
    assert sum(together_sizes) + len(alone_calls) == tables
    assert max(together_sizes) > 1
    assert together.markdown == one_by_one.markdown

    def out_of_memory(model: Any, images: list[Any]) -> list[Any]:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(table_batch, "predict_many", out_of_memory)
    alone_calls.clear()
    fallen_back = convert()  # the batch failed: docling's loop predicts each table alone
    assert len(alone_calls) == tables
    assert fallen_back.markdown == one_by_one.markdown


def test_documents_in_flight_get_names_of_their_own(backend: DoclingBackend) -> None:
    names = {backend._new_name() for _ in range(100)}
    assert len(names) == 100 and all(name.endswith(".pdf") for name in names)


@pytest.mark.slow
def test_the_worker_converts_several_submitted_documents_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real worker process: six one-page documents submitted together come back
    each with its own Markdown, their page counts reported first, and shared layout calls."""
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    models = build_stand_in_models(tmp_path / "models")
    config = load_config(tmp_path, **docling_config(tmp_path, models, batch=8, table_mode="fast"))
    counted: dict[str, int] = {}

    def on_progress(job_id: str, page: int, pages: int) -> None:
        counted.setdefault(job_id, pages if page == 0 else -1)  # the first word on each job

    engine = Engine(
        config,
        Governance(allow_cpu_fallback=True, decision_record="test"),
        instance="batching",
        on_progress=on_progress,
        lock_folder=tmp_path,
    )
    sources = []
    for n, data in enumerate(_one_page_pdfs(6)):
        source = tmp_path / f"doc{n}.pdf"
        source.write_bytes(data)
        sources.append(source)
    try:
        for n, source in enumerate(sources):
            engine.submit(f"job{n}", str(source), config.defaults, RunOn("cpu"))
        answers = [engine.wait(f"job{n}") for n in range(len(sources))]
    finally:
        engine.stop()
    assert all(isinstance(answer, Converted) for answer in answers)
    converted = [answer for answer in answers if isinstance(answer, Converted)]
    for n, answer in enumerate(converted):
        assert f"Document number {n}" in answer.markdown
    assert counted == {f"job{n}": 1 for n in range(len(sources))}
    layout = [call for answer in converted for call in answer.batches["layout"]]
    assert max(every for _own, every in layout) > 1  # some pages shared a call
    assert all(own == 1 for own, _every in layout)
