"""``sir-convert doctor``: everything an operator would check by hand before trusting a host,
as a table of OK / WARN / FAIL, each problem with the command or change that fixes it. The
checks are grouped by what they look at: ``safety`` (the lock and who may write what),
``storage`` (folders, layout, limits, disk), ``gpu`` (the device and the backends it allows),
``models``, ``formats`` (LibreOffice for the legacy formats), ``memory`` (the worker's memory
beside its limits), and ``cluster`` (the Ray cluster, with ``engine.kind = "ray"``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.ops.doctor import cluster, formats, gpu, memory, models, safety, storage
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, WARN, Check, render

__all__ = ["FAIL", "OK", "WARN", "Check", "render", "run_checks"]


def run_checks(config: Config, environ: dict[str, str], deep_gpu: bool = True) -> list[Check]:
    seen = gpu.look_for_gpu(config, deep_gpu)
    sections: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("environment", lambda: safety.environment(environ)),
        ("gpu-first lock", lambda: safety.governance(config)),
        ("config file", lambda: safety.config_file(config)),
        ("folders", lambda: storage.folders(config)),
        ("state permissions", lambda: safety.state_permissions(config)),
        ("layout", lambda: storage.layout(config)),
        ("GPU", lambda: gpu.device(config, seen)),
        ("models", lambda: models.models_present(config, environ, seen)),
        ("backends", lambda: gpu.backends(config, seen)),
        ("legacy formats", lambda: formats.legacy_formats(environ)),
        ("inotify limits", lambda: storage.inotify_limits(config)),
        ("free disk", lambda: storage.free_disk(config)),
        ("worker memory", lambda: memory.worker_memory(config)),
    ]
    if config.engine.kind == "ray":
        sections.append(("ray cluster", lambda: cluster.cluster(config)))
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
