"""The conversion engine as the supervisor sees it: the lock policy, the device lock, and one
supervised worker process that it starts, times out, kills and restarts.

``convert`` either returns the worker's answer or raises ``WorkerCrashed`` / ``WorkerTimedOut``
after the worker is gone; the next call starts a fresh one. Counting attempts is the caller's job.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.gpu import (
    DeviceBusy,
    DeviceLock,
    GpuProbe,
    LockFolderUnavailable,
    describe_holder,
)
from sir_convert_a_lot.engine.policy import Decision, RunOn, decide
from sir_convert_a_lot.engine.protocol import (
    Converted,
    ConvertRequest,
    Failed,
    Load,
    Probed,
    Progress,
    Ready,
    Shutdown,
    StartupFailed,
    WorkerSettings,
)
from sir_convert_a_lot.engine.worker import worker_main
from sir_convert_a_lot.ops import logs
from sir_convert_a_lot.options import ConversionOptions

log = logs.get()

ProgressSink = Callable[[str, int, int], None]

PROBE_TIMEOUT_SECONDS = 180.0
LOAD_TIMEOUT_SECONDS = 1800.0


_MEMORY_CHECK_SECONDS = 0.25


class EngineStartError(Exception):
    """The worker could not get ready (models missing, device busy, crashed while loading)."""

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details or {}


class WorkerCrashed(Exception):
    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the worker process died (exit code {exitcode})")
        self.exitcode = exitcode


class WorkerTimedOut(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the conversion ran past its limit of {seconds:g} s; worker killed")
        self.seconds = seconds


class WorkerOverMemory(Exception):
    def __init__(self, limit_bytes: int, rss_bytes: int) -> None:
        super().__init__(
            f"the worker's memory reached {rss_bytes} bytes, over its limit of {limit_bytes}"
        )
        self.limit_bytes = limit_bytes
        self.rss_bytes = rss_bytes


def resident_bytes(pid: int) -> int | None:
    """The process's resident memory (VmRSS), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    thread_id: int
    probe: GpuProbe
    versions: dict[str, str]
    loaded: tuple[tuple[str, str], ...]
    load_seconds: float
    warm_seconds: float


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


class Engine:
    def __init__(
        self,
        config: Config,
        governance: Governance,
        *,
        instance: str,
        on_progress: ProgressSink | None = None,
        lock_folder: Any = None,
        wait_for_device: bool = True,
        device_wait_seconds: float | None = None,
        probe_override: GpuProbe | None = None,
        fault_injection: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.governance = governance
        self.on_progress = on_progress
        self.settings = WorkerSettings(
            device_index=config.gpu.device_index,
            models_path=config.gpu.models_path,
            max_file_bytes=config.conversion.max_file_bytes,
            max_pages=config.conversion.max_pages,
            batch_sizes={
                "layout": config.gpu.layout_batch_size,
                "ocr": config.gpu.ocr_batch_size,
                "table": config.gpu.table_batch_size,
            },
            ocr_backend=config.gpu.ocr_backend,
            log_level=config.logging.level,
            log_format=config.logging.format,
            probe_override=probe_override.to_dict() if probe_override else None,
            fault_injection=fault_injection,
        )
        self.device_lock = DeviceLock(config.gpu.device_index, instance, lock_folder)
        self.wait_for_device = wait_for_device
        self.device_wait_seconds = device_wait_seconds  # None: wait for as long as it takes
        self.info: WorkerInfo | None = None
        self.starts = 0
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._alive: Any = None

    @property
    def probe(self) -> GpuProbe | None:
        return self.info.probe if self.info else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def silent_seconds(self) -> float:
        """How long the worker process has not shown a sign of life (0 when none runs: the
        next job starts one)."""
        if self._process is None or self._alive is None:
            return 0.0
        if not self._process.is_alive():
            return 0.0
        return max(0.0, time.monotonic() - float(self._alive.value))

    def decide(self, options: ConversionOptions) -> Decision:
        if self.info is None:
            self.start()
        assert self.info is not None
        return decide(options, self.info.probe, self.governance)

    def start(self) -> WorkerInfo:
        """Start the worker and wait until its models are loaded and warm."""
        self._kill()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._alive = context.Value("d", time.monotonic(), lock=False)
        process = context.Process(
            target=worker_main,
            args=(child, self.settings, os.getpid(), self._alive),
            name="sca-worker",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.starts += 1
        probed = self._receive(PROBE_TIMEOUT_SECONDS, "probing the GPU")
        if not isinstance(probed, Probed):
            raise self._startup_error(probed)
        probe = GpuProbe.from_dict(probed.probe)
        option_sets = [self.config.defaults, *self.config.profiles.values()]
        plan = load_plan(option_sets, probe, self.governance)
        if any(device == "cuda" for _, device in plan) and not self.device_lock.held:
            self._lock_device()
        parent.send(Load(plan, tuple(option_sets)))
        ready = self._receive(LOAD_TIMEOUT_SECONDS, "loading models")
        if not isinstance(ready, Ready):
            raise self._startup_error(ready)
        self.info = WorkerInfo(
            pid=ready.pid,
            thread_id=ready.thread_id,
            probe=probe,
            versions=probed.versions,
            loaded=ready.loaded,
            load_seconds=ready.load_seconds,
            warm_seconds=ready.warm_seconds,
        )
        return self.info

    def _lock_device(self) -> None:
        """One worker per GPU on this host. Waiting is said aloud, naming the holder, at once
        and every minute; ``device_wait_seconds`` bounds it."""
        index = self.config.gpu.device_index

        def announce(holder: dict[str, Any], waited: float) -> None:
            bound = self.device_wait_seconds
            log.warning(
                "device_busy_waiting",
                gpu=index,
                holder=holder,
                waited_seconds=round(waited),
                gives_up_after_seconds=bound,
                message=f"GPU {index} is held by {describe_holder(holder)}; waiting"
                + (f" up to {bound:g} s" if bound is not None else " until it is free"),
            )

        try:
            self.device_lock.acquire(
                wait=self.wait_for_device, timeout=self.device_wait_seconds, announce=announce
            )
        except DeviceBusy as busy:
            self._kill()
            raise EngineStartError("device_busy", str(busy), busy.holder) from None
        except LockFolderUnavailable as problem:
            self._kill()
            raise EngineStartError("device_lock_unavailable", str(problem)) from None
        log.info("device_lock_acquired", gpu=index, lock=str(self.device_lock.path))

    def _startup_error(self, message: object) -> EngineStartError:
        self._kill()
        if isinstance(message, StartupFailed):
            return EngineStartError(message.reason, message.message, message.details)
        return EngineStartError("worker_failed", f"the worker did not start: {message}")

    def _receive(self, timeout: float, doing: str) -> object:
        assert self._conn is not None and self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise EngineStartError("worker_start_timeout", f"the worker hung while {doing}")
            try:
                if self._conn.poll(min(remaining, 0.5)):
                    return self._conn.recv()
            except (EOFError, OSError):
                pass
            if not self._process.is_alive():
                code = self._process.exitcode
                self._kill()
                raise EngineStartError(
                    "worker_died", f"the worker died while {doing} (exit code {code})"
                )

    def convert(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
    ) -> Converted | Failed:
        if not self.alive:
            self.start()
        # Local references: abort() may kill the process from another thread meanwhile.
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        limit = float(options.document_timeout_seconds)
        deadline = time.monotonic() + limit
        try:
            conn.send(ConvertRequest(job_id, source_path, source_name, options, run_on.device))
        except (BrokenPipeError, OSError):
            self._kill()
            raise WorkerCrashed(process.exitcode) from None
        memory_limit = self.config.conversion.max_worker_memory_bytes
        next_memory_check = 0.0
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                self._kill()
                raise WorkerTimedOut(limit)
            if now >= next_memory_check:  # on the clock: progress messages must not skip it
                next_memory_check = now + _MEMORY_CHECK_SECONDS
                self._check_memory(process, memory_limit)
            try:
                if not conn.poll(min(remaining, _MEMORY_CHECK_SECONDS)):
                    if process.is_alive():
                        continue
                    raise EOFError
                message = conn.recv()
            except (EOFError, OSError):
                process.join(timeout=5)
                self._kill()
                raise WorkerCrashed(process.exitcode) from None
            if isinstance(message, Progress):
                if self.on_progress is not None:
                    self.on_progress(message.job_id, message.page, message.pages)
                continue
            if isinstance(message, Converted | Failed) and message.job_id == job_id:
                if isinstance(message, Failed) and message.details.get("restart_worker"):
                    self._kill()  # a CUDA error may have poisoned the context: start afresh
                return message

    def _check_memory(self, process: BaseProcess, limit_bytes: int) -> None:
        """Stop a conversion whose worker outgrows its limit before the kernel's OOM killer
        (or systemd's MemoryMax=) picks a victim; sampled, so a systemd cap stays the backstop."""
        if not limit_bytes or process.pid is None or not process.is_alive():
            return
        rss = resident_bytes(process.pid)
        if rss is not None and rss > limit_bytes:
            self._kill()
            raise WorkerOverMemory(limit_bytes, rss)

    def abort(self) -> None:
        """Kill the worker from any thread; the thread inside convert() sees WorkerCrashed."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def stop(self) -> None:
        if self._conn is not None and self.alive:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(Shutdown())
            assert self._process is not None
            self._process.join(timeout=10)
        self._kill()
        self.device_lock.release()

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None
