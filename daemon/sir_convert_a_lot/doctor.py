"""``sir-convert doctor``: everything an operator would check by hand before trusting a host,
as a table of OK / WARN / FAIL, each problem with the command or change that fixes it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot import models
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import check_overlaps, check_same_filesystem, state_folders
from sir_convert_a_lot.gpu import probe_nvml, probe_torch, runtime_dir
from sir_convert_a_lot.policy import forbidden_environment

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GIB = 1024**3
DISK_FAIL_BYTES = 1 * GIB
DISK_WARN_BYTES = 5 * GIB


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""


def run_checks(config: Config, environ: dict[str, str], deep_gpu: bool = True) -> list[Check]:
    checks: list[Check] = []
    for section in (
        _environment(environ),
        _governance(config),
        _config_file(config),
        _folders(config),
        _state_permissions(config),
        _layout(config),
        _gpu(config, deep_gpu),
        _models(config),
        _inotify(config),
        _disk(config),
    ):
        checks.extend(section)
    return checks


def _environment(environ: dict[str, str]) -> Iterator[Check]:
    found = forbidden_environment(environ)
    if found:
        yield Check(
            FAIL,
            "environment",
            f"{', '.join(found)} set: the daemon refuses to start",
            "unset it; the GPU-first lock is lifted only by governance.decision_record",
        )
    else:
        yield Check(OK, "environment", "no SIR_CONVERT_A_LOT_ALLOW_CPU_* variables")


def _governance(config: Config) -> Iterator[Check]:
    governance = config.governance
    if governance.unlocked:
        yield Check(
            WARN,
            "gpu-first lock",
            f"unlocked by {governance.decision_record} (cpu_only={governance.allow_cpu_only}, "
            f"fallback={governance.allow_cpu_fallback})",
            "remove the governance switches once the decision no longer applies",
        )
    else:
        yield Check(OK, "gpu-first lock", "holds: jobs run on the GPU or fail visibly")


def _config_file(config: Config) -> Iterator[Check]:
    if config.source is None:
        return
    try:
        mode = os.stat(config.source).st_mode
    except OSError as exc:
        yield Check(FAIL, "config file", f"{config.source}: {exc.strerror}")
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        yield Check(
            FAIL,
            "config file",
            f"{config.source} is writable by group or others: they could unlock the CPU path",
            f"chmod go-w {config.source}",
        )
    else:
        yield Check(OK, "config file", f"{config.source} (not writable by group or others)")


def _folders(config: Config) -> Iterator[Check]:
    for key, path in config.paths.named().items():
        name = f"paths.{key}"
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), Path("/"))
            if os.access(parent, os.W_OK | os.X_OK):
                yield Check(WARN, name, f"{path} does not exist yet (created at start)")
            else:
                yield Check(
                    FAIL,
                    name,
                    f"{path} does not exist and {parent} is not writable",
                    f"mkdir -p {path} && chown sir-convert:sir-convert {path}",
                )
            continue
        if not path.is_dir():
            yield Check(FAIL, name, f"{path} is not a folder", f"move it away; mkdir {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            yield Check(
                FAIL,
                name,
                f"{path} is not writable by this user ({os.getuid()})",
                f"chown -R sir-convert:sir-convert {path} (or run doctor as the service user)",
            )
        else:
            yield Check(OK, name, str(path))
    if config.watch.sentinel:
        sentinel = config.paths.inbox / config.watch.sentinel
        if os.path.lexists(sentinel):
            yield Check(OK, "share sentinel", f"{sentinel} present")
        else:
            yield Check(
                FAIL,
                "share sentinel",
                f"{sentinel} missing: is the share mounted?",
                f"mount the share, or create the sentinel: touch {sentinel}",
            )


def _state_permissions(config: Config) -> Iterator[Check]:
    """paths.state must be writable by the service user alone: whoever else can write it can
    forge the records that the daemon and ``retry`` (often run as root) act on."""
    state = config.paths.state
    if not state.is_dir():
        return
    name = "state permissions"
    me = os.geteuid()
    owner = os.lstat(state).st_uid if me == 0 else me  # root checks for the state's owner
    for folder in state_folders(state):
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue  # a job folder that a running instance just finished
        if info.st_uid != owner:
            yield Check(
                FAIL,
                name,
                f"{folder} is owned by uid {info.st_uid}, not by the service user (uid {owner})",
                f"chown -R {owner} {state}",
            )
            return
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            yield Check(
                FAIL,
                name,
                f"{folder} is writable by group or others: they could forge the records that "
                "the daemon and retry act on",
                f"chmod -R go-w {state} (the daemon also does this at start)",
            )
            return
    parent = state.resolve().parent
    parent_mode = os.stat(parent).st_mode
    if parent_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent_mode & stat.S_ISVTX:
        yield Check(
            WARN,
            name,
            f"{parent}, which holds the state folder, is writable by group or others: they "
            "could rename the state folder away and put their own in its place",
            f"chmod go-w {parent}",
        )
        return
    yield Check(OK, name, f"{state} is writable by its owner (uid {owner}) alone")


def _layout(config: Config) -> Iterator[Check]:
    existing = {k: p.resolve() for k, p in config.paths.named().items() if p.exists()}
    steps: list[tuple[str, Callable[[], None]]] = [
        ("no watch loop", lambda: check_overlaps(existing)),
        ("state on the inbox's filesystem", _same_fs(existing)),
    ]
    for label, check in steps:
        try:
            check()
        except ConfigError as exc:
            yield Check(FAIL, label, str(exc), "change the paths in the config")
        else:
            yield Check(OK, label, "yes")


def _same_fs(existing: dict[str, Path]) -> Callable[[], None]:
    def check() -> None:
        if "inbox" in existing and "state" in existing:
            check_same_filesystem(existing["inbox"], existing["state"])

    return check


def _needs_gpu(config: Config) -> bool:
    option_sets = [config.defaults, *config.profiles.values()]
    return any(o.acceleration_policy != "cpu_only" for o in option_sets)


def _gpu(config: Config, deep: bool) -> Iterator[Check]:
    index = config.device_index
    needed = _needs_gpu(config)
    missing_is = FAIL if needed and not config.governance.allow_cpu_fallback else WARN
    status, device = probe_nvml(index)
    if not needed:
        yield Check(OK, "GPU", f"not used by this config (cpu_only everywhere); NVML: {status}")
        return
    if device is None:
        yield Check(
            missing_is,
            "GPU (NVML)",
            f"no GPU {index}: {status}",
            "install the NVIDIA driver and nvidia-ml-py; check nvidia-smi",
        )
    else:
        yield Check(
            OK,
            "GPU (NVML)",
            f"{device.name}, driver {device.driver_version}, "
            f"{device.memory_total_bytes // (1024**2)} MiB",
        )
    nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", f"/dev/nvidia{index}"]
    absent = [n for n in nodes if not os.path.exists(n)]
    unusable = [n for n in nodes if os.path.exists(n) and not os.access(n, os.R_OK | os.W_OK)]
    if absent or unusable:
        yield Check(
            missing_is,
            "GPU device nodes",
            f"missing {absent}, not read-writable {unusable}",
            "load nvidia-uvm (nvidia-modprobe -u -c=0); allow the nodes in the unit's DeviceAllow=",
        )
    else:
        yield Check(OK, "GPU device nodes", ", ".join(nodes))
    if deep and device is not None:
        torch_state = probe_torch(index)
        yield Check(
            OK if torch_state == "available" else missing_is,
            "CUDA (torch)",
            torch_state,
            "" if torch_state == "available" else "install the CUDA build of torch",
        )
    try:
        folder = runtime_dir(create=False)
        writable = folder.is_dir() and os.access(folder, os.W_OK)
    except OSError:
        folder, writable = Path("?"), False
    yield Check(
        OK if writable else FAIL,
        "device lock folder",
        str(folder),
        "" if writable else "create /run/sir-convert (systemd-tmpfiles --create)",
    )


def _models(config: Config) -> Iterator[Check]:
    option_sets = [config.defaults, *config.profiles.values()]
    needs = models.needed(option_sets)
    if not needs:
        yield Check(OK, "models", "no docling backend in use")
        return
    if not config.models_path:
        yield Check(
            WARN,
            "models",
            "gpu.models_path is empty: docling fetches from the Hugging Face hub",
            "on hosts without internet: set gpu.models_path and run sir-convert models download",
        )
        return
    absent = models.missing(Path(config.models_path), option_sets)
    if absent:
        yield Check(
            FAIL,
            "models",
            "missing under " + config.models_path + ": " + ", ".join(m.folder for m in absent),
            "sir-convert models download",
        )
    else:
        yield Check(OK, "models", f"{len(needs)} model folders present in {config.models_path}")


def _inotify(config: Config) -> Iterator[Check]:
    if config.watch.mode != "inotify":
        yield Check(OK, "inotify limits", "polling mode: not used")
        return
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        yield Check(WARN, "inotify limits", "cannot read /proc/sys/fs/inotify/max_user_watches")
        return
    folders = _count_folders(config.paths.inbox)
    detail = f"{folders} folders to watch, limit {limit} per user"
    if folders >= limit:
        yield Check(
            FAIL,
            "inotify limits",
            detail,
            'sysctl fs.inotify.max_user_watches=524288, or watch.mode = "polling"',
        )
    elif folders >= limit // 2:
        yield Check(WARN, "inotify limits", detail, "sysctl fs.inotify.max_user_watches=524288")
    else:
        yield Check(OK, "inotify limits", detail)


def _count_folders(root: Path) -> int:
    count = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return count


def _disk(config: Config) -> Iterator[Check]:
    seen: set[int] = set()
    for key in ("outbox", "state", "archive", "failed"):
        path = getattr(config.paths, key)
        probe_path = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        device = os.stat(probe_path).st_dev
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(probe_path).free
        detail = f"{free // (1024**2)} MiB free for paths.{key} ({probe_path})"
        if free < DISK_FAIL_BYTES:
            yield Check(FAIL, "free disk", detail, "free space or move the folder")
        elif free < DISK_WARN_BYTES:
            yield Check(WARN, "free disk", detail, "free space soon")
        else:
            yield Check(OK, "free disk", detail)


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append("")
    lines.append(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return "\n".join(lines)
