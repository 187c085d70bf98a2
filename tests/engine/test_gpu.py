"""The GPU probe (never raises, tells why not) and the host-local device lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot.engine import gpu
from sir_convert_a_lot.engine.gpu import (
    DeviceBusy,
    DeviceLock,
    GpuDevice,
    GpuProbe,
    LockFolderUnavailable,
    probe,
    runtime_dir,
)

REPO = Path(__file__).resolve().parents[2]
GIB = 1024**3


class FakeNVMLError(Exception):
    pass


def fake_pynvml(
    *,
    count: int = 1,
    name: Any = b"NVIDIA H200",
    driver: Any = "570.86.15",
    memory: int = 141 * GIB,
    init_error: str | None = None,
) -> tuple[types.ModuleType, list[str]]:
    """A stand-in for nvidia-ml-py; ``calls`` records init/shutdown."""
    module = types.ModuleType("pynvml")
    calls: list[str] = []

    def nvmlInit() -> None:
        calls.append("init")
        if init_error is not None:
            raise FakeNVMLError(init_error)

    def nvmlShutdown() -> None:
        calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(index: int) -> Any:
        if index >= count:
            raise FakeNVMLError("Invalid Argument")
        return ("handle", index)

    module.nvmlInit = nvmlInit  # type: ignore[attr-defined]
    module.nvmlShutdown = nvmlShutdown  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: count  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = nvmlDeviceGetHandleByIndex  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(  # type: ignore[attr-defined]
        total=memory, free=memory, used=0
    )
    module.nvmlDeviceGetName = lambda handle: name  # type: ignore[attr-defined]
    module.nvmlSystemGetDriverVersion = lambda: driver  # type: ignore[attr-defined]
    module.nvmlDeviceGetUUID = lambda handle: f"GPU-fake-{handle[1]}"  # type: ignore[attr-defined]
    return module, calls


# --- probe -----------------------------------------------------------------------------------


def test_probe_on_this_host_never_raises_and_agrees_with_the_driver() -> None:
    found = probe(0)

    driver_loaded = Path("/proc/driver/nvidia/version").exists()
    if driver_loaded:
        assert found.device is not None
    else:
        assert found.cuda_available is False
        assert found.device is None
        assert found.reason.strip()
        assert found.reason != "ok"


def test_probe_without_the_nvml_bindings_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail

    found = probe(0, use_torch=False)

    assert found.cuda_available is False
    assert found.device is None
    assert found.reason.strip()


def test_probe_reports_the_device_nvml_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    module, calls = fake_pynvml(name=b"NVIDIA H200", driver=b"570.86.15", memory=141 * GIB)
    monkeypatch.setitem(sys.modules, "pynvml", module)

    found = probe(0, use_torch=False)

    assert found.cuda_available is True
    assert found.device is not None
    assert found.device.index == 0
    assert found.device.name == "NVIDIA H200"
    assert found.device.driver_version == "570.86.15"
    assert found.device.memory_total_bytes == 141 * GIB
    assert calls == ["init", "shutdown"]


def test_probe_accepts_str_values_from_newer_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    module, _calls = fake_pynvml(name="NVIDIA A100", driver="550.54.14", memory=80 * GIB)
    monkeypatch.setitem(sys.modules, "pynvml", module)

    found = probe(0, use_torch=False)

    assert found.device == GpuDevice(0, "NVIDIA A100", "550.54.14", 80 * GIB, "GPU-fake-0")


def test_probe_when_nvml_init_fails_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    module, _calls = fake_pynvml(init_error="Driver Not Loaded")
    monkeypatch.setitem(sys.modules, "pynvml", module)

    found = probe(0, use_torch=False)

    assert found.cuda_available is False
    assert found.device is None
    assert "nvml_unavailable" in found.reason
    assert "Driver Not Loaded" in found.reason


@pytest.mark.parametrize(("count", "index"), [(1, 1), (0, 0), (2, 5)])
def test_probe_of_a_device_index_beyond_the_count_is_no_gpu(
    monkeypatch: pytest.MonkeyPatch, count: int, index: int
) -> None:
    module, calls = fake_pynvml(count=count)
    monkeypatch.setitem(sys.modules, "pynvml", module)

    found = probe(index, use_torch=False)

    assert found.cuda_available is False
    assert found.device is None
    assert found.reason.strip()
    assert calls == ["init", "shutdown"]


def test_probe_survives_an_nvml_error_mid_query(monkeypatch: pytest.MonkeyPatch) -> None:
    module, calls = fake_pynvml()

    def broken(handle: Any) -> Any:
        raise FakeNVMLError("GPU is lost")

    module.nvmlDeviceGetMemoryInfo = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)

    found = probe(0, use_torch=False)

    assert found.cuda_available is False
    assert found.device is None
    assert "GPU is lost" in found.reason
    assert calls == ["init", "shutdown"]


def test_probe_with_a_gpu_that_torch_cannot_use_is_no_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module, _calls = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    torch = types.ModuleType("torch")
    torch.backends = types.SimpleNamespace(  # type: ignore[attr-defined]
        cuda=types.SimpleNamespace(is_built=lambda: True)
    )
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: False, device_count=lambda: 0
    )
    monkeypatch.setitem(sys.modules, "torch", torch)

    found = probe(0, use_torch=True)

    assert found.cuda_available is False
    assert found.device is not None  # the card is there, and the reason says what is missing
    assert "torch_cuda_unavailable" in found.reason


@pytest.mark.parametrize(
    "value",
    [
        GpuProbe(
            True,
            GpuDevice(1, "NVIDIA H200", "570.86.15", 141 * GIB, "GPU-abc"),
            "ok",
            "ok",
            "available",
        ),
        GpuProbe(False, None, "no usable GPU: nvml_unavailable: x", "nvml_unavailable: x", "-"),
    ],
    ids=["with-device", "without-device"],
)
def test_gpu_probe_round_trips_through_json(value: GpuProbe) -> None:
    data = json.loads(json.dumps(value.to_dict()))

    assert GpuProbe.from_dict(data) == value


# --- runtime folder and device lock ----------------------------------------------------------


def test_there_is_one_lock_folder_for_every_user_of_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No per-user fallback: root's convert and the daemon must meet at the same lock."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/tmp/elsewhere")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/elsewhere-too")
    assert runtime_dir(create=False) == Path("/run/sir-convert")
    assert DeviceLock(0, "me").path == Path("/run/sir-convert/gpu0.lock")


def test_an_unusable_lock_folder_is_refused_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)
    monkeypatch.setattr(gpu, "LOCK_FOLDER", public)
    with pytest.raises(LockFolderUnavailable, match="not a private folder"):
        DeviceLock(0, "me").acquire(wait=False)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    monkeypatch.setattr(gpu, "LOCK_FOLDER", link)
    with pytest.raises(LockFolderUnavailable, match="not a private folder"):
        DeviceLock(0, "me").acquire(wait=False)
    monkeypatch.setattr(gpu, "LOCK_FOLDER", tmp_path / "missing" / "deeper")
    with pytest.raises(LockFolderUnavailable, match="systemd-tmpfiles --create"):
        DeviceLock(0, "me").acquire(wait=False)


def test_root_creates_the_lock_folder_and_files_for_the_service_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run-sir-convert"
    monkeypatch.setattr(gpu, "LOCK_FOLDER", folder)
    old_umask = os.umask(0o077)  # root's umask must not lock the service out
    try:
        lock = DeviceLock(3, "root-convert")
        lock.acquire(wait=False)
        lock.release()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2770
    assert stat.S_IMODE((folder / "gpu3.lock").stat().st_mode) == 0o660


@pytest.mark.slow
def test_a_bounded_wait_says_who_holds_the_gpu_then_gives_up(tmp_path: Path) -> None:
    first = DeviceLock(0, "host-a-gpu0", folder=tmp_path)
    first.acquire(wait=False)
    heard: list[tuple[dict[str, object], float]] = []

    def listen(holder: dict[str, object], waited: float) -> None:
        heard.append((holder, waited))

    started = time.monotonic()
    try:
        with pytest.raises(DeviceBusy, match="host-a-gpu0"):
            DeviceLock(0, "a-convert", folder=tmp_path).acquire(
                wait=True,
                timeout=1.0,
                announce=lambda holder, waited: heard.append((holder, waited)),
            )
    finally:
        first.release()
    assert time.monotonic() - started >= 1.0
    assert heard and heard[0][0]["instance"] == "host-a-gpu0" and heard[0][1] < 1.0


def test_a_second_lock_on_the_same_device_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = DeviceLock(0, "host-a-gpu0", folder=tmp_path)
    second = DeviceLock(0, "host-b-gpu0", folder=tmp_path)
    first.acquire(wait=False)
    try:
        with pytest.raises(DeviceBusy) as caught:
            second.acquire(wait=False)

        assert "host-a-gpu0" in str(caught.value)
        assert caught.value.holder.get("instance") == "host-a-gpu0"
        assert second.held is False
        assert first.held is True
    finally:
        first.release()

    second.acquire(wait=False)
    try:
        assert second.held is True
        assert second.holder().get("instance") == "host-b-gpu0"
    finally:
        second.release()
    assert second.held is False


def test_locks_on_different_devices_do_not_conflict(tmp_path: Path) -> None:
    gpu0 = DeviceLock(0, "w0", folder=tmp_path)
    gpu1 = DeviceLock(1, "w1", folder=tmp_path)
    gpu0.acquire(wait=False)
    try:
        gpu1.acquire(wait=False)
        assert gpu1.held
        gpu1.release()
    finally:
        gpu0.release()


_HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sir_convert_a_lot.engine.gpu import DeviceLock

    lock = DeviceLock(0, "other-process-gpu0", folder=Path(sys.argv[1]))
    lock.acquire(wait=False)
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin
    lock.release()
    """
)


def _start_holder(folder: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "daemon"), env.get("PYTHONPATH", "")])
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER_SCRIPT, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_the_device_lock_holds_across_processes(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    mine = DeviceLock(0, "this-process-gpu0", folder=tmp_path)
    try:
        with pytest.raises(DeviceBusy) as caught:
            mine.acquire(wait=False)
        assert "other-process-gpu0" in str(caught.value)
        assert str(holder.pid) in str(caught.value)
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
        assert holder.wait(timeout=60) == 0

    mine.acquire(wait=False)
    assert mine.held
    mine.release()


@pytest.mark.slow
def test_a_crashed_holder_releases_the_device_lock(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    mine = DeviceLock(0, "this-process-gpu0", folder=tmp_path)
    with pytest.raises(DeviceBusy):
        mine.acquire(wait=False)

    holder.kill()
    holder.wait(timeout=60)
    for pipe in (holder.stdin, holder.stdout):
        assert pipe is not None
        pipe.close()

    mine.acquire(wait=False)
    assert mine.held
    assert mine.holder().get("instance") == "this-process-gpu0"
    mine.release()
