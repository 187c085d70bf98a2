"""OCR on the GPU: RapidOCR's torch engine by default on a GPU, its ONNX engine on the CPU, built
while the worker loads; where it runs is read off the engine it built; and the OCR pages of
several documents share one call on the model thread. Here, on the CPU, the torch engine runs on
the random-weight stand-ins (``testing.ocr_models``) through docling's real pipeline."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.pdfs import scanned_pdf_bytes
from sir_convert_a_lot.backends import ocr_engine
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.docling_pipeline import pipeline_options
from sir_convert_a_lot.backends.models import RAPIDOCR_FILES
from sir_convert_a_lot.backends.models import ocr_engine as engine_for
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.policy import RunOn
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.errors import JobFailure
from sir_convert_a_lot.options import ConversionOptions
from tests.backends.together import convert_together
from tests.helpers import docling_config, load_config

pytestmark = pytest.mark.usefixtures("offline")

FORCE = ConversionOptions(backend_strategy="docling", ocr_mode="force", table_mode="fast")


def _backend(models: Path, device: str, ocr_backend: str = "auto") -> DoclingBackend:
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    sizes = {"layout": 8, "table": 8, "ocr": 8}
    context = BackendContext(device, 0, model_thread, str(models), sizes, ocr_backend)  # type: ignore[arg-type]
    backend = DoclingBackend(context)
    backend.load((FORCE,))
    return backend


def _ocr_model(backend: DoclingBackend) -> Any:
    (converter,) = backend._converters.values()
    (pipeline,) = converter.initialized_pipelines.values()
    return pipeline.ocr_model.model  # behind the shared model: docling's RapidOcrModel


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.stand_in_models import build_stand_in_models

    return build_stand_in_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def torch_on_cpu(torch_models: Path) -> Any:
    """The docling backend with RapidOCR's torch engine on the CPU (named: auto picks ONNX)."""
    backend = _backend(torch_models, "cpu", "torch")
    yield backend
    backend.context.model_thread.shutdown()


@pytest.mark.slow
def test_the_models_named_are_the_files_docling_asks_rapidocr_for() -> None:
    """``models check`` and the worker look for these files; docling (with its defaults) loads
    exactly these. A docling or rapidocr that resolves others fails here."""
    from docling.models.stages.ocr import rapid_ocr_model as rapid

    for engine, files in RAPIDOCR_FILES.items():
        spec = rapid._resolve_rapidocr("ch", engine)
        artifacts = rapid._rapidocr_artifacts(
            Path("/models/RapidOcr"),
            rapid._backend_to_engine_type(engine),
            spec.ppocr_version,
            spec.rapidocr_code,
        )
        resolved = {path.name for artifact in artifacts.values() for path in artifact.files}
        assert resolved == set(files), engine


@pytest.mark.parametrize(
    ("choice", "device", "engine"),
    [
        ("auto", "cuda", "torch"),
        ("auto", "cpu", "onnxruntime"),
        ("torch", "cpu", "torch"),
        ("onnxruntime", "cuda", "onnxruntime"),
    ],
)
def test_auto_is_the_torch_engine_on_a_gpu_and_onnx_on_the_cpu(
    choice: str, device: str, engine: str
) -> None:
    assert engine_for(choice, device) == engine
    context = BackendContext(device, 0, ThreadPoolExecutor(1), ocr_backend=choice)  # type: ignore[arg-type]
    options = pipeline_options(context, "fast", "force")
    assert options.ocr_options.backend == engine  # what docling builds RapidOCR with
    context.model_thread.shutdown()


@pytest.mark.slow
def test_the_engine_is_built_at_load_and_says_where_it_runs(torch_on_cpu: DoclingBackend) -> None:
    """Before any page: RapidOCR's parts are built (it would build them on the first scan), on
    the torch engine, and ``stage_devices.ocr`` is where their weights are."""
    from rapidocr.inference_engine.pytorch.main import TorchInferSession

    model = _ocr_model(torch_on_cpu)
    sessions = ocr_engine.sessions(model)
    assert len(sessions) == 3  # detector, classifier, recognizer
    assert all(isinstance(session, TorchInferSession) for session in sessions)
    assert ocr_engine.engines(model) == {"torch"}
    assert ocr_engine.devices(model) == {"cpu"}
    assert next(iter(torch_on_cpu._stages.values()))["ocr"] == "cpu"
    # read off the weights: a recognizer whose weights were elsewhere says so
    detector = sessions[0]
    placed = detector.predictor
    detector.predictor = copy.deepcopy(placed).to("meta")
    try:
        assert ocr_engine.devices(model) == {"cpu", "meta"}
    finally:
        detector.predictor = placed


@pytest.mark.slow
def test_ocr_pages_of_several_documents_share_one_call_on_the_model_thread(
    torch_on_cpu: DoclingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OCR forced on, three one-page scans at once: their pages go through the torch engine in
    one OCR call (the batching counters: one call of three pages for each), on the one model
    thread, and each document comes out as it does alone."""
    documents = [scanned_pdf_bytes(f"Scanned document number {n}.") for n in range(3)]
    alone = [
        torch_on_cpu.convert(open_pdf(data, max_pages=10), FORCE, lambda _p, _t: None)
        for data in documents
    ]
    assert all(result.batches["ocr"] == ((1, 1),) for result in alone)
    assert all(result.markdown.strip() for result in alone)  # the stand-in reads its "o"
    read_on: list[int] = []
    model = _ocr_model(torch_on_cpu)
    reader = model.reader

    def noted(*args: Any, **kwargs: Any) -> Any:
        read_on.append(threading.get_ident())
        return reader(*args, **kwargs)

    monkeypatch.setattr(model, "reader", noted)
    monkeypatch.setattr(torch_on_cpu._coalescer, "_gather", 600.0)  # wait for all three
    named = [(data, "document.pdf") for data in documents]
    together = convert_together(torch_on_cpu, named, FORCE, timeout=600)
    monkeypatch.undo()
    for by_itself, shared in zip(alone, together, strict=True):
        assert shared.batches["ocr"] == ((1, 3),)  # its page, in one call of three
        assert shared.ocr_enabled and shared.stage_devices["ocr"] == "cpu"
        assert shared.markdown == by_itself.markdown
    model_thread = torch_on_cpu.context.model_thread.submit(threading.get_ident).result()
    assert len(read_on) == 3 and set(read_on) == {model_thread}


@pytest.mark.slow
def test_through_the_worker_scans_submitted_together_share_ocr_calls(
    tmp_path: Path, torch_models: Path
) -> None:
    """The real worker process, OCR forced on, four scans submitted at once: each reports the
    OCR stage where the torch engine's weights are (the CPU here), and their pages shared OCR
    calls (what the sidecar's ``execution.batching.ocr`` is made of)."""
    sections = docling_config(tmp_path, torch_models, batch=8, ocr_mode="force", table_mode="fast")
    sections["gpu"] |= {"ocr_batch_size": 8, "ocr_backend": "torch"}
    config = load_config(tmp_path, **sections)
    engine = Engine(
        config,
        Governance(allow_cpu_fallback=True, decision_record="test"),
        instance="ocr-batching",
        lock_folder=tmp_path,
    )
    sources = []
    for n in range(4):
        source = tmp_path / f"scan{n}.pdf"
        source.write_bytes(scanned_pdf_bytes(f"Scanned document number {n}."))
        sources.append(source)
    try:
        for n, source in enumerate(sources):
            engine.submit(f"job{n}", str(source), config.defaults, RunOn("cpu"))
        answers = [engine.wait(f"job{n}") for n in range(len(sources))]
    finally:
        engine.stop()
    converted = [answer for answer in answers if isinstance(answer, Converted)]
    assert len(converted) == len(sources), answers
    assert all(answer.stage_devices["ocr"] == "cpu" and answer.ocr_enabled for answer in converted)
    ocr = [call for answer in converted for call in answer.batches["ocr"]]
    assert all(own == 1 for own, _every in ocr)
    assert max(every for _own, every in ocr) > 1  # some scans shared an OCR call


@pytest.mark.slow
def test_a_broken_ocr_model_fails_the_load_not_the_first_scan(
    tmp_path: Path, stand_in_models: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for entry in stand_in_models.iterdir():
        (models / entry.name).symlink_to(entry)
    (models / "RapidOcr").unlink()
    (models / "RapidOcr").mkdir()
    for entry in (stand_in_models / "RapidOcr").iterdir():
        (models / "RapidOcr" / entry.name).symlink_to(entry)
    broken = models / "RapidOcr" / "PP-OCRv6_rec_small.pth"
    broken.unlink()
    broken.write_bytes(b"not a torch checkpoint")
    with pytest.raises(JobFailure) as failed:
        _backend(models, "cpu", "torch")
    assert failed.value.details["reason"] == "models_unloadable"


@pytest.mark.gpu
@pytest.mark.parametrize("ocr_backend", ["auto", "onnxruntime"])
def test_on_a_gpu_stage_devices_ocr_is_where_the_engine_runs(
    stand_in_models: Path, ocr_backend: str
) -> None:
    """On a GPU the default engine (torch) runs OCR there; onnxruntime's sessions say where
    they run (the CPU with the plain wheel), and ``stage_devices.ocr`` follows them."""
    backend = _backend(stand_in_models, "cuda", ocr_backend)
    try:
        model = _ocr_model(backend)
        found = ocr_engine.devices(model)
        assert len(found) == 1
        result = backend.convert(
            open_pdf(scanned_pdf_bytes("A scan."), max_pages=10), FORCE, lambda *_: None
        )
        assert result.stage_devices["ocr"] == found.pop()
        if ocr_backend == "auto":
            assert ocr_engine.engines(model) == {"torch"}
            assert result.stage_devices == {"layout": "cuda", "ocr": "cuda"} | (
                {"table": "cuda"} if "table" in result.stage_devices else {}
            )
            for session in ocr_engine.sessions(model):
                assert {p.device.type for p in session.predictor.parameters()} == {"cuda"}
    finally:
        backend.context.model_thread.shutdown()
