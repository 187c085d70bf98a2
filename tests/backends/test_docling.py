"""docling's real pipeline, with small random-weight stand-in models built by the fixtures in
docling's artifacts_path layout: loading, device placement, the one model thread, OCR passes,
the lock and readiness are real; the Markdown they produce is meaningless."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.docling_pipeline import tensor_devices
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.gpu import DeviceLock, GpuDevice, GpuProbe
from sir_convert_a_lot.engine.supervisor import Engine, EngineStartError
from sir_convert_a_lot.options import ConversionOptions
from tests.daemon import Daemon, run_cli
from tests.helpers import (
    OFFLINE,
    SAMPLES,
    docling_config,
    load_config,
    pdf_bytes,
    wait_for,
    write_config,
)
from tests.plugins.scripted_service import scripted_transport
from tests.plugins.scripted_worker import ScriptedWorker

TABLE_PAGE = SAMPLES / "2305.03393v1-pg9.pdf"


pytestmark = [pytest.mark.usefixtures("offline"), pytest.mark.slow]  # models: seconds per test


class _RecordingModel:
    """Stands in front of a docling model and notes the thread of every call."""

    def __init__(self, model: Any, calls: list[int]) -> None:
        self._model = model
        self._calls = calls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.append(threading.get_ident())
        return self._model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _image_only_pdf() -> bytes:
    """A page whose text exists only as pixels: no text layer for a PDF parser to read."""
    import pymupdf

    text_page = pymupdf.open(stream=pdf_bytes(text="Scanned words only, no text layer."))
    pixmap = text_page[0].get_pixmap(dpi=100)
    document = pymupdf.open()
    page = document.new_page()
    page.insert_image(page.rect, pixmap=pixmap)
    data: bytes = document.tobytes()
    return data


def test_every_model_call_runs_on_the_one_model_thread(stand_in_models: Path) -> None:
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    backend = DoclingBackend(
        BackendContext(
            device="cpu",
            device_index=0,
            model_thread=model_thread,
            models_path=str(stand_in_models),
            batch_sizes={"layout": 2, "table": 2, "ocr": 2},
        )
    )
    options = ConversionOptions(backend_strategy="docling", ocr_mode="off")
    backend.load((options,))
    (converter,) = backend._converters.values()
    (pipeline,) = converter.initialized_pipelines.values()
    assert tensor_devices(pipeline) == {"cpu"}
    calls: dict[str, list[int]] = {"layout": [], "table": []}
    # the shared models stand in front of docling's; the real models are behind them (the
    # table stage's per-document counts stand in front of its shared model)
    pipeline.layout_model.model = _RecordingModel(pipeline.layout_model.model, calls["layout"])
    tables = pipeline.table_model.model
    tables.model = _RecordingModel(tables.model, calls["table"])
    pdf = open_pdf(TABLE_PAGE.read_bytes(), max_pages=10)
    for _ in range(2):
        result = backend.convert(pdf, options, lambda _page, _pages: None)
        assert result.backend_used == "docling"
        assert result.acceleration_used == "cpu"
        assert result.ocr_enabled is False
        # the page's table went through TableFormer; no OCR pass ran
        assert result.stage_devices == {"layout": "cpu", "table": "cpu"}
        # every page of this job went through layout once, in batches of at most 2, alone
        assert sum(own for own, _all in result.batches["layout"]) == pdf.pages
        assert all(own == every <= 2 for own, every in result.batches["layout"])
        assert set(result.batches) == {"layout", "table"}
    model_thread_id = model_thread.submit(threading.get_ident).result()
    assert calls["layout"] and calls["table"]
    assert set(calls["layout"]) | set(calls["table"]) == {model_thread_id}
    assert result.model_thread_id == model_thread_id != threading.get_ident()
    model_thread.shutdown()


def _scan_then_text_pdf() -> bytes:
    """Page 1 a scan (text only as pixels), page 2 born digital (a real text layer)."""
    import pymupdf

    document = pymupdf.open(stream=_image_only_pdf())
    text_page = document.new_page()
    box = pymupdf.Rect(72, 72, text_page.rect.width - 72, text_page.rect.height - 72)
    text_page.insert_textbox(box, "Born digital words. " * 40)
    data: bytes = document.tobytes()
    return data


class _OcrPages:
    """Stands in front of the OCR model and notes how many pages each call hands it."""

    def __init__(self, model: Any, pages: list[int]) -> None:
        self._model = model
        self._pages = pages

    def __call__(self, conv_res: Any, pages: Any) -> Any:
        pages = list(pages)
        self._pages.append(len(pages))
        return self._model(conv_res, pages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_ocr_auto_decides_page_by_page_in_one_pass_and_force_reads_every_page(
    stand_in_models: Path,
) -> None:
    model_thread = ThreadPoolExecutor(max_workers=1)
    backend = DoclingBackend(
        BackendContext("cpu", 0, model_thread, models_path=str(stand_in_models))
    )
    auto = ConversionOptions(backend_strategy="docling", ocr_mode="auto", table_mode="fast")
    force = ConversionOptions(backend_strategy="docling", ocr_mode="force", table_mode="fast")
    backend.load((auto, force))
    # one pipeline per option set: auto converts once, never a second pass
    assert set(backend._converters) == {("fast", "auto", False), ("fast", "force", False)}
    read: list[int] = []
    (auto_pipeline,) = backend._converters[("fast", "auto", False)].initialized_pipelines.values()
    auto_pipeline.ocr_model.model = _OcrPages(auto_pipeline.ocr_model.model, read)
    mixed = open_pdf(_scan_then_text_pdf(), max_pages=10)
    result = backend.convert(mixed, auto, lambda _p, _t: None)
    assert sum(read) == 1  # the scanned page; the born-digital page never reached OCR
    assert result.ocr_enabled is True
    assert "docling_auto_ocr_pages:1/2" in result.warnings
    assert result.stage_devices["ocr"] == "cpu"  # RapidOCR's onnxruntime engine, no CUDA here
    assert sum(own for own, _all in result.batches["ocr"]) == 1
    read.clear()
    text = open_pdf((SAMPLES / "multi_page.pdf").read_bytes(), max_pages=10)
    plain = backend.convert(text, auto, lambda _p, _t: None)
    assert read == [] and plain.ocr_enabled is False
    assert not any(w.startswith("docling_auto_ocr_pages") for w in plain.warnings)
    assert "ocr" not in plain.stage_devices and plain.stage_devices["layout"] == "cpu"
    forced = backend.convert(mixed, force, lambda _p, _t: None)
    assert forced.ocr_enabled is True
    assert sum(own for own, _all in forced.batches["ocr"]) == 2  # every page
    assert forced.stage_devices["ocr"] == "cpu"
    model_thread.shutdown()


def test_the_governed_gpu_prefer_fallback_runs_docling_on_the_cpu_and_says_so(
    tmp_path: Path, stand_in_models: Path
) -> None:
    sections = docling_config(tmp_path, stand_in_models)
    sections["gpu"]["table_check_every"] = 1  # every table also predicted by docling's code
    config = write_config(tmp_path, **sections)
    with Daemon(config, env=OFFLINE).start(timeout=300) as daemon:
        ready = next(e for e in daemon.events() if e["event"] == "worker_ready")
        assert ready["loaded"] == ["docling@cpu"]
        (tmp_path / "inbox" / "table.pdf").write_bytes(TABLE_PAGE.read_bytes())
        wait_for(lambda: (tmp_path / "outbox" / "table.json").exists(), timeout=120)
        assert daemon.terminate() == 0
    sidecar = json.loads((tmp_path / "outbox" / "table.json").read_text())
    metadata = sidecar["result"]["conversion_metadata"]
    assert metadata["backend_used"] == "docling"
    assert metadata["acceleration_used"] == "cpu"
    assert metadata["stage_devices"] == {"layout": "cpu", "table": "cpu"}
    assert sidecar["execution"]["engine"] == "local"
    layout = sidecar["execution"]["batching"]["layout"]
    assert layout["pages"] == sidecar["source"]["pages"] and layout["max_batch"] <= 4
    tables = sidecar["execution"]["tables"]  # the fast path, each table checked, none differing
    assert tables["predicted"] > 0 and tables["mismatched"] == 0
    assert tables["predicted"] == tables["fast"] == tables["checked"]
    assert "gpu_prefer_fell_back_to_cpu" in sidecar["result"]["warnings"]
    assert sidecar["execution"]["acceleration_policy"] == "gpu_prefer"
    assert sidecar["execution"]["device"] is None
    assert sidecar["governance"]["lock"] == "unlocked"
    # The one-shot `convert` on the same fallback: test_docling_export.py.


def test_without_a_gpu_docling_under_the_lock_fails_with_gpu_not_available(
    tmp_path: Path, stand_in_models: Path
) -> None:
    from sir_convert_a_lot.engine.gpu import probe

    if probe(0).cuda_available:
        pytest.skip("this host has a GPU")
    config = write_config(
        tmp_path,
        **docling_config(tmp_path, stand_in_models, acceleration_policy="gpu_required"),
    )
    out = tmp_path / "oneshot"
    result = run_cli("convert", str(TABLE_PAGE), "--out", str(out), config=config, timeout=120)
    assert result.returncode == 1
    envelope = json.loads((out / "2305.03393v1-pg9.error.json").read_text())
    assert envelope["error"]["code"] == "gpu_not_available"


def test_missing_models_stop_the_daemon_before_ready_naming_them_and_the_fix(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    config = write_config(tmp_path, **docling_config(tmp_path, empty, ocr_mode="auto"))
    with Daemon(config, env=OFFLINE).start(wait_ready=False) as daemon:
        # 2: an installation problem, which the unit does not restart (RestartPreventExitStatus)
        assert daemon.wait(timeout=120) == 2
    events = daemon.events()
    assert not any(e["event"] == "daemon_ready" for e in events)
    failure = next(e for e in events if e["event"] == "engine_start_failed")
    assert failure["reason"] == "models_missing"
    assert failure["effect"] == "not restarting: fix the installation first"
    assert "sir-convert models download" in failure["message"]
    assert "docling-project--docling-layout-heron" in failure["message"]
    assert "RapidOcr" in failure["message"]
    check = run_cli("models", "check", config=config)
    assert check.returncode == 1
    assert "MISSING" in check.stdout and "models download" in check.stdout


def test_a_second_engine_for_the_same_gpu_refuses_or_waits_and_names_the_holder(
    tmp_path: Path, stand_in_models: Path
) -> None:
    config = load_config(
        tmp_path,
        **docling_config(tmp_path, stand_in_models, acceleration_policy="gpu_required"),
    )
    a_gpu = GpuProbe(True, GpuDevice(0, "Test GPU", "999.1", 80 << 30), "ok", "ok", "available")
    locks = tmp_path / "run"
    locks.mkdir()
    holder = DeviceLock(0, "first-instance", locks)
    holder.acquire(wait=False)
    refusing = Engine(
        config,
        Governance(),
        instance="second-instance",
        lock_folder=locks,
        wait_for_device=False,
        transport=scripted_transport(ScriptedWorker(probe=a_gpu)),
    )
    with pytest.raises(EngineStartError) as refused:
        refusing.start()
    assert refused.value.reason == "device_busy"
    assert "first-instance" in str(refused.value)
    refusing.stop()

    waiting = Engine(
        config,
        Governance(),
        instance="third-instance",
        lock_folder=locks,
        transport=scripted_transport(ScriptedWorker(probe=a_gpu)),
    )
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            waiting.start()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(timeout=5)
    assert thread.is_alive(), "the second engine should wait for the device lock"
    holder.release()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert json.loads(holder.path.read_text())["instance"] == "third-instance"
    if outcome:  # no CUDA here: past the lock, loading docling on cuda:0 fails
        assert isinstance(outcome[0], EngineStartError)
        assert outcome[0].reason != "device_busy"
    waiting.stop()
