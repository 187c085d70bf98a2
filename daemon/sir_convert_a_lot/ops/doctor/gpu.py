"""The GPU (NVML, device nodes, torch, the device lock folder) and whether each option set can
convert anything at all on this host under the GPU-first lock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.gpu import (
    GpuDevice,
    GpuProbe,
    describe_owner,
    lock_folder_problem,
    probe_nvml,
    probe_torch,
    runtime_dir,
)
from sir_convert_a_lot.engine.policy import RunOn, decide
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, WARN, Check


@dataclass(frozen=True)
class GpuSeen:
    """What doctor found of the configured GPU: NVML, torch (None when not asked) and the
    device nodes a process needs to reach it."""

    nvml_status: str
    device: GpuDevice | None
    torch_state: str | None
    absent_nodes: tuple[str, ...]
    unusable_nodes: tuple[str, ...]

    @property
    def usable(self) -> bool:
        nodes_ok = not self.absent_nodes and not self.unusable_nodes
        return self.device is not None and nodes_ok and self.torch_state in (None, "available")

    @property
    def reason(self) -> str:
        if self.device is None:
            return self.nvml_status
        if self.absent_nodes or self.unusable_nodes:
            return "device nodes missing or not usable"
        return self.torch_state or "ok"

    def as_probe(self) -> GpuProbe:
        return GpuProbe(
            self.usable, self.device, self.reason, self.nvml_status, self.torch_state or ""
        )


def look_for_gpu(config: Config, deep: bool) -> GpuSeen:
    index = config.gpu.device_index
    status, device = probe_nvml(index)
    nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", f"/dev/nvidia{index}"]
    absent = tuple(n for n in nodes if not os.path.exists(n))
    unusable = tuple(n for n in nodes if os.path.exists(n) and not os.access(n, os.R_OK | os.W_OK))
    # torch takes seconds to import: asked only when the config uses the GPU at all.
    wanted = deep and device is not None and _needs_gpu(config)
    torch_state = probe_torch(index) if wanted else None
    return GpuSeen(status, device, torch_state, absent, unusable)


def _needs_gpu(config: Config) -> bool:
    option_sets = [config.defaults, *config.profiles.values()]
    return any(o.acceleration_policy != "cpu_only" for o in option_sets)


def device(config: Config, seen: GpuSeen) -> Iterator[Check]:
    index = config.gpu.device_index
    needed = _needs_gpu(config)
    missing_is = FAIL if needed and not config.governance.allow_cpu_fallback else WARN
    device = seen.device
    if not needed:
        yield Check(
            OK, "GPU", f"not used by this config (cpu_only everywhere); NVML: {seen.nvml_status}"
        )
        return
    if device is None:
        yield Check(
            missing_is,
            "GPU (NVML)",
            f"no GPU {index}: {seen.nvml_status}",
            "install the NVIDIA driver and nvidia-ml-py; check nvidia-smi",
        )
    else:
        yield Check(
            OK,
            "GPU (NVML)",
            f"{device.name}, driver {device.driver_version}, "
            f"{device.memory_total_bytes // (1024**2)} MiB",
        )
    if seen.absent_nodes or seen.unusable_nodes:
        yield Check(
            missing_is,
            "GPU device nodes",
            f"missing {list(seen.absent_nodes)}, not read-writable {list(seen.unusable_nodes)}",
            "load nvidia-uvm (nvidia-modprobe -u -c=0); allow the nodes in the unit's DeviceAllow=",
        )
    else:
        yield Check(OK, "GPU device nodes", f"/dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia{index}")
    if seen.torch_state is not None:
        available = seen.torch_state == "available"
        yield Check(
            OK if available else missing_is,
            "CUDA (torch)",
            seen.torch_state,
            "" if available else "install the CUDA build of torch",
        )
    folder = runtime_dir(create=False)
    if problem := lock_folder_problem(folder):
        why, fix = problem
        yield Check(FAIL, "device lock folder", why, fix)
    else:
        yield Check(OK, "device lock folder", f"{folder} ({describe_owner(os.stat(folder))})")


def backends(config: Config, gpu: GpuSeen) -> Iterator[Check]:
    """Whether each option set (the defaults, every profile) can convert anything at all on
    this host under the lock, so that 'every file fails gpu_not_available' is said up front."""
    probe = gpu.as_probe()
    sets = [("conversion", config.defaults)]
    sets += [(f"profiles.{name}", options) for name, options in config.profiles.items()]
    for where, options in sets:
        name = f"backend ({where})"
        decision = decide(options, probe, config.governance)
        if isinstance(decision, RunOn):
            yield Check(OK, name, f"{options.backend} on {decision.device}")
            continue
        reason = decision.details.get("reason", "")
        yield Check(
            FAIL, name, _refusal_detail(where, reason, gpu), _refusal_fix(config, where, reason)
        )


def _refusal_detail(where: str, reason: str, gpu: GpuSeen) -> str:
    if reason == "cpu_only_locked":
        return (
            f'{where}.acceleration_policy = "cpu_only" while the GPU-first lock holds: '
            "every PDF and image fails gpu_not_available"
        )
    if reason == "no_cuda_device":
        return (
            f"no usable GPU ({gpu.reason}) and the GPU-first lock allows no CPU conversion: "
            "every PDF and image fails gpu_not_available (office files, markup and e-mail run no "
            "model and still convert)"
        )
    return f"{where}: every file is refused ({reason})"


def _refusal_fix(config: Config, where: str, reason: str) -> str:
    governance = config.governance
    unlock = (
        "lift the lock (docs/operations.md): governance.allow_cpu_only = true with "
        f'governance.decision_record, {where}.acceleration_policy = "cpu_only", and without hub '
        f'access {where}.backend_strategy = "pymupdf", {where}.ocr_mode = "off"'
    )
    if reason == "cpu_only_locked":
        return f'{unlock}; or use acceleration_policy = "gpu_required" on a host with a GPU'
    if governance.unlocked and governance.allow_cpu_fallback and not governance.allow_cpu_only:
        return f'make the GPU usable, or set {where}.acceleration_policy = "gpu_prefer"'
    return f"make the GPU usable (see the GPU rows), or {unlock}"
