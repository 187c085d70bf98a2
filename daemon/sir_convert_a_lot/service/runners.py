"""The job threads: every claimed job is carried by ``JobRunner.run`` on a thread of its own, so
several documents are in the worker at once and its one CUDA thread can batch their pages.

The main loop hands each claimed (or recovered, or taken-over) job to ``add`` and, once the
job's ``Done`` event is handled, calls ``done``. Threads are started as jobs need them, up to
the smaller of ``gpu.max_pages_in_flight`` (in effect) and ``MAX_THREADS``, and then wait for the
next job; a job beyond them waits in the queue. What each thread converts (``converting``) and
the pages each claimed job holds (``pages_in_flight``, from the worker's progress) are read by the
heartbeat and by dispatch's pacing. The worker's progress also goes to the journal as
``job_progress``, at most once per ``PROGRESS_LOG_SECONDS`` per job.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from sir_convert_a_lot import logs
from sir_convert_a_lot.engine.supervisor import EngineStartError
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.service.events import Done, Event, Wake
from sir_convert_a_lot.service.snapshot import Activity

log = logs.get()

MAX_THREADS = 32  # the most documents one instance converts at once, whatever the page limit
_ABORT_JOIN_SECONDS = 30.0
PROGRESS_LOG_SECONDS = 5.0
"""The least time between two ``job_progress`` events of one job. The worker reports every page
(a few per second on a GPU); the journal needs to show that a long job moves, not every page,
and an operator following ``journalctl -f`` should see each running job about this often."""


class JobThreads:
    """The job threads and what they hold. ``add``, ``done`` and ``stop`` are called by the main
    thread; ``on_progress`` by whichever thread pumps the engine; the readers from any thread."""

    def __init__(
        self,
        runner: JobRunner,
        events: queue.Queue[Event],
        wake: threading.Event,
        max_pages_in_flight: Callable[[], int],
        on_fatal: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner = runner
        self.events = events
        self.wake = wake  # the heartbeat's: what status shows has changed
        self.max_pages_in_flight = max_pages_in_flight  # in effect, read live
        self.on_fatal = on_fatal
        self.clock = clock
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pages_in_flight: dict[
            str, int | None
        ] = {}  # claimed, unfinished job -> its pages, if known
        self._converting: dict[str, Activity] = {}
        self._reported: dict[str, float] = {}  # converting job -> when progress was last logged

    # -- the main thread ----------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """A claimed job: it holds an unknown number of pages until the worker says."""
        with self._lock:
            self._pages_in_flight[job.job_id] = None
            wanted = min(
                len(self._pages_in_flight), max(1, self.max_pages_in_flight()), MAX_THREADS
            )
        self._queue.put(job)
        if len(self._threads) < wanted:
            number = len(self._threads) + 1
            thread = threading.Thread(target=self._run, name=f"sca-job-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def done(self, job_id: str) -> None:
        """The job ended (or was deferred, or given back): its pages are free."""
        with self._lock:
            self._pages_in_flight.pop(job_id, None)

    def stop(self, deadline: float, give_up: Callable[[list[str]], None]) -> None:
        """No new job starts; jobs still queued are given back by their threads (the service
        is stopping). Waits until ``deadline`` (monotonic) for the running ones; past it calls
        ``give_up`` with the job ids still converting, then waits for the threads once more."""
        for _thread in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            give_up([activity.job_id or "" for activity in self.converting()])
            for thread in self._threads:
                thread.join(timeout=_ABORT_JOIN_SECONDS)

    # -- readers ------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Jobs claimed and not done: queued for a thread or converting."""
        with self._lock:
            return len(self._pages_in_flight)

    def pages_in_flight(self) -> list[int | None]:
        """The pages each claimed, unfinished job holds; None where the worker has not said."""
        with self._lock:
            return list(self._pages_in_flight.values())

    def converting(self) -> list[Activity]:
        """A copy of what each thread converts, in the order they started."""
        with self._lock:
            shown = [Activity(**vars(activity)) for activity in self._converting.values()]
        return sorted(shown, key=lambda activity: activity.started)

    # -- the engine's progress ----------------------------------------------------------------

    def on_progress(self, job_id: str, page: int, pages: int) -> None:
        now = self.clock()
        report: Activity | None = None
        with self._lock:
            activity = self._converting.get(job_id)
            if activity is not None:
                activity.page, activity.pages = page, pages
                if page == 0:  # the worker has it: its time limit runs from now
                    activity.limit_from = now
                if now - self._reported.get(job_id, activity.started) >= PROGRESS_LOG_SECONDS:
                    self._reported[job_id] = now
                    report = Activity(**vars(activity))
            newly_known = job_id in self._pages_in_flight and self._pages_in_flight[job_id] is None
            if job_id in self._pages_in_flight:
                self._pages_in_flight[job_id] = pages
        self.wake.set()
        if newly_known:
            self.events.put(Wake())  # dispatch may claim again: the pacing rule looks now
        if report is not None:
            log.info(
                "job_progress",
                job_id=job_id,
                source=report.source,
                page=page,
                pages=pages,
                seconds=round(now - report.started, 1),
            )

    # -- the threads --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._converting[job.job_id] = Activity(
                    job.job_id,
                    job.shown,
                    started=self.clock(),
                    started_at=time.time(),
                    limit_seconds=float(job.options.document_timeout_seconds),
                )
            self.wake.set()
            try:
                outcome = self.runner.run(job)
            except EngineStartError as exc:
                self.on_fatal(f"the worker could not be restarted: {exc}")
                return
            finally:
                with self._lock:
                    self._converting.pop(job.job_id, None)
                    self._reported.pop(job.job_id, None)
                self.wake.set()
            self.events.put(Done(outcome))
