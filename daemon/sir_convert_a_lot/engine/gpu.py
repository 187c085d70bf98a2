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
import time
from collections.abc import Callable
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


def probe(index: int, *, use_torch: bool = True, torch_index: int | None = None) -> GpuProbe:
    """NVML first: where it finds no driver, CUDA cannot work either, and importing torch
    (seconds, hundreds of MB) to be told so again is skipped. ``torch_index``: the device as
    CUDA numbers it here when that differs from the host's (a Ray actor sees one, as 0)."""
    nvml_status, device = probe_nvml(index)
    if device is None:
        return GpuProbe(False, None, f"no usable GPU: {nvml_status}", nvml_status, "not_checked")
    if not use_torch:
        return GpuProbe(True, device, "ok", nvml_status, "not_checked")
    torch_status = probe_torch(index if torch_index is None else torch_index)
    if torch_status != "available":
        return GpuProbe(False, device, f"GPU present but {torch_status}", nvml_status, torch_status)
    return GpuProbe(True, device, "ok", nvml_status, torch_status)


LOCK_FOLDER = Path("/run/sir-convert")
SERVICE_GROUP = "sir-convert"
_WAIT_POLL_SECONDS = 0.5
_WAIT_ANNOUNCE_SECONDS = 60.0


class LockFolderUnavailable(Exception):
    """The host's one device-lock folder cannot be used by this user."""


def runtime_dir(create: bool = True) -> Path:
    """The one host-wide folder for device locks, ``/run/sir-convert``.

    Never a per-user fallback: a root ``convert`` and the daemon with lock files in two places
    would share a GPU. tmpfiles.d creates it for the service group (2770); root may create it
    too (then with that group, so the service can use it). With ``create=False`` (doctor)
    nothing is made."""
    if create:
        _ensure_lock_folder(LOCK_FOLDER)
    return LOCK_FOLDER


_TMPFILES = "systemd-tmpfiles --create /usr/lib/tmpfiles.d/sir-convert.conf"


def _ensure_lock_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o2770)
        _give_to_service_group(folder, 0o2770)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LockFolderUnavailable(
            f"the host's device-lock folder {folder} does not exist and cannot be created by "
            f"uid {os.getuid()} ({exc.strerror}); as root run {_TMPFILES}"
        ) from None
    if problem := lock_folder_problem(folder):
        raise LockFolderUnavailable("; ".join(problem))


def lock_folder_problem(folder: Path) -> tuple[str, str] | None:
    """Why this user cannot take device locks in ``folder`` as it is now, and the fix; None
    when it can. Creates nothing (doctor asks this too)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return (
            f"{folder} does not exist",
            f"as root run {_TMPFILES} (it makes the folder 2770, group {SERVICE_GROUP})",
        )
    except OSError as exc:
        return f"cannot look at {folder}: {exc.strerror}", f"as root run {_TMPFILES}"
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IWOTH:
        # A link or a world-writable folder would let anyone hand our lock to someone else.
        why = "writable by anyone" if stat.S_ISDIR(info.st_mode) else "not a folder"
        return (
            f"{folder} is not a private folder ({why}: {describe_owner(info)})",
            f"remove it and run {_TMPFILES}",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"uid {os.getuid()} may not take GPU locks in {folder} ({describe_owner(info)})",
            f"run as root, as the service user, or as a member of the {SERVICE_GROUP} group",
        )
    return None


def describe_owner(info: os.stat_result) -> str:
    """``a folder, owner root, group sir-convert, mode 2770`` (numbers where a name is
    unknown)."""
    import grp
    import pwd

    kind = (
        "link" if stat.S_ISLNK(info.st_mode) else "folder" if stat.S_ISDIR(info.st_mode) else "file"
    )
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"a {kind}, owner {owner}, group {group}, mode {stat.S_IMODE(info.st_mode):04o}"


def _give_to_service_group(path: Path | int, mode: int) -> None:
    """Root creating a lock folder or file hands it to the service group, so that the service
    can take the same lock later. Anyone else keeps the group the folder's setgid gives."""
    if os.geteuid() != 0:
        return
    import grp

    try:
        gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        gid = -1
    if isinstance(path, int):
        os.fchown(path, -1, gid)
        os.fchmod(path, mode)
    else:
        os.chown(path, -1, gid)
        os.chmod(path, mode)


class DeviceBusy(Exception):
    """Another process holds the device lock; ``holder`` says who, as far as it wrote down."""

    def __init__(self, index: int, holder: dict[str, Any]) -> None:
        super().__init__(f"GPU {index} is held by {describe_holder(holder)}; one worker per GPU")
        self.holder = holder


def describe_holder(holder: dict[str, Any]) -> str:
    who = holder.get("instance", "an unknown process")
    return f"{who} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"


WaitAnnouncer = Callable[[dict[str, Any], float], None]  # (holder, seconds waited so far)


class DeviceLock:
    """An exclusive flock on ``<lock folder>/gpu<index>.lock``, held for the worker's life.

    The folder is looked up when the lock is first taken, so CPU-only work never needs it."""

    def __init__(self, index: int, instance: str, folder: Path | None = None) -> None:
        self.index = index
        self.instance = instance
        self._folder = folder
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return (self._folder or LOCK_FOLDER) / f"gpu{self.index}.lock"

    def acquire(
        self,
        *,
        wait: bool,
        timeout: float | None = None,
        announce: WaitAnnouncer | None = None,
    ) -> None:
        """Take the lock. Busy: raise DeviceBusy at once (``wait=False``) or after ``timeout``
        seconds; while waiting, ``announce`` is told who holds it, at once and every minute."""
        if self._folder is None:
            runtime_dir(create=True)
        fd = self._open()
        started = time.monotonic()
        next_announce = started
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                waited = time.monotonic() - started
                if not wait or (timeout is not None and waited >= timeout):
                    os.close(fd)
                    raise DeviceBusy(self.index, holder) from None
                if announce is not None and time.monotonic() >= next_announce:
                    announce(holder, waited)
                    next_announce += _WAIT_ANNOUNCE_SECONDS
                time.sleep(_WAIT_POLL_SECONDS)
        record = {"instance": self.instance, "pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags)
        except FileNotFoundError:
            pass
        except PermissionError:
            raise LockFolderUnavailable(
                f"uid {os.getuid()} may not open the GPU lock {self.path}; it should be mode "
                f"0660, group {SERVICE_GROUP} (delete it while nothing runs: it is re-created)"
            ) from None
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o660)
        except FileExistsError:
            return os.open(self.path, flags)
        with contextlib.suppress(OSError):
            _give_to_service_group(fd, 0o660)  # whatever root's umask was
        return fd

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
