"""What the daemon tells the world about itself, from one thread: the lease heartbeat (with the
status document that ``sir-convert status`` reads), systemd's STATUS= line and WATCHDOG=1.

It runs on its own thread so that it keeps going while the main thread loads models or waits
on a job; the watchdog ping is withheld exactly while ``health_problem`` names a problem.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.engine.interface import ConversionEngine
from sir_convert_a_lot.intake.blocked import BLOCKED_SHOWN
from sir_convert_a_lot.jobs.leases import Instances
from sir_convert_a_lot.names import display
from sir_convert_a_lot.service.actors import ActorView, lease_actors
from sir_convert_a_lot.service.snapshot import Activity, ServiceSnapshot
from sir_convert_a_lot.service.startup import naming_settings
from sir_convert_a_lot.systemd import Notifier
from sir_convert_a_lot.versions import build_id, package_version

log = logs.get()

WORKER_SILENCE_SECONDS = 30.0  # a worker silent this long is stuck (native code holding the GIL)
OVERDUE_GRACE_SECONDS = 60.0  # a job this far past its limit means the daemon itself is stuck
STATUS_LINE_JOBS = 3  # jobs the STATUS= line names; the rest are counted


class Heartbeat:
    """The heartbeat thread, and the status, STATUS= line and health it reports. It reads the
    service only through ``snapshot`` (one ``ServiceSnapshot`` per beat, built by the service)
    and the engine through its own thread-safe interface. ``wake`` makes it write the lease and
    STATUS= now, not at the next beat; the service sets it whenever something that status
    shows has changed."""

    def __init__(
        self,
        snapshot: Callable[[], ServiceSnapshot],
        *,
        engine: ConversionEngine,
        instances: Instances,
        notifier: Notifier,
        lease_seconds: float,
        wake: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot = snapshot
        self.engine = engine
        self.instances = instances  # where the lease goes
        self.notifier = notifier
        self.lease_seconds = lease_seconds
        self.wake = wake
        self.clock = clock  # the service's: deferred and blocked entries are timed by it
        self._finished = False
        self._thread: threading.Thread | None = None
        self._last_status_line = ""
        self._watchdog_withheld: str | None = None
        self._actors: ActorView | None = None

    # -- what it reports ----------------------------------------------------------------------

    def health_problem(self, snap: ServiceSnapshot | None = None) -> str | None:
        """Why the daemon should not tell systemd it is well, or None when it is."""
        snap = snap or self.snapshot()
        if snap.watcher is not None and not snap.watcher.alive():
            return "the inbox watcher is not running"
        silent = self.engine.silent_seconds()
        if silent > WORKER_SILENCE_SECONDS:
            return f"the worker process has not answered for {silent:.0f} s"
        for activity in snap.converting:
            since = activity.limit_from or activity.started
            overdue = time.monotonic() - since - activity.limit_seconds
            if activity.started and overdue > OVERDUE_GRACE_SECONDS:
                return f"job {activity.job_id} is {overdue:.0f} s past its time limit"
        return None

    def status_line(self, snap: ServiceSnapshot | None = None) -> str:
        """What systemd shows in ``systemctl status``: idle, or converting X (page n/m), Y
        (page n/m) and N more."""
        snap = snap or self.snapshot()
        converting = snap.converting
        queued = _queued(snap)
        doing = "idle"
        if converting:
            named = [_shown(activity) for activity in converting[:STATUS_LINE_JOBS]]
            doing = "converting " + ", ".join(named)
            if len(converting) > STATUS_LINE_JOBS:
                doing += f" and {len(converting) - STATUS_LINE_JOBS} more"
        if queued:
            doing += f", {queued} queued"
        if snap.blocked:
            doing += f", {len(snap.blocked)} blocked (see sir-convert status)"
        info = self.engine.info
        if info is not None and not info.loaded:
            return f"no GPU: jobs fail with gpu_not_available; {doing}"
        return doing

    def status(self, snap: ServiceSnapshot | None = None) -> dict[str, Any]:
        """The status part of the lease: what ``sir-convert status`` shows of a running daemon.
        ``jobs`` lists every job converting; ``job_id``, ``source``, ``page`` and ``pages`` are
        the first of them (the longest running), as before several ran at once; each job says
        since when (``started_at``, wall clock) and for how long (``seconds``) it has run. With the
        Ray engine, ``engine`` says so and ``actors`` lists each actor and the jobs in it."""
        snap = snap or self.snapshot()
        converting = list(snap.converting)
        first = converting[0] if converting else Activity()
        probe = self.engine.probe
        now = self.clock()
        status: dict[str, Any] = {
            "state": "stopping" if snap.stopping else snap.state,
            "activity": "converting" if converting else "idle",
            "job_id": first.job_id,
            "source": first.source,
            "page": first.page,
            "pages": first.pages,
            "jobs": [_job(activity) for activity in converting],
            "queued": _queued(snap),
            "watching": snap.watching,
            "arriving": [
                {"source": display(path), "waiting_for": reason} for path, reason in snap.arriving
            ],
            "arriving_count": snap.arriving_count,
            "deferred": [
                {
                    "source": display(entry.job.relative_path),
                    "job_id": entry.job.job_id,
                    "why": entry.why,
                    "retry_in_seconds": round(max(0.0, entry.next_try - now)),
                }
                for entry in snap.deferred
            ],
            "blocked_count": len(snap.blocked),
            "blocked": [entry.to_dict(now) for entry in snap.blocked[:BLOCKED_SHOWN]],
            "gpu": probe.to_dict() if probe else None,
            "lock": snap.governance.lock,
            "cpu_stages": list(snap.governance.cpu_stages),
            "started_at": snap.started_at,
            "version": package_version(),
            "naming": naming_settings(snap.config),
            "build": build_id(),
            "worker": self._worker(snap),
        }
        if self.engine.kind == "ray":
            status["engine"] = "ray"
            status["actors"] = lease_actors(self._actor_view().snapshot(), converting)
        return status

    def _worker(self, snap: ServiceSnapshot) -> dict[str, Any]:
        """The worker's memory next to the limits that act on it (with Ray, the actor nearest
        them): ``sir-convert status`` and ``doctor`` show it."""
        memory = self.engine.memory()
        config = snap.config
        return {
            "memory_bytes": memory.rss_bytes,
            "max_worker_memory_bytes": config.conversion.max_worker_memory_bytes,
            "recycle_above_bytes": config.engine.recycle_above_bytes,
            "recycle_after_jobs": config.engine.recycle_after_jobs,
            "jobs_since_start": memory.jobs,
            "recycles": dict(memory.recycles),
            "gpu_allocated_bytes": memory.gpu_allocated_bytes,
            "gpu_reserved_bytes": memory.gpu_reserved_bytes,
        }

    def _actor_view(self) -> ActorView:
        """The Ray engine's actors, found out off this thread (``service.actors``)."""
        if self._actors is None:
            workers = getattr(self.engine, "workers", None)
            self._actors = ActorView(workers if callable(workers) else list)
        return self._actors

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="sca-heartbeat", daemon=True)
        self._thread.start()

    def announce_ready(self) -> None:
        """READY=1 with the first STATUS= line, once the daemon can really work."""
        self._last_status_line = self.status_line()
        self.notifier.ready(self._last_status_line)

    def stop(self) -> None:
        """The last beat: the thread ends within a second (the lease is removed after)."""
        self._finished = True
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        """Lease heartbeats, systemd's STATUS= and WATCHDOG=1, from one thread that keeps going
        while the main thread loads models or waits on a job."""
        interval = max(0.5, self.lease_seconds / 4)
        if self.notifier.watchdog_seconds:
            interval = min(interval, self.notifier.watchdog_seconds / 2)
        next_lease = 0.0
        woken = True
        while not self._finished:
            now = time.monotonic()
            due = now >= next_lease or woken
            if due:
                self.wake.clear()  # before the snapshot: a wake during the write is not lost
            snap = self.snapshot()
            if due:
                try:
                    self.instances.heartbeat(self.status(snap))
                except OSError as exc:
                    log.error("heartbeat_failed", error=str(exc))
                next_lease = now + max(0.5, self.lease_seconds / 4)
            self._tell_systemd(snap)
            woken = self.wake.wait(min(interval, 1.0))

    def _tell_systemd(self, snap: ServiceSnapshot) -> None:
        if not self.notifier.enabled:
            return
        if snap.ready and not snap.stopping:
            line = self.status_line(snap)
            if line != self._last_status_line:
                self._last_status_line = line
                self.notifier.status(line)
        if self.notifier.watchdog_seconds is None:
            return
        problem = self.health_problem(snap)
        if problem is None:
            self.notifier.watchdog()
        elif problem != self._watchdog_withheld:
            # The watcher was asked now, after the snapshot: a stop begun in between stopped it,
            # so ask again whether the service stops before calling it an alarm.
            self._say_withheld(problem, snap.stopping or self.snapshot().stopping)
        self._watchdog_withheld = problem

    def _say_withheld(self, problem: str, stopping: bool) -> None:
        """An alarm only while running: after SIGTERM (STOPPING=1) the watcher is stopped on
        purpose and systemd is already stopping us, so no restart follows and an error would be
        a false alarm in ``journalctl -p warning``."""
        if stopping:
            log.info("watchdog_withheld", reason=problem, effect="none: the service is stopping")
        else:
            log.error("watchdog_withheld", reason=problem, effect="systemd will restart us")


def _queued(snap: ServiceSnapshot) -> int:
    """Candidates and claimed jobs waiting, the jobs converting not counted."""
    return snap.candidates + max(0, snap.in_flight - len(snap.converting))


def _job(activity: Activity) -> dict[str, Any]:
    """One converting job as the lease lists it."""
    return {
        "job_id": activity.job_id,
        "source": activity.source,
        "page": activity.page,
        "pages": activity.pages,
        "started_at": activity.started_at,
        "seconds": round(max(0.0, time.monotonic() - activity.started), 1),
    }


def _shown(activity: Activity) -> str:
    """One job in the STATUS= line: its file, and its page once the worker says."""
    if activity.pages:
        return f"{activity.source} (page {activity.page}/{activity.pages})"
    return str(activity.source)
