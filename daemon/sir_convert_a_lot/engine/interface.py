"""What the job lifecycle may ask of a conversion engine, and what it may be told back.

``ConversionEngine`` is the whole contract between the jobs and the engine: start a worker and
learn what it can do (``start`` → ``WorkerInfo``), ask where a job would run (``decide``),
convert one document and block until it is done (``convert``), stop a stuck worker from another
thread (``abort``), and stop for good (``stop``). ``alive`` and ``silent_seconds`` feed the
daemon's health check. ``supervisor.Engine`` implements it over a ``Transport``
(``engine.transports``); the jobs never see a process, a pipe or an actor.

``convert`` either returns the worker's answer (``Converted`` or ``Failed``, both carrying the
job id) or raises one of the exceptions below after the worker is gone; the next call starts a
fresh worker. Counting attempts is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.policy import Decision, RunOn
from sir_convert_a_lot.engine.protocol import Converted, Failed
from sir_convert_a_lot.options import ConversionOptions

ProgressSink = Callable[[str, int, int], None]
"""Called with (job id, page, pages) as the worker reports progress."""


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    thread_id: int
    probe: GpuProbe
    versions: dict[str, str]
    loaded: tuple[tuple[str, str], ...]
    load_seconds: float
    warm_seconds: float
    host: str = ""  # where the worker runs


@dataclass(frozen=True)
class WorkerMemory:
    """The worker's memory as the supervisor last saw it, and how often it was recycled (for
    status and the metrics). None where it cannot be known: no worker runs, no GPU, no job yet.
    With several workers (Ray actors), the figures of the one nearest its limit."""

    rss_bytes: int | None = None  # resident memory of the worker process, now
    gpu_allocated_bytes: int | None = None  # torch.cuda.memory_allocated after the last job
    gpu_reserved_bytes: int | None = None  # torch.cuda.memory_reserved after the last job
    jobs: int = 0  # documents the current worker has answered since it started
    recycles: Mapping[str, int] = field(default_factory=dict)  # by reason: "jobs", "memory"


class EngineStartError(Exception):
    """The worker could not get ready (models missing, device busy, crashed while loading)."""

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details or {}


class WorkerCrashed(Exception):
    """The worker went away while the job was in it. ``innocent`` is True when the supervisor
    knows the job was not the cause (the worker was stopped for another job in flight beside it),
    so a caller can hand it back without counting an attempt. ``shared``: other jobs were in the
    worker too and any of them may have caused it; a caller can try each again alone
    (``convert(..., alone=True)``), where a crash is the job's own."""

    def __init__(
        self, exitcode: int | None, *, innocent: bool = False, shared: bool = False
    ) -> None:
        super().__init__(f"the worker process died (exit code {exitcode})")
        self.exitcode = exitcode
        self.innocent = innocent
        self.shared = shared


class WorkerTimedOut(Exception):
    """The job ran past its time limit and the worker was killed. ``shared``: other documents
    were in the worker beside it at some point, sharing the device, so the time is not all its
    own; a caller can try it again alone, where a timeout is the job's."""

    def __init__(self, seconds: float, *, shared: bool = False) -> None:
        super().__init__(f"the conversion ran past its limit of {seconds:g} s; worker killed")
        self.seconds = seconds
        self.shared = shared


class WorkerOverMemory(Exception):
    def __init__(self, limit_bytes: int, rss_bytes: int) -> None:
        super().__init__(
            f"the worker's memory reached {rss_bytes} bytes, over its limit of {limit_bytes}"
        )
        self.limit_bytes = limit_bytes
        self.rss_bytes = rss_bytes


class ConversionEngine(Protocol):
    """The engine as the job lifecycle uses it. Every method may be called from several threads
    at once: one job thread per document in flight calls ``decide`` and ``convert``; ``abort``,
    ``stop``, ``alive`` and ``silent_seconds`` come from any thread."""

    kind: str  # the sidecar's execution.engine: "local" (worker processes) or "ray" (actors)

    @property
    def info(self) -> WorkerInfo | None: ...

    @property
    def starts(self) -> int: ...

    @property
    def probe(self) -> GpuProbe | None: ...

    @property
    def alive(self) -> bool: ...

    def silent_seconds(self) -> float: ...

    def memory(self) -> WorkerMemory:
        """The worker's memory and its recycling, cheap enough to ask on every loop turn."""
        ...

    def max_pages_in_flight(self, per_worker: int) -> int:
        """The pages the daemon may have in flight when each worker may hold ``per_worker``."""
        ...

    def start(self) -> WorkerInfo: ...

    def decide(self, options: ConversionOptions, source_name: str = "") -> Decision:
        """Where a job on the file ``source_name`` (its inbox-relative name) runs, or why not."""
        ...

    def convert(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
        *,
        alone: bool = False,
    ) -> Converted | Failed: ...

    def abort(self) -> None: ...

    def stop(self) -> None: ...
