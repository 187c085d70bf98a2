"""The checks and announcements of a start, each a step of ``Service.run`` / ``_startup``.

Kept apart from the daemon's loop so that the start reads as its steps there, and each refusal
or warning (with the words the operator sees) is found here in one place.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends import models
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.policy import OCR_OFF_GPU, ocr_left_on_cpu
from sir_convert_a_lot.engine.supervisor import WorkerInfo, resident_bytes
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import prepare
from sir_convert_a_lot.jobs.leases import Instances
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.versions import build_id, package_version

log = logs.get()


def share_missing(config: Config) -> str | None:
    """Why the inbox looks unmounted (its sentinel file is absent), or None."""
    sentinel = config.watch.sentinel
    if sentinel and not os.path.lexists(config.paths.inbox / sentinel):
        return (
            f"the sentinel {sentinel} is missing from the inbox {config.paths.inbox}: "
            "the share is probably not mounted; mount it (or create the sentinel file)"
        )
    return None


def prepare_folders(config: Config, spool: Spool) -> None:
    """The folders exist and the state is the service user's alone; the spool's layout too."""
    fixed = prepare(config.paths)
    if fixed:
        log.warning(
            "state_permissions_fixed",
            folders=[str(folder) for folder in fixed],
            reason="paths.state was writable by group or others (created under a umask "
            "that keeps group write?)",
            effect="group and world write removed: only the service user writes the state",
        )
    spool.ensure_layout()


def refuse_duplicate_instance(instances: Instances, instance: str, lease_seconds: float) -> None:
    """ConfigError when a live daemon already holds this instance name's lease."""
    for lease in instances.leases():
        if lease.instance != instance or lease.age_seconds > lease_seconds:
            continue
        host, pid = lease.data.get("host"), lease.data.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
            continue
        if host == socket.gethostname() and pid == os.getpid():
            continue
        raise ConfigError(
            f"instances.name: an instance named {instance!r} is already running "
            f"(pid {pid} on {host}); give each instance its own name with --instance"
        )


def naming_settings(config: Config) -> dict[str, str]:
    """The settings that decide output names: instances sharing a share must agree on them, or
    one would overwrite (``replace``) what another numbers (``suffix``)."""
    return {"output.on_collision": config.output.on_collision}


def refuse_disagreeing_instances(instances: Instances, config: Config, instance: str) -> None:
    """ConfigError naming the setting and the other instance when a live instance on this
    state folder (this share) decides output names otherwise."""
    mine = naming_settings(config)
    for lease in instances.leases():
        if lease.instance == instance or lease.age_seconds > config.instances.lease_seconds:
            continue
        theirs = lease.data.get("naming")
        if not isinstance(theirs, dict):
            continue
        for key, value in mine.items():
            if key in theirs and theirs[key] != value:
                raise ConfigError(
                    f"{key}: this instance says {value!r} but the live instance "
                    f"{lease.instance!r} ({lease.data.get('host')}) on the same share says "
                    f"{theirs[key]!r}; instances sharing a share must agree on it"
                )


def announce_start(config: Config, governance: Governance, instance: str) -> None:
    log.info(
        "daemon_starting",
        version=package_version(),
        build=build_id(),
        instance=instance,
        config=str(config.source) if config.source else None,
        inbox=str(config.paths.inbox),
        outbox=str(config.paths.outbox),
        watch_mode=config.watch.mode,
        lock=governance.lock,
        decision_record=governance.decision_record if governance.unlocked else None,
        cpu_stages=list(governance.cpu_stages),
    )
    if governance.cpu_stages:
        log.warning(
            "gpu_first_stages_on_cpu",
            decision_record=governance.decision_record,
            cpu_stages=list(governance.cpu_stages),
            effect="these model stages may run on the CPU under the GPU-first lock",
        )
    if governance.unlocked:
        log.warning(
            "gpu_first_lock_unlocked",
            decision_record=governance.decision_record,
            allow_cpu_only=governance.allow_cpu_only,
            allow_cpu_fallback=governance.allow_cpu_fallback,
        )


def report_worker(info: WorkerInfo, config: Config, governance: Governance) -> None:
    """The warm worker, and what would make every job fail: a memory limit below its idle
    size, or no backend allowed to run on this host."""
    idle = resident_bytes(info.pid) or 0
    log.info(
        "worker_ready",
        pid=info.pid,
        gpu=info.probe.to_dict(),
        loaded=[f"{b}@{d}" for b, d in info.loaded],
        load_seconds=round(info.load_seconds, 3),
        warm_seconds=round(info.warm_seconds, 3),
        worker_memory_bytes=idle,
    )
    if ("docling", "cuda") in info.loaded and ocr_left_on_cpu(config):
        log.warning("ocr_stage_off_gpu", **OCR_OFF_GPU)
    limit = config.conversion.max_worker_memory_bytes
    if limit and idle >= limit:
        log.error(
            "worker_memory_limit_too_low",
            worker_memory_bytes=idle,
            max_worker_memory_bytes=limit,
            effect="every conversion fails with worker_crashed (memory_limit_exceeded); "
            "raise conversion.max_worker_memory_bytes",
        )
    if not info.loaded:
        log.warning(
            "no_backend_can_run",
            reason=info.probe.reason,
            lock=governance.lock,
            effect="every PDF and image fails gpu_not_available until a GPU is usable (formats "
            "that run no model, such as office files, still convert)",
        )
    _unloaded_models_missing(info, config)


def _unloaded_models_missing(info: WorkerInfo, config: Config) -> None:
    """Models are checked when docling loads, and the start is refused without them; a worker
    that loads no docling (no usable GPU under the lock) started anyway, and the journal must
    say what doctor says: they are missing, and a start with a usable GPU will be refused."""
    path = config.gpu.models_path
    if config.engine.kind != "local" or not path or models.load_models(info.loaded):
        return
    # no docling loads here now; once a GPU is usable, it loads there
    engines = models.ocr_engines(config.gpu.ocr_backend, ["cuda"])
    absent = models.missing(Path(path), [config.defaults, *config.profiles.values()], engines)
    if absent:
        log.warning(
            "models_missing",
            models_path=path,
            missing=[models.describe_absent(need, Path(path)) for need in absent],
            effect=models.UNUSED_ON_THIS_HOST,
            fix="sir-convert models download",
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
