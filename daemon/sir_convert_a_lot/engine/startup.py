"""Bringing a worker up over a fresh transport: the handshake, and the GPU lock it may need.

The handshake (``protocol`` has the messages): the worker probes the GPU and sends ``Probed``;
the supervisor works out which (backend, device) pairs the config can run on what was seen,
takes the host's lock on the GPU if any pair uses it, and answers ``Load``; the worker loads and
warms those backends on its model thread and sends ``Ready``, or ``StartupFailed`` with a reason.
Every way this can go wrong is an ``EngineStartError``; the caller then discards the transport.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.gpu import (
    DeviceBusy,
    DeviceLock,
    GpuProbe,
    LockFolderUnavailable,
    describe_holder,
)
from sir_convert_a_lot.engine.interface import EngineStartError, WorkerInfo
from sir_convert_a_lot.engine.policy import RunOn, decide
from sir_convert_a_lot.engine.protocol import Load, Probed, Ready, StartupFailed, WorkerSettings
from sir_convert_a_lot.engine.transports.base import Transport, TransportClosed
from sir_convert_a_lot.options import ConversionOptions

log = logs.get()

PROBE_TIMEOUT_SECONDS = 180.0
LOAD_TIMEOUT_SECONDS = 1800.0
_POLL_SECONDS = 0.5
_EXIT_WAIT_SECONDS = 5.0  # for a worker whose channel broke to finish dying


def load_plan(
    option_sets: list[ConversionOptions], probe: GpuProbe, governance: Governance
) -> tuple[tuple[str, str], ...]:
    """The (backend, device) pairs the config can actually run, given the probe and the lock."""
    plan: list[tuple[str, str]] = []
    for options in option_sets:
        decision = decide(options, probe, governance)
        if isinstance(decision, RunOn):
            pair = (options.backend, decision.device)
            if pair not in plan:
                plan.append(pair)
    return tuple(plan)


def handshake(
    transport: Transport,
    option_sets: list[ConversionOptions],
    governance: Governance,
    lock_device: Callable[[], None],
) -> WorkerInfo:
    """Drive a started transport through Probed → Load → Ready."""
    probed = _receive(transport, PROBE_TIMEOUT_SECONDS, "probing the GPU")
    if not isinstance(probed, Probed):
        raise _startup_error(probed)
    probe = GpuProbe.from_dict(probed.probe)
    plan = load_plan(option_sets, probe, governance)
    if any(device == "cuda" for _, device in plan):
        lock_device()
    try:
        transport.send(Load(plan, tuple(option_sets)))
    except TransportClosed:
        deadline = time.monotonic() + _EXIT_WAIT_SECONDS
        raise _lost(transport, "loading models", deadline) from None
    ready = _receive(transport, LOAD_TIMEOUT_SECONDS, "loading models")
    if not isinstance(ready, Ready):
        raise _startup_error(ready)
    return WorkerInfo(
        pid=ready.pid,
        thread_id=ready.thread_id,
        probe=probe,
        versions=probed.versions,
        loaded=ready.loaded,
        load_seconds=ready.load_seconds,
        warm_seconds=ready.warm_seconds,
        host=probed.host,
    )


def lock_device(
    device_lock: DeviceLock, index: int, *, wait: bool, wait_seconds: float | None
) -> None:
    """One worker per GPU on this host. Waiting is said aloud, naming the holder, at once and
    every minute; ``wait_seconds`` bounds it (None: as long as it takes)."""
    if device_lock.held:
        return

    def announce(holder: dict[str, Any], waited: float) -> None:
        log.warning(
            "device_busy_waiting",
            gpu=index,
            holder=holder,
            waited_seconds=round(waited),
            gives_up_after_seconds=wait_seconds,
            message=f"GPU {index} is held by {describe_holder(holder)}; waiting"
            + (f" up to {wait_seconds:g} s" if wait_seconds is not None else " until it is free"),
        )

    try:
        device_lock.acquire(wait=wait, timeout=wait_seconds, announce=announce)
    except DeviceBusy as busy:
        raise EngineStartError("device_busy", str(busy), busy.holder) from None
    except LockFolderUnavailable as problem:
        raise EngineStartError("device_lock_unavailable", str(problem)) from None
    log.info("device_lock_acquired", gpu=index, lock=str(device_lock.path))


def _startup_error(message: object) -> EngineStartError:
    if isinstance(message, StartupFailed):
        return EngineStartError(message.reason, message.message, message.details)
    return EngineStartError("worker_failed", f"the worker did not start: {message}")


def _receive(transport: Transport, timeout: float, doing: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _hung(doing)
        try:
            message = transport.receive(min(remaining, _POLL_SECONDS))
        except TransportClosed:
            raise _lost(transport, doing, deadline) from None
        if message is not None:
            return message


def _lost(transport: Transport, doing: str, deadline: float) -> EngineStartError:
    """The channel closed: a worker that exits by the deadline died; one that lingers hung."""
    code = transport.exit_code(wait=max(0.0, deadline - time.monotonic()))
    if transport.alive():
        return _hung(doing)
    why = getattr(transport, "death", "")  # what carried it may know more (a Ray actor)
    return EngineStartError(
        "worker_died",
        f"the worker died while {doing} (exit code {code})" + (f": {why}" if why else ""),
    )


def _hung(doing: str) -> EngineStartError:
    return EngineStartError("worker_start_timeout", f"the worker hung while {doing}")


def worker_settings(config: Config) -> WorkerSettings:
    """What a worker needs from the config, in a form any transport can carry."""
    return WorkerSettings(
        device_index=config.gpu.device_index,
        models_path=config.gpu.models_path,
        max_file_bytes=config.conversion.max_file_bytes,
        max_pages=config.conversion.max_pages,
        batch_sizes=config.gpu.batch_sizes,
        ocr_backend=config.gpu.ocr_backend,
        table_check_every=config.gpu.table_check_every,
        log_level=config.logging.level,
        log_format=config.logging.format,
    )
