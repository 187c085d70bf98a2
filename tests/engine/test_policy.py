"""The GPU-first lock (CONTRACT 4): the whole decision matrix, and no environment switch."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.gpu import GpuDevice, GpuProbe
from sir_convert_a_lot.engine.policy import (
    Refused,
    RunOn,
    decide,
    forbidden_environment,
    stage_refusal,
)
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.options import AccelerationPolicy, BackendStrategy, ConversionOptions
from tests.helpers import write_config

RECORD = "docs/decisions/0009-cpu-while-the-gpu-is-repaired.md"

PROBES: dict[str, GpuProbe] = {
    "gpu": GpuProbe(
        cuda_available=True,
        device=GpuDevice(0, "NVIDIA H200", "570.86.15", 150_000_000_000, "GPU-1234"),
        reason="ok",
        nvml="ok",
        torch_cuda="available",
    ),
    "no_gpu": GpuProbe(
        cuda_available=False,
        device=None,
        reason="no usable GPU: nvml_unavailable: Driver Not Loaded",
        nvml="nvml_unavailable: Driver Not Loaded",
        torch_cuda="not_checked",
    ),
    # NVML sees a card but CUDA cannot use it (e.g. a CPU-only torch): that is no GPU either.
    "gpu_unusable": GpuProbe(
        cuda_available=False,
        device=GpuDevice(0, "NVIDIA H200", "570.86.15", 150_000_000_000, "GPU-1234"),
        reason="GPU present but torch_cuda_unavailable",
        nvml="ok",
        torch_cuda="torch_cuda_unavailable",
    ),
}

GOVERNANCE: dict[str, Governance] = {
    "locked": Governance(),
    "cpu_only_with_record": Governance(allow_cpu_only=True, decision_record=RECORD),
    "fallback_with_record": Governance(allow_cpu_fallback=True, decision_record=RECORD),
    "both_with_record": Governance(
        allow_cpu_only=True, allow_cpu_fallback=True, decision_record=RECORD
    ),
    # Switches without a record do nothing: they behave exactly as locked.
    "cpu_only_without_record": Governance(allow_cpu_only=True),
    "fallback_without_record": Governance(allow_cpu_fallback=True),
}
ALLOWS_CPU_ONLY = {"cpu_only_with_record", "both_with_record"}
ALLOWS_FALLBACK = {"fallback_with_record", "both_with_record"}

POLICIES = ("gpu_required", "gpu_prefer", "cpu_only")
GPU_BACKENDS = ("auto", "docling")
BACKENDS = (*GPU_BACKENDS, "pymupdf")


@dataclass(frozen=True)
class Expect:
    device: str | None = None  # RunOn(device) ...
    fell_back: bool = False  # ... with the gpu_prefer fallback warning
    code: ErrorCode | None = None  # or Refused(code) ...
    reason: str | None = None  # ... with details["reason"]


RUN_CUDA = Expect(device="cuda")
RUN_CPU = Expect(device="cpu")
FELL_BACK = Expect(device="cpu", fell_back=True)
NO_CUDA = Expect(code=ErrorCode.GPU_NOT_AVAILABLE, reason="no_cuda_device")
CPU_LOCKED = Expect(code=ErrorCode.GPU_NOT_AVAILABLE, reason="cpu_only_locked")
INVALID = Expect(code=ErrorCode.VALIDATION_ERROR)


def _cases() -> list[Any]:
    """Every (policy, probe, governance, backend), each expected outcome written from one rule."""
    cases: list[Any] = []

    def add(policy: str, probe: str, gov: str, backend: str, expect: Expect) -> None:
        cases.append(
            pytest.param(
                policy, probe, gov, backend, expect, id=f"{policy}-{probe}-{gov}-{backend}"
            )
        )

    for probe, gov in itertools.product(PROBES, GOVERNANCE):
        # pymupdf runs on the CPU only: a GPU policy on it is a contradiction, whatever the host.
        for policy in ("gpu_required", "gpu_prefer"):
            add(policy, probe, gov, "pymupdf", INVALID)

        # cpu_only: runs on the CPU only when governance allows it with a record; otherwise the
        # lock refuses it, even with a GPU present. The backend does not matter.
        for backend in BACKENDS:
            add("cpu_only", probe, gov, backend, RUN_CPU if gov in ALLOWS_CPU_ONLY else CPU_LOCKED)

        for backend, policy in itertools.product(GPU_BACKENDS, ("gpu_required", "gpu_prefer")):
            if probe == "gpu":
                # A usable GPU: both GPU policies run on it, locked or not.
                expect = RUN_CUDA
            elif policy == "gpu_prefer" and gov in ALLOWS_FALLBACK:
                # The one decision-gated fallback, and it says so.
                expect = FELL_BACK
            else:
                # gpu_required never falls back; locked gpu_prefer behaves like gpu_required.
                expect = NO_CUDA
            add(policy, probe, gov, backend, expect)
    return cases


CASES = _cases()


def test_the_matrix_covers_every_combination_once() -> None:
    combos = [tuple(case.values[:4]) for case in CASES]

    assert len(combos) == len(set(combos))
    assert set(combos) == set(itertools.product(POLICIES, PROBES, GOVERNANCE, BACKENDS))


@pytest.mark.parametrize(("policy", "probe", "gov", "backend", "expect"), CASES)
def test_decision_matrix(
    policy: AccelerationPolicy, probe: str, gov: str, backend: BackendStrategy, expect: Expect
) -> None:
    options = ConversionOptions(backend_strategy=backend, acceleration_policy=policy)

    decision = decide(options, PROBES[probe], GOVERNANCE[gov])

    if expect.device is not None:
        assert isinstance(decision, RunOn), decision
        assert decision.device == expect.device
        assert ("gpu_prefer_fell_back_to_cpu" in decision.warnings) is expect.fell_back
        return
    assert isinstance(decision, Refused), decision
    assert decision.code == expect.code
    assert decision.message.strip()
    failure = decision.as_failure()
    assert isinstance(failure, JobFailure)
    assert failure.code == expect.code
    if expect.code == ErrorCode.GPU_NOT_AVAILABLE:
        assert decision.code.retryable is True
        assert decision.details["reason"] == expect.reason
        assert failure.details["reason"] == expect.reason
    else:
        assert decision.code.retryable is False


def test_gpu_not_available_says_what_the_probe_found() -> None:
    options = ConversionOptions(acceleration_policy="gpu_required")

    decision = decide(options, PROBES["no_gpu"], Governance())

    assert isinstance(decision, Refused)
    assert PROBES["no_gpu"].reason in str(decision.details.values())


def test_the_environment_cannot_unlock_a_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY", "1")
    monkeypatch.setenv("SIR_CONVERT_A_LOT_ALLOW_CPU_FALLBACK", "1")

    cpu_only = decide(
        ConversionOptions(acceleration_policy="cpu_only"), PROBES["gpu"], Governance()
    )
    prefer = decide(
        ConversionOptions(acceleration_policy="gpu_prefer"), PROBES["no_gpu"], Governance()
    )

    assert isinstance(cpu_only, Refused)
    assert cpu_only.code == ErrorCode.GPU_NOT_AVAILABLE
    assert isinstance(prefer, Refused)
    assert prefer.code == ErrorCode.GPU_NOT_AVAILABLE


# --- formats that run no model ----------------------------------------------------------------

MODEL_FREE_NAMES = ["letter.docx", "Deck.PPTX", "sub/dir/book.xlsx", "page.html", "mail.eml"]


@pytest.mark.parametrize(("policy", "probe", "gov", "backend"), [case.values[:4] for case in CASES])
def test_a_format_that_runs_no_model_runs_on_no_device_under_every_policy_and_lock(
    policy: AccelerationPolicy, probe: str, gov: str, backend: BackendStrategy
) -> None:
    options = ConversionOptions(backend_strategy=backend, acceleration_policy=policy)

    for name in MODEL_FREE_NAMES:
        assert decide(options, PROBES[probe], GOVERNANCE[gov], source_name=name) == RunOn("none")


@pytest.mark.parametrize("name", ["scan.png", "scan.TIFF", "report.pdf", "no-suffix", ""])
def test_pdfs_images_and_unknown_names_keep_the_lock_s_rules(name: str) -> None:
    locked = decide(ConversionOptions(), PROBES["no_gpu"], Governance(), source_name=name)
    on_gpu = decide(ConversionOptions(), PROBES["gpu"], Governance(), source_name=name)

    assert isinstance(locked, Refused) and locked.code is ErrorCode.GPU_NOT_AVAILABLE
    assert on_gpu == RunOn("cuda")


def test_a_job_decided_to_run_no_model_passes_the_stage_check_only_with_no_stage() -> None:
    assert stage_refusal(RunOn("none"), {}, Governance()) is None
    refused = stage_refusal(RunOn("none"), {"layout": "cpu"}, GOVERNANCE["both_with_record"])
    assert isinstance(refused, Refused) and refused.code is ErrorCode.GPU_NOT_AVAILABLE
    assert refused.details["reason"] == "stage_without_device"
    assert refused.details["stage"] == "layout"


# --- forbidden environment variables ----------------------------------------------------------


def test_forbidden_environment_names_the_unlock_variable() -> None:
    assert forbidden_environment({"SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY": "1", "PATH": "x"}) == [
        "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY"
    ]


def test_forbidden_environment_counts_a_variable_as_set_whatever_its_value() -> None:
    environ = {
        "SIR_CONVERT_A_LOT_ALLOW_CPU_FALLBACK": "0",
        "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY": "",
        "HOME": "/root",
    }

    assert forbidden_environment(environ) == [
        "SIR_CONVERT_A_LOT_ALLOW_CPU_FALLBACK",
        "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY",
    ]


def test_forbidden_environment_ignores_other_variables() -> None:
    environ = {"SIR_CONVERT_CORPUS": "/x", "SIR_CONVERT_A_LOT_LOG": "debug", "PATH": "/bin"}

    assert forbidden_environment(environ) == []


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIR_CONVERT_A_LOT_ALLOW_CPU_"):
            monkeypatch.delenv(name)


@pytest.fixture
def service_started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replaces the daemon with a recorder, so a test sees whether `run` got as far as starting."""
    import sir_convert_a_lot.service.daemon as service

    started: list[Any] = []

    class FakeService:
        def __init__(self, config: Any) -> None:
            started.append(config)

        def run(self) -> int:
            return 0

    monkeypatch.setattr(service, "Service", FakeService)
    monkeypatch.setattr(logs, "configure", lambda *args, **kwargs: None)
    _clean_environment(monkeypatch)
    return started


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY", "1"),
        ("SIR_CONVERT_A_LOT_ALLOW_CPU_FALLBACK", "true"),
        ("SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY", ""),
    ],
)
def test_run_refuses_to_start_with_an_unlock_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    service_started: list[Any],
    name: str,
    value: str,
) -> None:
    config = write_config(tmp_path)
    monkeypatch.setenv(name, value)

    code = main(["--config", str(config), "run"])

    assert code == 2
    assert service_started == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert name in lines[0]
    assert not (tmp_path / "inbox").exists()


def test_run_starts_with_the_same_config_and_a_clean_environment(
    tmp_path: Path, service_started: list[Any]
) -> None:
    config = write_config(tmp_path)

    assert main(["--config", str(config), "run"]) == 0

    assert len(service_started) == 1


def test_convert_refuses_with_an_unlock_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    service_started: list[Any],
) -> None:
    import sir_convert_a_lot.jobs.oneshot as oneshot

    def must_not_convert(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted despite an environment unlock")

    monkeypatch.setattr(oneshot, "convert_files", must_not_convert)
    config = write_config(tmp_path)
    monkeypatch.setenv("SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY", "1")

    code = main(["--config", str(config), "convert", str(tmp_path / "a.pdf")])

    assert code == 2
    assert "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY" in capsys.readouterr().err
