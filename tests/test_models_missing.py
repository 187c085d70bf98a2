"""A missing models folder: doctor said "the daemon does not start" and the guide "exits 2", yet
on a host with no GPU it started and became ready. What is true: a worker that loads docling (a
usable GPU) refuses the start, exit 2 with ``models_missing``; where no docling job can run
under the lock, the daemon starts, says the models are missing, and every job fails
``gpu_not_available`` anyway. Doctor, the start and the guide say that same thing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot.backends.models import LAYOUT, REFUSED_AT_START, UNUSED_ON_THIS_HOST
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.gpu import GpuDevice, GpuProbe
from sir_convert_a_lot.ops import doctor
from sir_convert_a_lot.ops.doctor.gpu import GpuSeen
from sir_convert_a_lot.ops.doctor.models import models_present
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import REPO, load_config

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
    service = Service(
        _docling_on_the_gpu(tmp_path),
        probe_override=a_gpu,
        lock_folder=locks,
        install_signal_handlers=False,
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
    service = Service(
        _docling_on_the_gpu(tmp_path), probe_override=no_gpu, install_signal_handlers=False
    )
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
