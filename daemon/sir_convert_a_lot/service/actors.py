"""The Ray engine's actors as the lease shows them: where each runs, its GPUs, the jobs in it.

``EnginePool.workers()`` asks an actor where it runs until it knows (a Ray call that waits up to
a second for an actor that does not answer); the heartbeat must not wait on that, so the list is
gathered on a thread of its own and the heartbeat takes the newest one there is
(``ActorView.snapshot``), at most ``wait_seconds`` late.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sir_convert_a_lot import logs

log = logs.get()

WAIT_SECONDS = 0.5  # the longest a heartbeat waits for a fresh list of the actors


class Converting(Protocol):
    """What the actor list needs of a job converting (``heartbeat.Activity``)."""

    job_id: str | None
    source: str | None
    page: int
    pages: int


class ActorView:
    """The newest ``workers()`` list, refreshed on a thread so a silent actor delays no beat."""

    def __init__(
        self,
        workers: Callable[[], list[dict[str, Any]]],
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.workers = workers
        self.wait_seconds = wait_seconds
        self._latest: list[dict[str, Any]] = []
        self._refreshing: threading.Thread | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> list[dict[str, Any]]:
        """The actors now, or as last seen when finding out takes longer than ``wait_seconds``."""
        with self._lock:
            thread = self._refreshing
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._refresh, name="sca-actors", daemon=True)
                self._refreshing = thread
                thread.start()
        thread.join(self.wait_seconds)
        with self._lock:
            return list(self._latest)

    def _refresh(self) -> None:
        try:
            latest = self.workers()
        except Exception as exc:  # noqa: BLE001 - the status must not end the heartbeat
            log.warning("actors_unknown", error=f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._latest = latest


def lease_actors(
    workers: list[dict[str, Any]], converting: Iterable[Converting]
) -> list[dict[str, Any]]:
    """Each actor as the lease lists it, its jobs with their source and page progress."""
    by_id = {activity.job_id: activity for activity in converting if activity.job_id}
    listed = []
    for worker in workers:
        jobs = []
        for job_id in worker.get("jobs", []):
            activity = by_id.get(job_id)
            jobs.append(
                {
                    "job_id": job_id,
                    "source": activity.source if activity else None,
                    "page": activity.page if activity else 0,
                    "pages": activity.pages if activity else 0,
                }
            )
        listed.append(
            {
                "actor": worker.get("actor"),
                "alive": bool(worker.get("alive")),
                "host": worker.get("host") or "",
                "node_id": worker.get("node_id") or "",
                "pid": worker.get("pid"),
                "gpus": list(worker.get("gpus") or []),
                "restarts": max(
                    0, int(worker.get("starts") or 0) - 1 - int(worker.get("recycles") or 0)
                ),
                "recycles": int(worker.get("recycles") or 0),
                "memory_bytes": worker.get("memory_bytes"),
                "jobs": jobs,
            }
        )
    return listed
