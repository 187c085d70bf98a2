"""When a worker is replaced between jobs: ``engine.recycle_after_jobs`` and
``engine.recycle_above_bytes``.

A long-lived worker's memory creeps up (docs/reference/memory.md measures how fast under
docling). The supervisor counts each worker's answers and reads its resident memory after each;
once either passes its threshold the worker is *due*: no new document goes to it, the documents
in it finish there, and once it is empty it is told to shut down and a fresh worker loads and
warms before any document goes in. A document never sees a recycle: no error, no attempt, only
a wait of at most one model load (after the documents still in the old worker).

``Recycling`` is the policy and the counts; ``Recycler`` does the waiting and the replacing over
what it needs of its ``supervisor.Engine`` (``Slot``): the start lock, the condition its waiters
sleep on, and a way to replace a worker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import EngineSection
from sir_convert_a_lot.engine.interface import EngineStartError, WorkerInfo, WorkerMemory

log = logs.get()

JOBS, MEMORY = "jobs", "memory"  # the reasons, in the journal and the metric's label


@dataclass
class Recycling:
    """One engine's recycling: what its current worker has done, and whether it is due."""

    after_jobs: int = 0  # 0: never for this reason
    above_bytes: int = 0
    worker: object | None = None  # the transport of the worker counted (identity only)
    jobs: int = 0  # answers from that worker
    due: str | None = None  # JOBS or MEMORY once the worker must be replaced
    rss_bytes: int | None = None  # its resident memory at its last answer
    gpu: tuple[int, int] | None = None  # (allocated, reserved) after its last job on a GPU
    counts: dict[str, int] = field(default_factory=dict)  # recycles so far, by reason
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, section: EngineSection) -> Recycling:
        return cls(section.recycle_after_jobs, section.recycle_above_bytes)

    def started(self, worker: object) -> None:
        """A fresh worker: nothing counted, nothing due."""
        with self.lock:
            self.worker, self.jobs, self.due, self.rss_bytes, self.gpu = worker, 0, None, None, None

    def answered(
        self, worker: object, rss_bytes: int | None, gpu: tuple[int, int] | None = None
    ) -> str | None:
        """One answer from ``worker`` (converted or failed), with its memory right after; the
        reason it became due with this answer, if it did."""
        with self.lock:
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
        """The worker that must be replaced before it takes another document, if any."""
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

    def current_worker(self) -> object | None:
        """The transport documents go to now (None: no worker runs)."""
        ...

    def holds(self, worker: object) -> bool:
        """Whether a document submitted to ``worker`` is not yet collected."""
        ...

    def replace(self, worker: object) -> tuple[WorkerInfo | None, WorkerInfo]:
        """Shut ``worker`` down and start a fresh one (the start lock held): the old worker's
        info and the new one's."""
        ...


class Recycler:
    """The waiting and replacing. ``starting`` is the engine's start lock (held through a
    replacement, so documents wait for the fresh worker rather than start their own);
    ``settled`` the condition notified whenever a document is collected."""

    def __init__(
        self,
        policy: Recycling,
        slot: Slot,
        starting: threading.RLock,
        settled: threading.Condition,
    ) -> None:
        self.policy = policy
        self.slot = slot
        self.starting = starting
        self.settled = settled
        self._thread: threading.Thread | None = None  # replaces idle due workers
        self._wake = threading.Event()
        self._replacing = False

    @property
    def busy(self) -> bool:
        """The current worker is due, or being replaced."""
        due = self.policy.due_worker()
        current = self.slot.current_worker()
        return self._replacing or (due is not None and due is current)

    def before_submit(self) -> None:
        """A new document never goes into a due worker: wait until the documents in it are
        done, then replace it (or wait, on the start lock, for the thread that does)."""
        while not self.slot.stopped:
            due = self.policy.due_worker()
            if due is None or due is not self.slot.current_worker():
                return
            with self.settled:
                while self.slot.holds(due) and due is self.slot.current_worker():
                    self.settled.wait()
            self.replace(due)

    def after_collect(self) -> None:
        """Once a due worker's last document is collected, have the recycling thread replace
        it: an idle worker is not left waiting for the next document to be replaced."""
        due = self.policy.due_worker()
        if due is None or due is not self.slot.current_worker() or self.slot.stopped:
            return
        if self.slot.holds(due):
            return
        with self.settled:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="sca-recycle", daemon=True)
                self._thread.start()
        self._wake.set()

    def _serve(self) -> None:
        """The recycling thread lives as long as the engine: a worker process is bound to the
        thread that started it (``PR_SET_PDEATHSIG`` fires when that *thread* ends, see
        ``transports.local``), so the thread that starts fresh workers must not end under them."""
        while not self.slot.stopped:
            if not self._wake.wait(1.0):
                continue
            self._wake.clear()
            due = self.policy.due_worker()
            if due is None:
                continue
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
        """Replace the due worker if it is still the current one and empty."""
        with self.starting:
            slot = self.slot
            if slot.current_worker() is not due or slot.stopped or slot.holds(due):
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
        )
