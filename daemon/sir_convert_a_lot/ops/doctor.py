"""``sir-convert doctor``: everything an operator would check by hand before trusting a host,
as a table of OK / WARN / FAIL, each problem with the command or change that fixes it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot.backends import models
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.gpu import GpuDevice, GpuProbe, probe_nvml, probe_torch, runtime_dir
from sir_convert_a_lot.engine.policy import RunOn, decide, forbidden_environment
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import check_overlaps, check_same_filesystem, state_folders

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
    gpu = _look_for_gpu(config, deep_gpu)
    sections: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("environment", lambda: _environment(environ)),
        ("gpu-first lock", lambda: _governance(config)),
        ("config file", lambda: _config_file(config)),
        ("folders", lambda: _folders(config)),
        ("state permissions", lambda: _state_permissions(config)),
        ("layout", lambda: _layout(config)),
        ("GPU", lambda: _gpu(config, gpu)),
        ("models", lambda: _models(config, environ)),
        ("backends", lambda: _backends(config, gpu)),
        ("inotify limits", lambda: _inotify(config)),
        ("free disk", lambda: _disk(config)),
    ]
    checks: list[Check] = []
    for name, section in sections:
        checks.extend(_guarded(name, section))
    return checks


def _guarded(name: str, section: Callable[[], Iterator[Check]]) -> list[Check]:
    """A check that itself breaks (an odd mount, a permission) is reported as a problem, so
    doctor always finishes its table instead of ending in a traceback."""
    try:
        return list(section())
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return [
            Check(
                FAIL,
                name,
                f"could not be checked: {type(exc).__name__}: {exc}",
                "fix what the message names, then run doctor again",
            )
        ]


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
    sentinel_note = _sentinel(config)
    for key, path in config.paths.named().items():
        yield _folder(f"paths.{key}", path, under_share=bool(config.watch.sentinel))
    if sentinel_note is not None:
        yield sentinel_note


# The modes the daemon itself gives the folders it creates (UMask=0002 under a setgid parent):
# share users write the inbox and read results through the group; the state is the service's.
_FOLDER_MODES = {
    "paths.inbox": "2775",
    "paths.outbox": "2775",
    "paths.failed": "2775",
    "paths.archive": "2775",
    "paths.state": "0750",
}


def _folder(name: str, path: Path, under_share: bool) -> Check:
    """One configured folder: it must exist, be a folder and be writable by this user."""
    if not os.path.lexists(path):
        where = "mount the share that holds it, or create it" if under_share else "create it"
        return Check(
            FAIL,
            name,
            f"{path} does not exist",
            f"{where}: install -d -o sir-convert -g sir-convert -m {_FOLDER_MODES[name]} {path}",
        )
    if not path.is_dir():
        return Check(FAIL, name, f"{path} is not a folder", f"move it away; mkdir {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        return Check(
            FAIL,
            name,
            f"{path} is not writable by this user ({os.getuid()})",
            f"chown -R sir-convert:sir-convert {path} (or run doctor as the service user)",
        )
    return Check(OK, name, str(path))


def _sentinel(config: Config) -> Check | None:
    """The share guard: without its sentinel the daemon refuses to start (exit 1)."""
    if not config.watch.sentinel:
        return None
    sentinel = config.paths.inbox / config.watch.sentinel
    if os.path.lexists(sentinel):
        return Check(OK, "share sentinel", f"{sentinel} present")
    return Check(
        FAIL,
        "share sentinel",
        f"{sentinel} missing: is the share mounted? The daemon will not start without it",
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
    # resolve() without strict: folders that do not exist yet are still compared by name.
    resolved = {k: p.resolve() for k, p in config.paths.named().items()}
    try:
        check_overlaps(resolved)
    except ConfigError as exc:
        yield Check(FAIL, "no watch loop", str(exc), "change the paths in the config")
    else:
        yield Check(OK, "no watch loop", "yes")
    inbox, state = config.paths.inbox, config.paths.state
    if not (inbox.is_dir() and state.is_dir()):
        yield Check(
            WARN,
            "state on the inbox's filesystem",
            "cannot tell until paths.inbox and paths.state exist",
            "create the folders (see above), then run doctor again",
        )
        return
    try:
        check_same_filesystem(inbox, state)
    except ConfigError as exc:
        yield Check(
            FAIL, "state on the inbox's filesystem", str(exc), "change the paths in the config"
        )
    else:
        yield Check(OK, "state on the inbox's filesystem", "yes")


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


def _look_for_gpu(config: Config, deep: bool) -> GpuSeen:
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


def _gpu(config: Config, seen: GpuSeen) -> Iterator[Check]:
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


def _models(config: Config, environ: dict[str, str]) -> Iterator[Check]:
    option_sets = [config.defaults, *config.profiles.values()]
    needs = models.needed(option_sets)
    if not needs:
        yield Check(OK, "models", "no docling backend in use")
        return
    if not config.gpu.models_path:
        yield _hub_cache(environ)
        return
    absent = models.missing(Path(config.gpu.models_path), option_sets)
    if absent:
        yield Check(
            FAIL,
            "models",
            "missing under gpu.models_path "
            + config.gpu.models_path
            + ": "
            + ", ".join(m.folder for m in absent)
            + "; the docling backend cannot load, so the daemon does not start",
            "sir-convert models download",
        )
    else:
        yield Check(OK, "models", f"{len(needs)} model folders present in {config.gpu.models_path}")


_HUB_REPOS = ("docling-project--docling-layout-heron", "docling-project--docling-models")


def _hub_cache(environ: dict[str, str]) -> Check:
    """With gpu.models_path empty docling takes its models from the Hugging Face cache, and
    fetches what is not there at start: impossible on a host without hub access."""
    cache = _hub_cache_folder(environ)
    absent = [r for r in _HUB_REPOS if not _cached(cache / f"models--{r}")]
    offline = environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    fix = (
        "set gpu.models_path and run sir-convert models download (on a host with hub access), "
        'or use backend_strategy = "pymupdf" (see docs/operations.md)'
    )
    if not absent:
        return Check(OK, "models", f"gpu.models_path is empty; found in the hub cache {cache}")
    detail = f"gpu.models_path is empty and the Hugging Face cache {cache} lacks " + ", ".join(
        r.replace("--", "/") for r in absent
    )
    if offline:
        return Check(FAIL, "models", detail + " (HF_HUB_OFFLINE is set): docling cannot load", fix)
    return Check(WARN, "models", detail + ": the daemon downloads them at start", fix)


def _hub_cache_folder(environ: dict[str, str]) -> Path:
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]) / "hub"
    cache = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else None
    return (cache or Path.home() / ".cache") / "huggingface" / "hub"


def _cached(repo_folder: Path) -> bool:
    snapshots = repo_folder / "snapshots"
    try:
        return any(p.is_dir() for p in snapshots.iterdir())
    except OSError:
        return False


def _backends(config: Config, gpu: GpuSeen) -> Iterator[Check]:
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
            "every file fails gpu_not_available"
        )
    if reason == "no_cuda_device":
        return (
            f"no usable GPU ({gpu.reason}) and the GPU-first lock allows no CPU conversion: "
            "every file fails gpu_not_available"
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
