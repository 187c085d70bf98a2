"""The daemon: starts the parts, runs the main loop, and stops them in order.

Data flows one way: the watcher and the scans produce hints, intake turns them into candidates
(the stability window, the arrival checks), dispatch claims them into jobs (paced by the pages
they hold), and a job thread per job (``service.runners``) carries it through the engine to
publish and disposal and reports back with an event.
The heartbeat thread tells the lease and systemd what is going on. The main loop never waits on
a fixed sleep: it sleeps until the next intake deadline, periodic duty or event, whichever
comes first.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, Reconfigurable
from sir_convert_a_lot.engine.choose import build_engine
from sir_convert_a_lot.engine.interface import ConversionEngine, EngineStartError, ProgressSink
from sir_convert_a_lot.intake.dispatch import Dispatcher
from sir_convert_a_lot.intake.queue import Intake
from sir_convert_a_lot.intake.watch import InboxWatcher
from sir_convert_a_lot.jobs.deferral import Deferrals
from sir_convert_a_lot.jobs.endings import cleanup_after_restart
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.jobs.outcome import Outcome
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.service import reload, shutdown, signals, startup
from sir_convert_a_lot.service.events import Done, Event, EventsLost, Hint, Reload, Wake
from sir_convert_a_lot.service.heartbeat import Heartbeat
from sir_convert_a_lot.service.hooks import Hooks
from sir_convert_a_lot.service.metrics import Metrics, Sample
from sir_convert_a_lot.service.runners import JobThreads
from sir_convert_a_lot.service.snapshot import Activity, Board, ServiceSnapshot, published
from sir_convert_a_lot.systemd import Notifier

log = logs.get()

SETUP_PROBLEMS = frozenset({"models_missing", "device_lock_unavailable"})


class ShareMissing(Exception):
    """The inbox's sentinel file is absent: the share is not mounted."""


class Service:
    """One daemon instance: owns the parts and the threads, and the main loop that drives
    intake and dispatch. Other threads talk to the main loop only through ``events``.

    It takes the config and nothing else that production sets. ``engine_factory`` builds the
    conversion engine around the service's progress sink; left out (as ``sir-convert run``
    leaves it), the engine is the supervised worker or Ray pool that ``engine.kind`` names. It
    is a parameter because the engine is the one part that tests and tools put their own in
    place of (a scripted worker, ``tests/plugins``; a no-op engine, ``tools/loop_ceiling.py``);
    no config key and no environment variable reaches it."""

    def __init__(
        self,
        config: Config,
        *,
        engine_factory: Callable[[ProgressSink], ConversionEngine] | None = None,
    ) -> None:
        self.config = config
        self.governance = config.governance  # a reload may not change it (config.reload)
        self.instance = config.instances.name
        self.clock: Callable[[], float] = time.monotonic
        self.spool = Spool(config.paths, self.instance)
        self.engine: ConversionEngine = (engine_factory or self._supervised)(self._on_progress)
        self.events: queue.Queue[Event] = queue.Queue()
        self.state = "starting"  # then "ready"; the heartbeat shows "stopping" on its own
        # Recent endings, for tests and debugging; bounded so a long run does not grow.
        self.outcomes: deque[Outcome] = deque(maxlen=1000)
        self.deferrals = Deferrals(self.clock)  # jobs that could not even be failed
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.runner = JobRunner(
            config, self.governance, self.spool, self.engine, stopping=self.stopping
        )
        self.fatal: str | None = None
        self.started_at = time.time()
        self.watcher: InboxWatcher | None = None
        self._heartbeat_wake = threading.Event()
        self.threads = JobThreads(
            self.runner,
            self.events,
            self._heartbeat_wake,
            self.max_pages_in_flight,
            on_fatal=self._fail,
        )
        self._next_takeover = 0.0
        self.intake = Intake(config, self.clock, self._heartbeat_wake.set)
        claims, limit = self.spool.claims, self.max_pages_in_flight
        self.dispatcher = Dispatcher(config, self.intake, claims, self.clock, self._enqueue, limit)
        self.notifier = Notifier()
        self.metrics = Metrics(config.metrics, self.instance)
        self.hooks = Hooks(config, self.metrics.hook_ended)  # after each published ending
        # Every part that reads the config, told of a reload in this order (``_reload``).
        self.reconfigurable: tuple[Reconfigurable, ...] = (
            self.runner,
            self.intake,
            self.dispatcher,
            self.hooks,
        )
        first = ServiceSnapshot(config, self.governance, self.started_at)
        self.board = Board(first, self._heartbeat_wake)  # the main thread's view, for status
        self.heartbeat = Heartbeat(
            self.snapshot,
            engine=self.engine,
            instances=self.spool.instances,
            notifier=self.notifier,
            lease_seconds=config.instances.lease_seconds,
            wake=self._heartbeat_wake,
            clock=self.clock,
        )

    def _supervised(self, on_progress: ProgressSink) -> ConversionEngine:
        """The engine every daemon runs: supervised workers, as engine.kind says."""
        return build_engine(
            self.config, self.governance, instance=self.instance, on_progress=on_progress
        )

    # -- public -------------------------------------------------------------------------------

    def max_pages_in_flight(self) -> int:
        """The pages claimed jobs may hold at once: ``gpu.max_pages_in_flight`` in effect, per
        worker of the engine (live: a reload may change it)."""
        return self.engine.max_pages_in_flight(self.config.gpu.max_pages_in_flight_in_effect)

    def run(self) -> int:
        """Run until stopped. 0 after a clean stop, 1 after a runtime failure; ConfigError
        escapes for the CLI to turn into exit code 2."""
        # An unmounted share comes first: creating the folders would fill the empty mount
        # point, and the share mounted over them later would hide whatever landed there.
        missing = startup.share_missing(self.config)
        if missing:
            log.error("share_missing", reason=missing, effect="not starting; systemd retries")
            return 1
        # Refusals come first and alone: one line, exit 2, nothing started that needs stopping.
        startup.prepare_folders(self.config, self.spool)
        instances = self.spool.instances
        startup.refuse_duplicate_instance(
            instances, self.instance, self.config.instances.lease_seconds
        )
        startup.refuse_disagreeing_instances(instances, self.config, self.instance)
        self.metrics.start()  # a ConfigError when it cannot listen or write: nothing to stop
        with signals.handled(stop=self.request_stop, reload=self.request_reload):
            return self._start_and_loop()

    def _start_and_loop(self) -> int:
        try:
            self._startup()
        except EngineStartError as exc:
            # Missing models or an unusable lock folder are fixed by the operator, not by
            # another start: exit 2, which the unit does not restart (RestartPreventExitStatus).
            setup = exc.reason in SETUP_PROBLEMS
            log.error(
                "engine_start_failed",
                reason=exc.reason,
                message=str(exc),
                details=exc.details,
                effect="not restarting: fix the installation first" if setup else "exiting",
            )
            self._shutdown()
            return 2 if setup else 1
        except ShareMissing as exc:
            log.error("share_missing", reason=str(exc), effect="not starting; systemd retries")
            self._shutdown()
            return 1
        code = 0
        try:
            code = self._loop()
        finally:
            clean = self._shutdown()
        return code if clean else 1

    def request_stop(self) -> None:
        """Stop claiming; let the running jobs finish within the grace period. Thread-safe."""
        if not self.stopping.is_set():
            self.notifier.stopping("stopping: finishing the running jobs, claiming nothing new")
        self.stopping.set()
        self.events.put(Wake())

    def request_reload(self) -> None:
        """Reload the config file (SIGHUP). Thread-safe; done by the main loop."""
        self.events.put(Reload())

    def snapshot(self) -> ServiceSnapshot:
        """The service now, for the heartbeat (thread-safe)."""
        threads = self.threads
        return self.board.take(
            threads.converting, threads.count, ready=self.ready, stopping=self.stopping
        )

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet done: queued for a job thread or converting."""
        return self.threads.count

    def converting(self) -> list[Activity]:
        """Every job converting now, the longest running first."""
        return self.threads.converting()

    @property
    def activity(self) -> Activity:
        """The longest-running job converting (an empty Activity when none)."""
        converting = self.threads.converting()
        return converting[0] if converting else Activity()

    # -- start-up -----------------------------------------------------------------------------

    def _startup(self) -> None:
        """The order matters: the heartbeat before the slow model load (the lease stays fresh),
        recovery before watching, and READY only once the start-up scan is done."""
        logs.bind(instance=self.instance)
        startup.announce_start(self.config, self.governance, self.instance)
        self.heartbeat.start()
        startup.report_worker(self.engine.start(), self.config, self.governance)
        self._recover_jobs()
        missing = startup.share_missing(self.config)
        if missing:
            raise ShareMissing(missing)
        self._start_watching()

    def _recover_jobs(self) -> None:
        """Jobs left by this instance's last run, and by dead instances, queue up first."""
        recovered = self.spool.records.recover()
        taken = self.spool.instances.take_over_dead(self.config.instances.lease_seconds)
        self.spool.records.drop_orphan_reservations()
        for job in recovered + taken:
            cleanup_after_restart(self.config, job)
            self._enqueue(job)
        if recovered or taken:
            log.info("jobs_recovered", own=len(recovered), taken_over=len(taken))

    def _start_watching(self) -> None:
        config = self.config
        self.watcher = InboxWatcher(
            config.paths.inbox,
            config.watch.mode,
            config.watch.poll_interval_seconds,
            self._hint,
            on_events_lost=lambda: self.events.put(EventsLost()),
        )
        self.watcher.start()
        found = self.intake.scan_all()
        now = self.clock()
        self.intake.next_rescan = now + config.watch.rescan_interval_seconds
        self._next_takeover = now + config.instances.lease_seconds / 2
        self.state = "ready"
        self._publish()
        self.ready.set()
        self._heartbeat_wake.set()
        log.info("daemon_ready", waiting_in_inbox=found, jobs_queued=self.in_flight)
        self.heartbeat.announce_ready()

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> int:
        while not self.stopping.is_set():
            self._wait_for_events()
            if self.fatal:
                log.error("daemon_failing", reason=self.fatal)
                return 1
            missing = startup.share_missing(self.config)
            if missing:
                log.error("share_missing", reason=missing, effect="exiting; systemd retries")
                return 1
            if self.watcher is not None and not self.watcher.alive():
                log.error(
                    "watcher_died",
                    effect="exiting so that systemd restarts the daemon instead of running blind",
                )
                return 1
            self.intake.settle_due()
            self._periodic()
            self.dispatcher.dispatch(self.threads.pages_in_flight, self.stopping)
            self._publish()
            self._sample()
        return 0

    def _publish(self) -> None:
        """What status shows of the main thread's state, handed to the heartbeat."""
        board, intake = self.board, self.intake
        shown = published(
            board.shown, self.state, self.watcher, intake, self.deferrals, self.config
        )
        board.publish(shown)

    def _sample(self) -> None:
        """The queue and the worker, for the metrics, as this turn of the loop left them."""
        waiting = self.intake.watching() + self.intake.claimable()
        memory = self.engine.memory()
        self.metrics.sample(
            Sample(
                waiting,
                self.threads.count,
                self.engine.starts,
                recycles=memory.recycles,
                memory=memory,
                memory_limit_bytes=self.config.conversion.max_worker_memory_bytes,
                recycle_above_bytes=self.config.engine.recycle_above_bytes,
            )
        )

    def _wait_for_events(self) -> None:
        now = self.clock()
        deadline = min(self.intake.next_deadline(), self._next_takeover, now + 1.0)
        try:
            event = self.events.get(timeout=max(0.0, deadline - now))
        except queue.Empty:
            return
        self._handle(event)
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _handle(self, event: Event) -> None:
        match event:
            case Reload():
                self._reload()
            case Hint(path, is_folder):
                self.intake.look_at(path, is_folder)
            case EventsLost():
                self.intake.events_lost()
            case Done(outcome):
                self._job_done(outcome)
            case Wake():
                pass  # the loop looks at stopping and fatal next

    def _job_done(self, outcome: Outcome) -> None:
        self.threads.done(outcome.job_id)
        self.outcomes.append(outcome)
        self.metrics.finished(outcome)
        self.hooks.published(outcome)
        self.deferrals.add(outcome)
        # The job thread woke the heartbeat before this count went down: say it again, or status
        # shows the finished job as queued until the next beat.
        self._heartbeat_wake.set()

    def _enqueue(self, job: Job) -> None:
        self.threads.add(job)

    def _periodic(self) -> None:
        now = self.clock()
        for job in self.deferrals.due():
            self._enqueue(job)
        self.intake.retry_blocked()
        self.intake.rescan_if_due(now)
        if now >= self._next_takeover:
            self._next_takeover = now + self.config.instances.lease_seconds / 2
            for job in self.spool.instances.take_over_dead(self.config.instances.lease_seconds):
                log.warning("job_taken_over", job_id=job.job_id, source=job.relative_path)
                cleanup_after_restart(self.config, job)
                self._enqueue(job)
            self.spool.records.drop_orphan_reservations()

    def _hint(self, path: str, is_folder: bool) -> None:
        """Called on the watcher's thread: the main loop looks at the path."""
        self.events.put(Hint(path, is_folder))

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            reloaded = reload.read_again(self.config)
            if reloaded is not None:
                self.config = reloaded.config
                for part in self.reconfigurable:
                    part.reconfigure(reloaded.config)
                self._publish()
                reloaded.announce()
        finally:
            self.notifier.ready(self.heartbeat.status_line())

    # -- the job threads ----------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """Called on a job thread: nothing can convert any more; the main loop ends the daemon."""
        self.fatal = reason
        self.events.put(Wake())

    def _on_progress(self, job_id: str, page: int, pages: int) -> None:
        self.threads.on_progress(job_id, page, pages)

    # -- stop ---------------------------------------------------------------------------------

    def _shutdown(self) -> bool:
        """Stop the parts in order, each whatever the one before raised (``shutdown``); False
        when one failed."""
        if not self.stopping.is_set():
            self.notifier.stopping("stopping")
        self.stopping.set()
        self._heartbeat_wake.set()
        running = [activity.job_id for activity in self.converting()]
        log.info("daemon_stopping", running=running)
        deadline = time.monotonic() + self.config.service.stop_grace_seconds
        clean = shutdown.in_order(
            (
                ("job threads", lambda: self.threads.stop(deadline, self._give_up_on)),
                ("last endings", self._count_last_endings),
                ("watcher", lambda: shutdown.stop_watching(self.watcher)),
                ("engine", self.engine.stop),
                ("hooks", self.hooks.stop),  # before the metrics' last textfile, which counts them
                ("metrics", self.metrics.stop),
                ("heartbeat", self.heartbeat.stop),
                ("stop note", lambda: shutdown.note_stop(self.spool.instances, self.started_at)),
                ("lease", self.spool.instances.remove_lease),
            )
        )
        log.info("daemon_stopped")
        return clean

    def _count_last_endings(self) -> None:
        """Jobs that ended while the service stopped: the loop no longer handles their events,
        but the metrics' last textfile counts them."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, Done):
                self.metrics.finished(event.outcome)
                self.hooks.published(event.outcome)
        self._sample()

    def _give_up_on(self, job_ids: list[str]) -> None:
        """The stop grace ran out with jobs converting: the worker is stopped and they go back
        to the inbox without counting an attempt."""
        log.warning(
            "stop_grace_expired",
            job_ids=job_ids,
            effect="the running jobs go back to the inbox without counting an attempt",
        )
        self.runner.abandon = True
        self.engine.abort()
