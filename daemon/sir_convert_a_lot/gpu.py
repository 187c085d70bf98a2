"""What GPU this host really has (NVML and torch.cuda), and the host-local lock per device.

The probe never raises: a missing NVML library, an unloaded driver or a CPU-only torch all mean
"no GPU" with a reason a person can act on. Only the worker process, which owns the CUDA
context, asks torch; the supervisor and the operator commands use NVML alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    driver_version: str
    memory_total_bytes: int
    uuid: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuProbe:
    """The outcome of looking for a usable CUDA device at ``index``."""

    cuda_available: bool
    device: GpuDevice | None
    reason: str
    nvml: str
    torch_cuda: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device"] = self.device.to_dict() if self.device else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuProbe:
        device = GpuDevice(**data["device"]) if data.get("device") else None
        return cls(
            cuda_available=bool(data["cuda_available"]),
            device=device,
            reason=str(data["reason"]),
            nvml=str(data["nvml"]),
            torch_cuda=str(data["torch_cuda"]),
        )


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_reason(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - NVMLError.__str__ itself calls into NVML
        text = ""
    return text or type(exc).__name__


def probe_nvml(index: int) -> tuple[str, GpuDevice | None]:
    """NVML's view: ("ok", device) or (a short reason, None). Never raises."""
    try:
        import pynvml
    except ImportError:
        return "nvml_python_bindings_missing", None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError, or whatever a broken driver raises
        return f"nvml_unavailable: {_nvml_reason(exc)}", None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if index >= count:
            return f"nvml_no_device_{index} ({count} present)", None
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        device = GpuDevice(
            index=index,
            name=_decode(pynvml.nvmlDeviceGetName(handle)),
            driver_version=_decode(pynvml.nvmlSystemGetDriverVersion()),
            memory_total_bytes=int(memory.total),
            uuid=_decode(pynvml.nvmlDeviceGetUUID(handle)),
        )
        return "ok", device
    except Exception as exc:  # noqa: BLE001 - the probe reports, never raises
        return f"nvml_error: {type(exc).__name__}: {exc}", None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def probe_torch(index: int) -> str:
    """torch.cuda's view: "available", or why not. Initialises CUDA: call it in the worker."""
    try:
        import torch
    except ImportError:
        return "torch_missing"
    try:
        if not torch.backends.cuda.is_built():
            return "torch_built_without_cuda"
        if not torch.cuda.is_available():
            return "torch_cuda_unavailable"
        if index >= torch.cuda.device_count():
            return f"torch_no_device_{index}"
    except Exception as exc:  # noqa: BLE001 - the probe reports, never raises
        return f"torch_cuda_error: {type(exc).__name__}: {exc}"
    return "available"


def probe(index: int, *, use_torch: bool = True) -> GpuProbe:
    """NVML first: where it finds no driver, CUDA cannot work either, and importing torch
    (seconds, hundreds of MB) to be told so again is skipped."""
    nvml_status, device = probe_nvml(index)
    if device is None:
        return GpuProbe(False, None, f"no usable GPU: {nvml_status}", nvml_status, "not_checked")
    if not use_torch:
        return GpuProbe(True, device, "ok", nvml_status, "not_checked")
    torch_status = probe_torch(index)
    if torch_status != "available":
        return GpuProbe(False, device, f"GPU present but {torch_status}", nvml_status, torch_status)
    return GpuProbe(True, device, "ok", nvml_status, torch_status)


def runtime_dir(create: bool = True) -> Path:
    """Host-local runtime folder for locks: systemd's RuntimeDirectory, else /run, else /tmp.
    With ``create=False`` (doctor) nothing is made: the first usable existing one, else the
    first candidate."""
    from_systemd = os.environ.get("RUNTIME_DIRECTORY")
    if from_systemd:
        return Path(from_systemd.split(":")[0])
    candidates = [Path("/run/sir-convert")]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        candidates.append(Path(xdg) / "sir-convert")
    candidates.append(Path(f"/tmp/sir-convert-{os.getuid()}"))  # noqa: S108 - checked below
    for candidate in candidates:
        try:
            if create:
                candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(candidate)
        except OSError:
            continue
        # A folder someone else made (or a symlink) could hand our lock to them: skip it.
        owned = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        if (owned or not create) and os.access(candidate, os.W_OK):
            return candidate
    return candidates[-1] if create else candidates[0]


class DeviceBusy(Exception):
    """Another process holds the device lock; ``holder`` says who, as far as it wrote down."""

    def __init__(self, index: int, holder: dict[str, Any]) -> None:
        who = holder.get("instance", "unknown instance")
        super().__init__(
            f"GPU {index} is held by {who} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}); one worker per GPU"
        )
        self.holder = holder


class DeviceLock:
    """An exclusive flock on ``<runtime>/gpu<index>.lock``, held for the worker's life."""

    def __init__(self, index: int, instance: str, folder: Path | None = None) -> None:
        self.index = index
        self.instance = instance
        self.path = (folder or runtime_dir()) / f"gpu{index}.lock"
        self._fd: int | None = None

    def acquire(self, *, wait: bool) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DeviceBusy(self.index, holder) from None
        record = {"instance": self.instance, "pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def holder(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return {}
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
