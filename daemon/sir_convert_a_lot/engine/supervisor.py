"""The conversion engine as the supervisor sees it: the lock policy, the device lock, and one
supervised worker (two while a recycle overlaps) that it starts, times out, kills and
restarts. The worker is reached only through a ``Transport`` (``transports.local``, a spawned
process and a pipe, by default), so every rule below holds whatever carries the messages.

Documents go in with ``submit`` and come back with ``wait``, paired by job id; several may be in
flight, and answers may come in any order. ``convert`` is the two back to back, which is all the
job lifecycle asks today (``interface.ConversionEngine``). The supervisor's limits:

- a document's deadline (its ``document_timeout_seconds``, counted from ``submit``): past it
  the worker is killed; that job raises ``WorkerTimedOut``, any others in flight
  ``WorkerCrashed(innocent=True)``;
- the worker's resident memory (``max_worker_memory_bytes``), sampled on the clock every
  0.25 s: over it the worker is killed; one document in flight is the culprit and raises
  ``WorkerOverMemory``; among several none can be singled out, and each raises
  ``WorkerCrashed(shared=True)``;
- a lost worker (it exited, was killed by ``abort``, or its channel broke): each job in flight
  raises ``WorkerCrashed`` with the exit code, ``shared`` when others were in it too;
- a ``Failed`` answer that asks for ``restart_worker`` (a CUDA error may have poisoned the
  context) is returned, and the worker is discarded.

A job whose worker is gone has its answer settled at once; the next ``submit`` starts a fresh
worker. Whether a job goes round again is the caller's rule (``jobs.retries``). ``submit(...,
alone=True)`` waits until the worker is empty and keeps others out until that job is collected:
a suspect of a shared crash tried alone crashes only for itself. A worker due for recycling
is replaced by ``recycle``: beside it, then retired (overlapped), or after it (drained).

Several threads may ``submit``, ``wait`` and ``convert`` at once (the daemon runs one job thread per
document in flight). One waiter at a time is the pump: it takes the messages of every worker holding
documents (two while a recycle overlaps), routes each to its job, and enforces the limits; the other
waiters sleep on a condition variable until a message was routed or the pump hands over (after each
step of at most 0.25 s, so a waiter whose job settled leaves at once). Starting a worker happens
under its own lock, so two threads submitting together start one worker. ``abort`` and ``stop`` may
come from any thread; every job they end is settled and its waiter woken, and no worker starts after
``stop`` (one a recycle was spawning is discarded).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.docket import Docket, ErrorFor, InFlight, bystanders
from sir_convert_a_lot.engine.gpu import DeviceLock, GpuProbe
from sir_convert_a_lot.engine.interface import (
    EngineStartError,
    ProgressSink,
    WorkerCrashed,
    WorkerInfo,
    WorkerMemory,
    WorkerOverMemory,
    WorkerTimedOut,
)
from sir_convert_a_lot.engine.policy import Decision, RunOn, decide
from sir_convert_a_lot.engine.protocol import Converted, ConvertRequest, Failed, Progress, Shutdown
from sir_convert_a_lot.engine.recycle import Recycler, Recycling
from sir_convert_a_lot.engine.startup import handshake, load_plan, lock_device, worker_settings
from sir_convert_a_lot.engine.transports.base import Transport, TransportClosed, TransportFactory
from sir_convert_a_lot.engine.transports.local import LocalProcessTransport, resident_bytes
from sir_convert_a_lot.options import ConversionOptions

__all__ = [
    "Engine",
    "EngineStartError",
    "ProgressSink",
    "WorkerCrashed",
    "WorkerInfo",
    "WorkerOverMemory",
    "WorkerTimedOut",
    "load_plan",
    "resident_bytes",
]

_MEMORY_CHECK_SECONDS = 0.25
_EXIT_WAIT_SECONDS = 5.0  # for a worker whose channel closed to finish dying
_STOP_WAIT_SECONDS = 10.0  # for a worker told to shut down


class Engine:
    """One supervised worker behind a ``Transport``, run by the rules in this module's doc."""

    kind = "local"  # its workers are child processes of this daemon (transports.local)

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
        transport: TransportFactory = LocalProcessTransport,
        locks_device: bool = True,
        overlap: bool | None = None,  # None: engine.recycle_overlap
    ) -> None:
        self.config = config
        self.governance = governance
        self.on_progress = on_progress
        self.settings = worker_settings(config)
        self.device_lock = DeviceLock(config.gpu.device_index, instance, lock_folder)
        self.wait_for_device = wait_for_device
        self.device_wait_seconds = device_wait_seconds  # None: wait for as long as it takes
        self.transport_factory = transport
        self.locks_device = locks_device  # False: the worker takes its own host's lock
        self.info: WorkerInfo | None = None
        self.starts = 0
        self._transport: Transport | None = None  # the worker documents go to
        self._loading: Transport | None = None  # a recycle's replacement, loading beside it
        self._retiring: Transport | None = None  # a recycled worker finishing its documents
        self._docket = Docket()
        self._in_flight = self._docket.jobs
        self._next_memory_check = 0.0
        self._settled = self._docket.settled  # guards _in_flight; waiters sleep on it
        self._pumping = False  # a waiter is taking the worker's messages
        self._alone: str | None = None  # a job submitted alone, until it is collected
        self._starting = threading.RLock()  # one worker start at a time
        self._sending = threading.Lock()  # a pipe's messages must not interleave
        self.stopped = False
        self._recycling = Recycling.of(config.engine)
        overlaps = config.engine.recycle_overlap if overlap is None else overlap
        self._recycler = Recycler(self._recycling, self, self._starting, self._docket, overlaps)

    @property
    def probe(self) -> GpuProbe | None:
        return self.info.probe if self.info else None

    @property
    def alive(self) -> bool:
        transport = self._transport
        return transport is not None and transport.alive()

    def silent_seconds(self) -> float:
        """How long a worker has shown no sign of life (0 when none runs: a job starts one)."""
        return max((transport.silent_seconds() for transport in self._workers()), default=0.0)

    def max_pages_in_flight(self, per_worker: int) -> int:
        """Claim pacing: one worker may hold ``per_worker`` pages."""
        return per_worker

    def decide(self, options: ConversionOptions, source_name: str = "") -> Decision:
        with self._starting:
            if self.info is None:
                self.start()
        assert self.info is not None
        return decide(options, self.info.probe, self.governance, source_name=source_name)

    def start(self) -> WorkerInfo:
        """Start a worker and wait until its models are loaded and warm."""
        with self._starting:
            self._discard_current()
            transport = self.transport_factory(self.settings)
            transport.start()
            self._transport = transport
            self._recycling.started(transport)
            self.starts += 1
            try:
                self.info = self._handshake(transport)
            except EngineStartError:
                self._discard(transport)
                raise
            return self.info

    def _handshake(self, transport: Transport) -> WorkerInfo:
        if self.stopped:  # stop() came while it spawned (a recycle's), too soon to see it
            raise EngineStartError("engine_stopped", "the engine was stopped")
        option_sets = [self.config.defaults, *self.config.profiles.values()]
        return handshake(transport, option_sets, self.governance, self._lock_device)

    def _lock_device(self) -> None:
        if not self.locks_device:
            return
        lock_device(
            self.device_lock,
            self.config.gpu.device_index,
            wait=self.wait_for_device,
            wait_seconds=self.device_wait_seconds,
        )

    # -- documents ------------------------------------------------------------------------------

    def convert(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
        *,
        alone: bool = False,
    ) -> Converted | Failed:
        """Convert one document and block until it is done: ``submit`` then ``wait``."""
        self.submit(job_id, source_path, options, run_on, source_name, alone=alone)
        return self.wait(job_id)

    def submit(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
        *,
        alone: bool = False,
    ) -> None:
        """Hand one document to the worker (starting one if none runs); its clock starts now.
        ``alone``: first wait until no other document is in flight, and keep others out."""
        self._admit(job_id, alone)
        self._recycler.before_submit()
        with self._starting:
            if not self.alive:
                self.start()
            transport = self._transport
            assert transport is not None
            limit = float(options.document_timeout_seconds)
            self._docket.add(job_id, transport, limit)
            self._next_memory_check = 0.0
        try:
            with self._sending:
                transport.send(
                    ConvertRequest(job_id, source_path, source_name, options, run_on.device)
                )
        except TransportClosed:
            self._lose(transport, exit_wait=0.0)

    def wait(self, job_id: str) -> Converted | Failed:
        """The worker's answer for a submitted job, or the exception that ended it. Of the
        threads waiting at once, one pumps the worker's messages and the others sleep."""
        with self._settled:
            job = self._in_flight[job_id]
        while True:
            with self._settled:
                while self._pumping and not job.settled:
                    self._settled.wait()
                if job.settled:
                    del self._in_flight[job_id]
                    if self._alone == job_id:
                        self._alone = None
                    self._settled.notify_all()
                    break
                self._pumping = True
            try:
                self._supervise()
            finally:
                with self._settled:
                    self._pumping = False
                    self._settled.notify_all()
        self._recycler.after_collect()
        if job.error is not None:
            raise job.error
        assert job.answer is not None
        return job.answer

    def _admit(self, job_id: str, alone: bool) -> None:
        """Wait while a job runs alone, or, for one that must, while any other is in flight."""
        with self._settled:
            while self._alone is not None:
                self._settled.wait()
            if alone:
                self._alone = job_id  # taken at once: no newcomer can keep it waiting
                while self._in_flight:
                    self._settled.wait()

    def _supervise(self) -> None:
        """One step over each worker holding documents: enforce the deadlines and the memory
        limit (on the clock: progress messages must not skip it), take at most one message."""
        held = self._docket.workers()
        memory = time.monotonic() >= self._next_memory_check
        if memory:
            self._next_memory_check = time.monotonic() + _MEMORY_CHECK_SECONDS
        for transport in held:
            self._step(transport, memory, _MEMORY_CHECK_SECONDS / len(held))

    def _step(self, transport: Transport, memory: bool, longest: float) -> None:
        now = time.monotonic()
        waiting = self._docket.waiting_on(transport)
        if not waiting:
            return  # settled from another thread (stop, abort) since the waiter looked
        deadline = min(job.deadline for job in waiting.values())
        if deadline <= now:
            self._time_out(transport, now)
            return
        if memory and self._over_memory(transport):
            return
        try:
            message = transport.receive(min(deadline - now, longest))
        except TransportClosed:
            self._lose(transport, exit_wait=_EXIT_WAIT_SECONDS)
            return
        if message is not None:
            self._route(transport, message)

    def _route(self, transport: Transport, message: object) -> None:
        if isinstance(message, Progress):
            if self.on_progress is not None:
                self.on_progress(message.job_id, message.page, message.pages)
            return
        if not isinstance(message, Converted | Failed):
            return
        with self._settled:
            job = self._in_flight.get(message.job_id)
            if job is None or job.transport is not transport or job.settled:
                return
            job.answer = message
            self._settled.notify_all()
        gpu = message.gpu_memory if isinstance(message, Converted) else None
        if self._recycling.answered(transport, transport.resident_bytes(), gpu):
            self._recycler.wake()  # due with this answer
        if isinstance(message, Failed) and message.details.get("restart_worker"):
            self._discard(transport)  # a CUDA error may have poisoned the context: start afresh

    # -- when the worker must go ----------------------------------------------------------------

    def _time_out(self, transport: Transport, now: float) -> None:
        def error_for(_job_id: str, job: InFlight) -> Exception:
            if job.deadline <= now:
                return WorkerTimedOut(job.limit, shared=job.shared)
            return WorkerCrashed(transport.exit_code(), innocent=True)

        self._discard(transport, error_for)

    def _over_memory(self, transport: Transport) -> bool:
        """Stop the worker once it outgrows its limit, before the kernel's OOM killer (or
        systemd's MemoryMax=) picks a victim; sampled, so a systemd cap stays the backstop."""
        limit = self.config.conversion.max_worker_memory_bytes
        if not limit:
            return False
        rss = transport.resident_bytes()
        if rss is None or rss <= limit:
            return False
        if len(self._docket.waiting_on(transport)) == 1:
            self._discard(transport, lambda _job_id, _job: WorkerOverMemory(limit, rss))
        else:  # no culprit among several: each is a shared crash (``jobs.retries``)
            self._discard(transport, self._crashed_with(transport))
        return True

    def _lose(self, transport: Transport, exit_wait: float) -> None:
        """The worker is gone of itself (or by ``abort``): every job in it crashed with it."""
        transport.exit_code(wait=exit_wait)  # let it finish dying, so the exit code is its own
        self._discard(transport, self._crashed_with(transport))

    def _crashed_with(self, transport: Transport) -> ErrorFor:
        """Jobs in a worker that went down crashed, ``shared`` when several were in it."""
        shared = len(self._docket.waiting_on(transport)) > 1
        innocent = transport.lost_with_node()
        return lambda _job_id, _job: WorkerCrashed(
            transport.exit_code(), shared=shared and not innocent, innocent=innocent
        )

    def _discard(self, transport: Transport, error_for: ErrorFor | None = None) -> None:
        """Close the transport and settle every job still waiting on it: with ``error_for``'s
        verdict, or as innocent bystanders of a worker stopped for another reason."""
        transport.close()
        if self._transport is transport:
            self._transport = None
        self._docket.settle(transport, error_for or bystanders(transport))

    def _discard_current(self) -> None:
        """Before a fresh start: a live worker's jobs are innocent bystanders of the restart; a
        dead one's died with it (its pump may not have noticed yet), and count."""
        transport = self._transport
        if transport is None:
            return
        if transport.alive():
            self._discard(transport)
        else:
            self._discard(transport, self._crashed_with(transport))

    @property
    def recycling(self) -> bool:
        """The worker is due for replacement or being replaced (a pool looks elsewhere)."""
        return self._recycler.busy

    def memory(self) -> WorkerMemory:
        return self._recycling.memory(t.resident_bytes() if (t := self._transport) else None)

    def revive(self) -> WorkerInfo | None:
        """Start a worker if none runs, checked under the start lock (never beside a recycle)."""
        with self._starting:
            return None if self.alive else self.start()

    def current_worker(self) -> Transport | None:
        """For the recycler (``recycle.Slot``): the transport documents go to now."""
        return self._transport

    def replace(self, worker: object) -> tuple[WorkerInfo | None, WorkerInfo]:
        """For the recycler, under the start lock: shut ``worker`` down, start a fresh one."""
        old = self.info
        assert worker is self._transport and self._transport is not None
        self._shut_down(self._transport)
        return old, self.start()

    def launch(self) -> tuple[Transport, WorkerInfo]:
        """For the recycler: a fresh worker beside the current one, loaded and warm (the device
        lock is this engine's, already held); documents go on to the current one meanwhile."""
        transport = self._loading = self.transport_factory(self.settings)
        try:
            transport.start()
            return transport, self._handshake(transport)
        except BaseException:
            transport.close()
            raise
        finally:
            self._loading = None

    def adopt(self, transport: Transport, info: WorkerInfo) -> WorkerInfo | None:
        """For the recycler, under the start lock: documents go to ``transport`` from now on;
        the worker they went to retires, finishing what it holds. Its info."""
        old, self._retiring = self.info, self._transport
        self._transport, self.info = transport, info
        self._recycling.started(transport)
        self.starts += 1
        return old

    def retire(self, transport: Transport) -> None:
        """For the recycler: shut down a worker no document goes to any more."""
        self._shut_down(transport)
        if self._retiring is transport:
            self._retiring = None

    def _workers(self) -> list[Transport]:
        """The workers that may hold documents: the current one and a retiring one."""
        return [t for t in (self._transport, self._retiring) if t is not None]

    def _shut_down(self, transport: Transport) -> None:
        """Ask the worker to end, give it a while, then make sure it is gone."""
        if transport.alive():
            with contextlib.suppress(TransportClosed), self._sending:
                transport.send(Shutdown())
            transport.exit_code(wait=_STOP_WAIT_SECONDS)
        self._discard(transport)  # documents still in it are bystanders

    # -- from outside -----------------------------------------------------------------------------

    def abort(self) -> None:
        """Kill the workers from any thread; the threads inside convert() see WorkerCrashed."""
        for transport in self._workers():
            transport.kill()

    def stop(self) -> None:
        self.stopped = True
        if (loading := self._loading) is not None:
            loading.kill()
        for transport in self._workers():
            self._shut_down(transport)
        self.device_lock.release()
