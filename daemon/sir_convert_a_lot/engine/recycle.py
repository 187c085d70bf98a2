"""When a worker is replaced between jobs: ``engine.recycle_after_jobs`` and
``engine.recycle_above_bytes``.

A long-lived worker's memory creeps up (docs/reference/memory.md measures how fast under
docling). The supervisor counts each worker's answers and reads its resident memory after each;
once either passes its threshold the worker is *due*, and is replaced in one of two ways:

- overlapped (a local engine): the recycling thread starts the replacement beside the due
  worker, which keeps converting, new documents included, while the replacement loads and warms;
  once it is ready, documents go to it, and the old worker finishes the documents it holds and
  is shut down. No document waits for a model load.
- drained (a Ray actor: its replacement would need the cluster's resources the old one holds):
  no new document goes to the due worker; once empty it is shut down and a fresh one loads and
  warms before a document goes in (the pool's other actors take the documents meanwhile).

Either way a document never sees a recycle: no error, no attempt.

``Recycling`` is the policy and the counts; ``Recycler`` does the waiting and the replacing over
what it needs of its ``supervisor.Engine`` (``Slot``), its start lock, and its documents
(``docket``: which worker holds which, and the condition their waiters sleep on).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import EngineSection
from sir_convert_a_lot.engine.docket import Docket
from sir_convert_a_lot.engine.interface import EngineStartError, WorkerInfo, WorkerMemory
from sir_convert_a_lot.engine.transports.base import Transport

log = logs.get()

JOBS, MEMORY = "jobs", "memory"  # the reasons, in the journal and the metric's label
RETRY_SECONDS = 60.0  # after a replacement that could not start, before the next one is tried


@dataclass
class Recycling:
    """One engine's recycling: what its current worker has done, and whether it is due; and
    what the worker before it did, while it finishes its last documents."""

    after_jobs: int = 0  # 0: never for this reason
    above_bytes: int = 0
    worker: object | None = None  # the transport of the worker counted (identity only)
    jobs: int = 0  # answers from that worker
    due: str | None = None  # JOBS or MEMORY once the worker must be replaced
    rss_bytes: int | None = None  # its resident memory at its last answer
    gpu: tuple[int, int] | None = None  # (allocated, reserved) after its last job on a GPU
    counts: dict[str, int] = field(default_factory=dict)  # recycles so far, by reason
    before: object | None = None  # the worker counted before this one
    before_jobs: int = 0  # its answers, those after its replacement started included
    before_rss: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, section: EngineSection) -> Recycling:
        return cls(section.recycle_after_jobs, section.recycle_above_bytes)

    def started(self, worker: object) -> None:
        """A fresh worker: nothing counted, nothing due; the one before goes on counting."""
        with self.lock:
            self.before, self.before_jobs, self.before_rss = self.worker, self.jobs, self.rss_bytes
            self.worker, self.jobs, self.due, self.rss_bytes, self.gpu = worker, 0, None, None, None

    def answered(
        self, worker: object, rss_bytes: int | None, gpu: tuple[int, int] | None = None
    ) -> str | None:
        """One answer from ``worker`` (converted or failed), with its memory right after; the
        reason it became due with this answer, if it did."""
        with self.lock:
            if worker is not None and worker is self.before:
                self.before_jobs, self.before_rss = self.before_jobs + 1, rss_bytes
                return None
            if worker is not self.worker:
                return None
            self.jobs += 1
            self.rss_bytes = rss_bytes
            if gpu is not None:
                self.gpu = gpu
            if self.due is not None:
                return None
            if self.after_jobs and self.jobs >= self.after_jobs:
                self.due = JOBS
            elif self.above_bytes and rss_bytes is not None and rss_bytes > self.above_bytes:
                self.due = MEMORY
            return self.due

    def due_worker(self) -> object | None:
        """The worker that must be replaced, if any."""
        with self.lock:
            return self.worker if self.due is not None else None

    def recycled(self, worker: object) -> str | None:
        """Count the recycle of ``worker``; its reason (None: it was not the one due)."""
        with self.lock:
            if worker is not self.worker or self.due is None:
                return None
            reason = self.due
            self.counts[reason] = self.counts.get(reason, 0) + 1
            return reason

    def memory(self, rss_bytes: int | None) -> WorkerMemory:
        with self.lock:
            allocated, reserved = self.gpu if self.gpu is not None else (None, None)
            return WorkerMemory(
                rss_bytes=rss_bytes,
                gpu_allocated_bytes=allocated,
                gpu_reserved_bytes=reserved,
                jobs=self.jobs,
                recycles=dict(self.counts),
            )


class Slot(Protocol):
    """What a ``Recycler`` needs of its engine."""

    stopped: bool

    @property
    def alive(self) -> bool:
        """Whether the worker documents go to now runs."""
        ...

    def current_worker(self) -> Transport | None:
        """The transport documents go to now (None: no worker runs)."""
        ...

    def replace(self, worker: object) -> tuple[WorkerInfo | None, WorkerInfo]:
        """Drained: shut ``worker`` down and start a fresh one (the start lock held): the old
        worker's info and the new one's."""
        ...

    def launch(self) -> tuple[Transport, WorkerInfo]:
        """Overlapped: a fresh worker beside the current one, loaded and warm, not yet sent
        anything (the start lock is not held: documents go on to the current one)."""
        ...

    def adopt(self, worker: Transport, info: WorkerInfo) -> WorkerInfo | None:
        """Overlapped, the start lock held: documents go to ``worker`` from now on; the current
        one retires. Its info."""
        ...

    def retire(self, worker: Transport) -> None:
        """Shut down a worker no document goes to any more (those still in it are bystanders)."""
        ...


class Recycler:
    """The waiting and replacing. ``starting`` is the engine's start lock; ``docket`` its
    documents, whose condition is notified whenever one is collected. ``overlap``: replace a due
    worker overlapped (a local engine), else drained (Ray actors)."""

    def __init__(
        self,
        policy: Recycling,
        slot: Slot,
        starting: threading.RLock,
        docket: Docket,
        overlap: bool = True,
    ) -> None:
        self.policy = policy
        self.slot = slot
        self.starting = starting
        self.docket = docket
        self.settled = docket.settled
        self.overlap = overlap
        self._thread: threading.Thread | None = None  # starts replacements, retires workers
        self._wake = threading.Event()
        self._replacing = False  # drained: the due worker is being replaced
        self._launching = False  # overlapped: a replacement loads beside the due worker
        self._retiring = False  # overlapped: the replaced worker finishes its documents
        self._retry_at = 0.0  # overlapped: no replacement started before (monotonic)

    @property
    def busy(self) -> bool:
        """A recycle is under way: from the moment the current worker is due until it is
        replaced, and overlapped also until the replaced worker is gone."""
        due = self.policy.due_worker()
        current = self.slot.current_worker()
        under_way = self._replacing or self._launching or self._retiring
        return under_way or (due is not None and due is current)

    def before_submit(self) -> None:
        """Drained: a new document never goes into a due worker: wait until the documents in it
        are done, then replace it (or wait, on the start lock, for the thread that does).
        Overlapped: a document that finds the worker gone (it crashed) while its replacement
        loads waits for that one, which is ready sooner than a second start would be."""
        if self.overlap:
            with self.settled:
                while self._launching and not self.slot.alive and not self.slot.stopped:
                    self.settled.wait(0.5)
            return
        while not self.slot.stopped:
            due = self.policy.due_worker()
            if due is None or due is not self.slot.current_worker():
                return
            with self.settled:
                while self.docket.holds(due) and due is self.slot.current_worker():
                    self.settled.wait()
            self.replace(due)

    def after_collect(self) -> None:
        """Drained: once a due worker's last document is collected, have the recycling thread
        replace it: an idle worker is not left waiting for the next document to be replaced."""
        due = self.policy.due_worker()
        if due is None or due is not self.slot.current_worker() or self.slot.stopped:
            return
        if self.overlap or not self.docket.holds(due):
            self.wake()

    def wake(self) -> None:
        """Have the recycling thread look at once (a worker just became due or empty)."""
        with self.settled:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="sca-recycle", daemon=True)
                self._thread.start()
        self._wake.set()

    def _serve(self) -> None:
        """The recycling thread lives as long as the engine: a worker process is bound to the
        thread that started it (``PR_SET_PDEATHSIG`` fires when that *thread* ends, see
        ``transports.local``), so the thread that starts fresh workers must not end under them.
        Overlapped, it also looks once a second, for a replacement to try again."""
        while not self.slot.stopped:
            woken = self._wake.wait(1.0)
            self._wake.clear()
            current = self.slot.current_worker()
            if current is None or self.policy.due_worker() is not current:
                continue
            if self.overlap:
                if time.monotonic() >= self._retry_at:
                    self._hand_over(current)
            elif woken:
                self._drain(current)

    # -- overlapped -----------------------------------------------------------------------------

    def _hand_over(self, due: Transport) -> None:
        """Start the replacement while ``due`` keeps converting, send documents to it once it is
        ready, let ``due`` finish what it holds, then shut it down."""
        asked = time.monotonic()
        with self.settled:
            self._launching = True
        try:
            fresh, info = self.slot.launch()
        except Exception as error:  # noqa: BLE001 - any failed start leaves the old worker serving
            self._launch_failed(error)
            return
        ready = time.monotonic()
        with self.starting:
            current = self.slot.current_worker()
            keep = not self.slot.stopped and (current is due or current is None)
            reason = self.policy.recycled(due) if keep and current is due else None
            old = self.slot.adopt(fresh, info) if keep else None
        with self.settled:
            self._launching, self._retiring = False, keep
            self.settled.notify_all()
        if not keep:  # stopped, or a worker was started anew after a crash meanwhile
            self.slot.retire(fresh)
            return
        if reason is None:  # the due worker was lost while this one loaded: a restart, no wait
            log.info("worker_replaced_after_crash", pid=info.pid, host=info.host)
        try:
            with self.settled:
                while self.docket.holds(due) and not self.slot.stopped:
                    self.settled.wait(1.0)
            if not self.slot.stopped:
                self.slot.retire(due)
        finally:
            with self.settled:
                self._retiring = False
                self.settled.notify_all()
        if self.slot.stopped:  # a stop that looked at the workers just before the switch
            self.slot.retire(fresh)
            return
        if reason is not None:
            with self.policy.lock:
                jobs, rss = self.policy.before_jobs, self.policy.before_rss
            self._log(reason, jobs, rss, old, info, overlap=True, ready=ready - asked, asked=asked)

    def _launch_failed(self, error: Exception) -> None:
        with self.settled:
            self._launching = False
            self.settled.notify_all()
        if self.slot.stopped:
            return  # stopped while the replacement loaded: no loss to report
        self._retry_at = time.monotonic() + RETRY_SECONDS
        log.error(
            "worker_recycle_failed",
            reason=getattr(error, "reason", type(error).__name__),
            message=str(error),
            effect="the old worker goes on converting; its replacement is started again in "
            f"{RETRY_SECONDS:g} s",
        )

    # -- drained --------------------------------------------------------------------------------

    def _drain(self, due: object) -> None:
        try:
            self.replace(due)
        except EngineStartError as error:
            if self.slot.stopped:
                return  # stopped while the fresh worker loaded: no loss to report
            log.error(
                "worker_recycle_failed",
                reason=error.reason,
                message=str(error),
                effect="the next document starts a worker again, as after a crash",
            )

    def replace(self, due: object) -> None:
        """Drained: replace the due worker if it is still the current one and empty."""
        asked = time.monotonic()
        with self.starting:
            slot = self.slot
            if slot.current_worker() is not due or slot.stopped or self.docket.holds(due):
                return
            reason = self.policy.recycled(due)
            if reason is None:
                return
            jobs, rss = self.policy.jobs, self.policy.rss_bytes
            self._replacing = True
            try:
                old, new = slot.replace(due)
            finally:
                self._replacing = False
        ready = time.monotonic() - asked
        self._log(reason, jobs, rss, old, new, overlap=False, ready=ready, asked=None)

    def _log(
        self,
        reason: str,
        jobs: int,
        rss: int | None,
        old: WorkerInfo | None,
        new: WorkerInfo,
        *,
        overlap: bool,
        ready: float,
        asked: float | None,
    ) -> None:
        """``worker_recycled``: ``ready_seconds`` from the replacement's start to its ``Ready``;
        ``overlap_seconds`` from its start until the old worker was gone (two workers up)."""
        log.info(
            "worker_recycled",
            reason=reason,
            jobs=jobs,
            worker_memory_bytes=rss,
            recycle_after_jobs=self.policy.after_jobs,
            recycle_above_bytes=self.policy.above_bytes,
            old_pid=old.pid if old else None,
            pid=new.pid,
            host=new.host,
            load_seconds=round(new.load_seconds, 3),
            warm_seconds=round(new.warm_seconds, 3),
            overlap=overlap,
            ready_seconds=round(ready, 3),
            overlap_seconds=round(time.monotonic() - asked, 3) if asked is not None else 0.0,
        )
