"""What the heartbeat reports of the service, handed over as one frozen value.

The main thread owns the inbox's state (intake), the deferred jobs and the service's state, and
changes them without locks; the heartbeat runs on a thread of its own. So the main thread
``publish``es what status shows of them once per turn of its loop, and the heartbeat takes one
``ServiceSnapshot`` per beat: that view, with the job threads' copy of what converts now (taken
under their lock) added. Nothing the heartbeat reads is changed under it while it reads.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.intake.blocked import Blocked
from sir_convert_a_lot.intake.queue import Intake
from sir_convert_a_lot.intake.watch import InboxWatcher
from sir_convert_a_lot.jobs.deferral import Deferrals, Deferred

STATUS_ARRIVING = 20  # files still arriving (and deferred jobs) that status lists by name


@dataclass
class Activity:
    """What one job thread is converting (``service.runners``); the heartbeat reads copies."""

    job_id: str | None = None
    source: str | None = None
    page: int = 0
    pages: int = 0
    started: float = 0.0  # monotonic
    started_at: float = 0.0  # wall clock, for status read on another host
    limit_seconds: float = 0.0
    # monotonic: when the worker took the document (its first progress), where the supervisor's
    # limit starts; before, the job may wait (for an empty worker, or a recycled one to load)
    limit_from: float = 0.0


@dataclass(frozen=True)
class ServiceSnapshot:
    """The service at one moment, as status, the STATUS= line and the watchdog see it. The
    inbox's figures are what the main thread last published (``published``); ``converting``,
    ``in_flight``, ``ready`` and ``stopping`` are as of when the snapshot was taken."""

    config: Config
    governance: Governance
    started_at: float  # wall clock
    state: str = "starting"  # then "ready"; status shows "stopping" from ``stopping``
    ready: bool = False
    stopping: bool = False
    watcher: InboxWatcher | None = None  # its ``alive`` is asked at each beat
    converting: tuple[Activity, ...] = ()  # the longest running first
    in_flight: int = 0  # jobs claimed and not done: queued for a job thread or converting
    watching: int = 0  # files in the stability window
    candidates: int = 0  # files ready for a claim
    arriving: tuple[tuple[str, str], ...] = ()  # the first by path: (path, what it waits for)
    arriving_count: int = 0
    deferred: tuple[Deferred, ...] = ()  # the first few, as status lists them
    blocked: tuple[Blocked, ...] = ()


class Board:
    """Where the main thread leaves its view for the heartbeat's thread, under a lock. A view
    that differs from the last wakes the heartbeat (``wake``), so that the lease and STATUS=
    show a change without a beat's delay."""

    def __init__(self, first: ServiceSnapshot, wake: threading.Event) -> None:
        self._lock = threading.Lock()
        self._shown = first
        self.wake = wake

    @property
    def shown(self) -> ServiceSnapshot:
        with self._lock:
            return self._shown

    def publish(self, view: ServiceSnapshot) -> None:
        with self._lock:
            changed, self._shown = view != self._shown, view
        if changed:
            self.wake.set()

    def take(
        self,
        converting: Callable[[], list[Activity]],
        in_flight: int,
        *,
        ready: threading.Event,
        stopping: threading.Event,
    ) -> ServiceSnapshot:
        """The view last published, with what converts now and the service's flags."""
        return replace(
            self.shown,
            converting=tuple(converting()),
            in_flight=in_flight,
            ready=ready.is_set(),
            stopping=stopping.is_set(),
        )


def published(
    base: ServiceSnapshot,
    state: str,
    watcher: InboxWatcher | None,
    intake: Intake,
    deferrals: Deferrals,
    config: Config,
) -> ServiceSnapshot:
    """What the main thread shows of its own state now (called on the main thread only)."""
    waiting = intake.arrivals.waiting()
    return ServiceSnapshot(
        config=config,
        governance=base.governance,
        started_at=base.started_at,
        state=state,
        watcher=watcher,
        watching=intake.watching(),
        candidates=intake.claimable(),
        arriving=tuple(heapq.nsmallest(STATUS_ARRIVING, waiting.items())),
        arriving_count=len(waiting),
        deferred=deferrals.waiting[:STATUS_ARRIVING],
        blocked=intake.files.blocked_view,
    )
