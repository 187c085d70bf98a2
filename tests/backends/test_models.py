"""A missing models folder: doctor said "the daemon does not start" and the guide "exits 2", yet
on a host with no GPU it started and became ready. What is true: a worker that loads docling (a
usable GPU) refuses the start, exit 2 with ``models_missing``; where no docling job can run
under the lock, the daemon starts, says the models are missing, and every job fails
``gpu_not_available`` anyway. Doctor, the start and the guide say that same thing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot.backends import models
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.models import (
    LAYOUT,
    RAPIDOCR,
    RAPIDOCR_FILES,
    REFUSED_AT_START,
    TABLEFORMER,
    UNUSED_ON_THIS_HOST,
)
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.gpu import GpuDevice, GpuProbe
from sir_convert_a_lot.errors import JobFailure
from sir_convert_a_lot.ops import doctor
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.ops.doctor.gpu import GpuSeen
from sir_convert_a_lot.ops.doctor.models import models_present
from sir_convert_a_lot.options import ConversionOptions
from tests.helpers import REPO, load_config, write_config
from tests.plugins.scripted_service import scripted_service
from tests.plugins.scripted_worker import ScriptedWorker

DEVICE = GpuDevice(0, "Test GPU", "999.1", 80 << 30)
A_GPU = GpuSeen("ok", DEVICE, None, (), ())
NO_GPU = GpuSeen("nvml_unavailable: no driver", None, None, ("/dev/nvidiactl",), ())
LOCKED = {"allow_cpu_only": False, "allow_cpu_fallback": False, "decision_record": ""}


def _docling_on_the_gpu(root: Path) -> Config:
    """The default a GPU host runs: docling, gpu_required, the lock held, and a models folder
    that was never filled (``models download`` failed or never ran)."""
    return load_config(
        root,
        conversion={"backend_strategy": "docling", "acceleration_policy": "gpu_required"},
        governance=LOCKED,
        gpu={"models_path": str(root / "no-models")},
    )


def _models_row(config: Config, seen: GpuSeen) -> doctor.Check:
    (row,) = models_present(config, {}, seen)
    return row


def test_doctor_says_a_gpu_host_refuses_the_start_without_the_models(tmp_path: Path) -> None:
    row = _models_row(_docling_on_the_gpu(tmp_path), A_GPU)
    assert row.status == doctor.FAIL
    assert LAYOUT in row.detail and REFUSED_AT_START in row.detail
    assert "exit 2" in row.detail and row.fix == "sir-convert models download"


def test_doctor_says_a_host_without_a_gpu_starts_and_fails_every_job(tmp_path: Path) -> None:
    row = _models_row(_docling_on_the_gpu(tmp_path), NO_GPU)
    assert row.status == doctor.FAIL  # still to be fixed before a GPU arrives
    assert UNUSED_ON_THIS_HOST in row.detail and "refuses to start (exit 2" in row.detail
    assert "gpu_not_available" in row.detail and "daemon starts" in row.detail
    assert "does not start" not in row.detail


@pytest.mark.slow
def test_with_a_gpu_the_start_is_refused_exit_2_models_missing(tmp_path: Path) -> None:
    locks = tmp_path / "run"
    locks.mkdir()
    a_gpu = GpuProbe(True, DEVICE, "ok", "ok", "available")
    service = scripted_service(
        _docling_on_the_gpu(tmp_path), ScriptedWorker(probe=a_gpu), lock_folder=locks
    )
    with capture_logs() as logged:
        code = service.run()  # the models are checked before anything touches CUDA
    assert code == 2
    assert not service.ready.is_set()
    (failed,) = [e for e in logged if e["event"] == "engine_start_failed"]
    assert failed["reason"] == "models_missing" and "models download" in failed["message"]


@pytest.mark.slow
def test_without_a_gpu_the_start_goes_on_and_says_the_models_are_missing(tmp_path: Path) -> None:
    no_gpu = GpuProbe(False, None, "no usable GPU: test", "nvml_unavailable", "")
    service = scripted_service(_docling_on_the_gpu(tmp_path), ScriptedWorker(probe=no_gpu))
    with capture_logs() as logged:
        thread = threading.Thread(target=lambda: setattr(service, "code", service.run()))
        thread.start()
        try:
            assert service.ready.wait(60)
        finally:
            service.request_stop()
            thread.join(60)
    assert service.code == 0  # type: ignore[attr-defined]
    (said,) = [e for e in logged if e["event"] == "models_missing"]
    assert said["log_level"] == "warning" and said["fix"] == "sir-convert models download"
    assert LAYOUT in said["missing"] and said["effect"] == UNUSED_ON_THIS_HOST
    assert any(e["event"] == "no_backend_can_run" for e in logged)


def test_the_guide_says_both_cases() -> None:
    guide = " ".join((REPO / "docs" / "operations.md").read_text(encoding="utf-8").split())
    old_claim = "A start without them logs `engine_start_failed` (`models_missing`) and exits 2,"
    assert old_claim not in guide  # true on a GPU host only
    assert "`models_missing` as a warning" in guide
    assert "refuses to start: `engine_start_failed`, reason `models_missing`, exit 2" in guide


# -- RapidOCR's models, by the engine that will run OCR ------------------------------------------

OCR_ON = {"backend_strategy": "docling", "acceleration_policy": "gpu_prefer", "ocr_mode": "auto"}


def _models_from_an_old_download(root: Path) -> Path:
    """Every model folder filled, RapidOcr with the ONNX files only (no torch weights)."""
    models = root / "models"
    for folder in (LAYOUT, f"{TABLEFORMER}/fast", f"{TABLEFORMER}/accurate"):
        (models / folder).mkdir(parents=True)
        (models / folder / "model.safetensors").write_bytes(b"weights")
    (models / RAPIDOCR).mkdir()
    for name in RAPIDOCR_FILES["onnxruntime"]:
        (models / RAPIDOCR / name).write_bytes(b"onnx")
    return models


@pytest.mark.parametrize(("device", "refused"), [("cuda", True), ("cpu", False)])
def test_the_worker_needs_the_torch_weights_only_where_ocr_runs_on_torch(
    tmp_path: Path, device: str, refused: bool
) -> None:
    """``auto``: the torch engine on a GPU, whose weights an ONNX-only folder lacks (the start
    is refused, naming them); the ONNX engine on the CPU, whose files are there."""
    models = _models_from_an_old_download(tmp_path)
    context = BackendContext(device, 0, ThreadPoolExecutor(1), str(models))  # type: ignore[arg-type]
    options = (ConversionOptions(**OCR_ON),)  # type: ignore[arg-type]
    backend = DoclingBackend(context)
    if not refused:
        backend._check_models(options)
        return
    with pytest.raises(JobFailure) as failed:
        backend._check_models(options)
    assert failed.value.details["reason"] == "models_missing"
    assert "RapidOCR models (torch engine)" in failed.value.message
    (missing,) = failed.value.details["missing"]
    assert missing.startswith(f"{RAPIDOCR}/{{") and "PP-OCRv6_rec_small.pth" in missing
    assert "ppocrv6_dict.txt" in missing and ".onnx" not in missing


def test_doctor_asks_for_the_torch_weights_on_a_gpu_host(tmp_path: Path) -> None:
    config = load_config(
        tmp_path,
        conversion=OCR_ON,
        governance={"allow_cpu_fallback": True, "decision_record": "tests"},
        gpu={"models_path": str(_models_from_an_old_download(tmp_path))},
    )
    on_a_gpu = _models_row(config, A_GPU)
    assert on_a_gpu.status == doctor.FAIL and "PP-OCRv6_det_small.pth" in on_a_gpu.detail
    # without a GPU this config falls back to the CPU, where the ONNX engine reads
    assert _models_row(config, NO_GPU).status == doctor.OK
    onnx = load_config(
        tmp_path,
        conversion=OCR_ON,
        governance={"allow_cpu_fallback": True, "decision_record": "tests"},
        gpu={"models_path": config.gpu.models_path, "ocr_backend": "onnxruntime"},
    )
    assert _models_row(onnx, A_GPU).status == doctor.OK  # chosen by name: no torch weights


def test_models_check_lists_each_engine_the_config_may_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPU host runs OCR on torch, the governed CPU fallback on ONNX: both are checked."""
    models = _models_from_an_old_download(tmp_path)
    path = write_config(
        tmp_path,
        conversion=OCR_ON,
        governance={"allow_cpu_fallback": True, "decision_record": "tests"},
        gpu={"models_path": str(models)},
    )
    assert main(["--config", str(path), "models", "check"]) == 1
    out = capsys.readouterr().out
    assert "ok       RapidOCR models (onnxruntime engine)" in out
    assert "MISSING  RapidOCR models (torch engine)" in out and "PP-OCRv6_rec_small.pth" in out
    for name in RAPIDOCR_FILES["torch"]:
        (models / RAPIDOCR / name).write_bytes(b"torch")
    assert main(["--config", str(path), "models", "check"]) == 0


@pytest.mark.slow
def test_models_download_fetches_both_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docling.utils.model_downloader as downloader

    asked: dict[str, Any] = {}
    monkeypatch.setattr(downloader, "download_models", lambda **kw: asked.update(kw) or tmp_path)
    assert models.download(tmp_path) == tmp_path
    assert asked["with_rapidocr"] is True
    assert sorted(asked["rapidocr_models"]) == ["onnxruntime:ch", "torch:ch"]
