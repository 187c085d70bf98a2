"""The GPU-first lock as one pure function of (options, GPU probe, governance).

While the lock holds, a job runs on the GPU or fails with ``gpu_not_available``: ``gpu_prefer``
behaves exactly like ``gpu_required`` and ``cpu_only`` is refused even with a GPU present. Only a
governance unlock with a decision record (checked when the config loads) opens the CPU paths.
Nothing here reads the environment: no variable can switch a CPU fallback on.

The lock is about where models run. A format that runs none (office files, markup, e-mail:
``formats``) needs no device at all: it runs ``"none"`` under every policy and every lock, on a
host with or without a GPU, and says ``acceleration_used: "none"`` (contract section 4). PDFs
and images keep the rules above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sir_convert_a_lot.capabilities import capabilities_of
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import runs_models
from sir_convert_a_lot.options import ConversionOptions


@dataclass(frozen=True)
class RunOn:
    """Run the job on ``device``; ``warnings`` go into the sidecar."""

    device: Literal["cuda", "cpu", "none"]  # "none": the file's format runs no model
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    code: ErrorCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_failure(self) -> JobFailure:
        return JobFailure(self.code, self.message, **self.details)


Decision = RunOn | Refused


def decide(
    options: ConversionOptions, probe: GpuProbe, governance: Governance, *, source_name: str = ""
) -> Decision:
    """Where a job runs. A file whose format runs no model (``formats.runs_models`` of its
    name; a name without a known suffix runs them, as a PDF) needs no GPU whatever the policy."""
    if not runs_models(source_name):
        return RunOn("none")
    policy = options.acceleration_policy
    backend = options.backend
    gpu = probe.cuda_available
    lock = governance.lock
    backend_uses_gpu = capabilities_of(backend).gpu

    if not backend_uses_gpu and policy != "cpu_only":
        return Refused(
            ErrorCode.VALIDATION_ERROR,
            f"The {backend} backend runs on the CPU only; it cannot honour {policy}.",
            {"reason": "backend_is_cpu_only", "backend": backend, "acceleration_policy": policy},
        )

    if policy == "cpu_only":
        if governance.unlocked and governance.allow_cpu_only:
            return RunOn("cpu")
        return _gpu_not_available(
            "cpu_only_locked",
            "CPU-only conversion is switched off by the GPU-first lock; ask the operator, "
            "or drop the file into a folder whose profile uses the GPU.",
            probe,
            lock,
        )

    if gpu and backend_uses_gpu:
        return RunOn("cuda")

    if policy == "gpu_prefer" and governance.unlocked and governance.allow_cpu_fallback:
        return RunOn("cpu", ("gpu_prefer_fell_back_to_cpu",))

    return _gpu_not_available(
        "no_cuda_device",
        "No usable GPU was found on this host, and the GPU-first lock does not allow a CPU "
        "conversion; the file can be retried once the GPU is back.",
        probe,
        lock,
    )


def _gpu_not_available(reason: str, message: str, probe: GpuProbe, lock: str) -> Refused:
    return Refused(
        ErrorCode.GPU_NOT_AVAILABLE,
        message,
        {"reason": reason, "probe": probe.reason, "lock": lock},
    )


FORBIDDEN_ENV_PREFIX = "SIR_CONVERT_A_LOT_ALLOW_CPU_"


def stage_refusal(
    decision: RunOn, stage_devices: dict[str, str], governance: Governance
) -> Refused | None:
    """The lock holds per stage: a job decided for the GPU in which a model stage ran anywhere
    else fails, unless the decision record names that stage in ``governance.cpu_stages``. A
    stage that silently fell to the CPU must not publish ``succeeded`` under ``gpu_first``; nor
    may any model stage run in a job decided to run none."""
    if decision.device == "none" and stage_devices:
        stage, device = sorted(stage_devices.items())[0]
        return Refused(
            ErrorCode.GPU_NOT_AVAILABLE,
            f"The job was decided to run no model, but its {stage} stage ran on {device}; "
            "nothing is published from it.",
            {"reason": "stage_without_device", "stage": stage, "device": device},
        )
    if decision.device != "cuda" or governance.lock != "gpu_first":
        return None
    for stage, device in sorted(stage_devices.items()):
        if device != "cuda" and stage not in governance.cpu_stages:
            return Refused(
                ErrorCode.GPU_NOT_AVAILABLE,
                f"The job was decided for the GPU, but its {stage} stage ran on {device}; under "
                "the GPU-first lock nothing is published from a stage off the GPU.",
                {
                    "reason": "stage_off_gpu",
                    "stage": stage,
                    "device": device,
                    "decided": decision.device,
                    "lock": governance.lock,
                    "fix": f"put the {stage} model on the GPU, or name the stage in "
                    "governance.cpu_stages together with governance.decision_record",
                },
            )
    return None


def ocr_left_on_cpu(config: Config) -> bool:
    """RapidOCR's onnxruntime engine, chosen by name (``auto``, the default, is torch on a GPU),
    runs on the CPU unless onnxruntime-gpu is installed: under the lock, on a GPU, every job that
    reads a page by OCR would fail its ocr stage. Said at start and by doctor, before any job
    does, unless a decision record lets OCR run on the CPU."""
    governance = config.governance
    modes = [config.defaults.ocr_mode, *(p.ocr_mode for p in config.profiles.values())]
    return (
        governance.lock == "gpu_first"
        and config.gpu.ocr_backend == "onnxruntime"
        and "ocr" not in governance.cpu_stages
        and any(mode != "off" for mode in modes)
    )


OCR_OFF_GPU = {
    "message": "gpu.ocr_backend is onnxruntime, which runs on the CPU (the plain onnxruntime "
    "wheel has no CUDA provider): under the GPU-first lock every job that reads a page by OCR "
    "(a scan) fails gpu_not_available (stage ocr)",
    "fix": 'set gpu.ocr_backend = "auto" (the default: RapidOCR\'s torch engine on the GPU, its '
    'weights from sir-convert models download), or ocr_mode = "off", or '
    'governance.cpu_stages = ["ocr"] with a decision record',
}


def forbidden_environment(environ: dict[str, str]) -> list[str]:
    """Names of environment variables that try to unlock the CPU. Their presence stops the start:
    the lock is lifted only by a decision record in the config, never by the environment."""
    return sorted(name for name in environ if name.startswith(FORBIDDEN_ENV_PREFIX))
