"""The daemon: wires watcher, stability, spool, engine and runner together and keeps them alive.

Data flows one way: the watcher and the scans produce hints, the stability window turns them into
stable paths, the spool claims them into jobs, the runner thread carries each job through the
engine to publish and disposal, and reports back. The main loop never waits on a fixed sleep: it
sleeps until the next stability deadline, periodic duty or event, whichever comes first.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sir_convert_a_lot import __version__
from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.supervisor import Engine, EngineStartError, resident_bytes
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import check_config_permissions, prepare
from sir_convert_a_lot.intake.arrival import WRITER_OPEN, Arrivals
from sir_convert_a_lot.intake.watch import InboxWatcher, Seen, Stability, look, scan
from sir_convert_a_lot.jobs.runner import JobRunner, Outcome, cleanup_after_restart
from sir_convert_a_lot.jobs.spool import Job, SourceBlocked, Spool
from sir_convert_a_lot.names import display, has_pdf_suffix, is_ignored_path
from sir_convert_a_lot.ops import logs
from sir_convert_a_lot.ops.systemd import Notifier

log = logs.get()

MAX_IN_FLIGHT = 2  # one converting, at most one claimed and waiting
WORKER_SILENCE_SECONDS = 30.0  # a worker silent this long is stuck (native code holding the GIL)
OVERDUE_GRACE_SECONDS = 60.0  # a job this far past its limit means the daemon itself is stuck
CLAIM_BACKOFF_SECONDS = 10.0  # after a failed claim (state folder unwritable, full)
# A file the service user cannot move out of its folder waits alone, 10 s, 20 s, ... 10 min.
BLOCKED_FIRST_SECONDS = 10.0
BLOCKED_MAX_SECONDS = 600.0
BLOCKED_SHOWN = 50  # at most this many blocked files in the lease (status shows the count too)
DEFER_SECONDS = 60.0  # a job that could not even be failed waits this long before a new try
SETUP_PROBLEMS = frozenset({"models_missing", "device_lock_unavailable"})
STATUS_ARRIVING = 20  # files still arriving that status lists by name


class ShareMissing(Exception):
    """The inbox's sentinel file is absent: the share is not mounted."""


def blocked_delay(tries: int) -> float:
    """The wait before try ``tries + 1`` of a blocked file: doubling, capped."""
    return float(min(BLOCKED_MAX_SECONDS, BLOCKED_FIRST_SECONDS * 2 ** max(0, tries - 1)))


@dataclass(frozen=True)
class Blocked:
    """An inbox file the service user cannot move (claim), and when to try it again."""

    seen: Seen
    errno_name: str
    error: str
    folder: str
    fix: str
    since: float  # wall clock, for people
    tries: int
    retry_at: float  # the service clock

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "source": display(self.seen.relative_path),
            "errno": self.errno_name,
            "error": self.error,
            "folder": self.folder,
            "fix": self.fix,
            "since": self.since,
            "tries": self.tries,
            "retry_in_seconds": round(max(0.0, self.retry_at - now), 1),
        }


@dataclass
class Activity:
    state: str = "starting"
    job_id: str | None = None
    source: str | None = None
    page: int = 0
    pages: int = 0
    started: float = 0.0  # monotonic
    limit_seconds: float = 0.0


class Service:
    def __init__(
        self,
        config: Config,
        *,
        governance: Governance | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_override: GpuProbe | None = None,
        fault_injection: tuple[str, ...] = (),
        lock_folder: Path | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.config = config
        # Tests may unlock through this argument; no config key or variable reaches it.
        self.governance = governance if governance is not None else config.governance
        self.instance = config.instances.name
        self.clock = clock
        self.spool = Spool(config.paths, self.instance)
        self.engine = Engine(
            config,
            self.governance,
            instance=self.instance,
            on_progress=self._on_progress,
            lock_folder=lock_folder,
            probe_override=probe_override,
            fault_injection=fault_injection,
        )
        self.runner = JobRunner(config, self.governance, self.spool, self.engine)
        self.stability = Stability(config.watch.stability_seconds, clock)
        self.arrivals = Arrivals(
            config.watch.stability_seconds, config.watch.incomplete_wait_seconds, clock
        )
        self._lease_problem_reported = False
        self.install_signal_handlers = install_signal_handlers
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.candidates: deque[Seen] = deque()
        self.queued: set[str] = set()
        self.in_flight = 0
        self.activity = Activity()
        # Recent endings, for tests and debugging; bounded so a long run does not grow.
        self.outcomes: deque[Outcome] = deque(maxlen=1000)
        self.deferred: list[tuple[float, Job, str]] = []  # (next try, job, why)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.fatal: str | None = None
        self.started_at = time.time()
        self.watcher: InboxWatcher | None = None
        self._heartbeat_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_rescan = 0.0
        self._next_takeover = 0.0
        self._finished = False
        self._claims_paused_until = 0.0
        self.blocked: dict[str, Blocked] = {}
        # What the heartbeat thread shows of ``blocked``, replaced whole by the main thread.
        self._blocked_view: tuple[Blocked, ...] = ()
        self.notifier = Notifier()
        self._last_status_line = ""
        self._watchdog_withheld: str | None = None

    # -- public -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped. 0 after a clean stop, 1 after a runtime failure; ConfigError
        escapes for the CLI to turn into exit code 2."""
        # An unmounted share comes first: creating the folders would fill the empty mount
        # point, and the share mounted over them later would hide whatever landed there.
        missing = self._share_missing()
        if missing:
            log.error("share_missing", reason=missing, effect="not starting; systemd retries")
            return 1
        # Refusals come first and alone: one line, exit 2, nothing started that needs stopping.
        fixed = prepare(self.config.paths)
        if fixed:
            log.warning(
                "state_permissions_fixed",
                folders=[str(folder) for folder in fixed],
                reason="paths.state was writable by group or others (created under a umask "
                "that keeps group write?)",
                effect="group and world write removed: only the service user writes the state",
            )
        self.spool.ensure_layout()
        self._refuse_duplicate_instance()
        if self.install_signal_handlers:
            self._install_signals()
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
            self._shutdown()
        return code

    def request_stop(self) -> None:
        """Stop claiming; let the running job finish within the grace period. Thread-safe."""
        if not self.stopping.is_set():
            self.notifier.stopping("stopping: finishing the running job, claiming nothing new")
        self.stopping.set()
        self.events.put(("wake", None))

    def request_reload(self) -> None:
        """Reload the config file (SIGHUP). Thread-safe; done by the main loop."""
        self.events.put(("reload", None))

    # -- start-up -----------------------------------------------------------------------------

    def _startup(self) -> None:
        config = self.config
        logs.bind(instance=self.instance)
        log.info(
            "daemon_starting",
            version=__version__,
            instance=self.instance,
            config=str(config.source) if config.source else None,
            inbox=str(config.paths.inbox),
            outbox=str(config.paths.outbox),
            watch_mode=config.watch.mode,
            lock=self.governance.lock,
            decision_record=self.governance.decision_record if self.governance.unlocked else None,
        )
        if self.governance.unlocked:
            log.warning(
                "gpu_first_lock_unlocked",
                decision_record=self.governance.decision_record,
                allow_cpu_only=self.governance.allow_cpu_only,
                allow_cpu_fallback=self.governance.allow_cpu_fallback,
            )
        self._start_heartbeat()
        info = self.engine.start()
        idle = resident_bytes(info.pid) or 0
        log.info(
            "worker_ready",
            pid=info.pid,
            gpu=info.probe.to_dict(),
            loaded=[f"{b}@{d}" for b, d in info.loaded],
            load_seconds=round(info.load_seconds, 3),
            warm_seconds=round(info.warm_seconds, 3),
            worker_memory_bytes=idle,
        )
        limit = config.conversion.max_worker_memory_bytes
        if limit and idle >= limit:
            log.error(
                "worker_memory_limit_too_low",
                worker_memory_bytes=idle,
                max_worker_memory_bytes=limit,
                effect="every conversion fails with worker_crashed (memory_limit_exceeded); "
                "raise conversion.max_worker_memory_bytes",
            )
        if not info.loaded:
            log.warning(
                "no_backend_can_run",
                reason=info.probe.reason,
                lock=self.governance.lock,
                effect="every job fails with gpu_not_available until a GPU is usable",
            )
        recovered = self.spool.recover()
        taken = self.spool.take_over_dead(config.instances.lease_seconds)
        self.spool.drop_orphan_reservations()
        for job in recovered + taken:
            cleanup_after_restart(self.spool, config, job)
            self._enqueue(job)
        if recovered or taken:
            log.info("jobs_recovered", own=len(recovered), taken_over=len(taken))
        self._start_runner()
        if self._share_missing():
            raise ShareMissing(self._share_missing() or "")
        self.watcher = InboxWatcher(
            config.paths.inbox,
            config.watch.mode,
            config.watch.poll_interval_seconds,
            self._hint,
            on_events_lost=lambda: self.events.put(("events_lost", None)),
        )
        self.watcher.start()
        found = self._full_scan()
        now = self.clock()
        self._next_rescan = now + config.watch.rescan_interval_seconds
        self._next_takeover = now + config.instances.lease_seconds / 2
        self.activity.state = "ready"
        self.ready.set()
        self._heartbeat_wake.set()
        log.info("daemon_ready", waiting_in_inbox=found, jobs_queued=self.in_flight)
        self._last_status_line = self.status_line()
        self.notifier.ready(self._last_status_line)

    def _share_missing(self) -> str | None:
        sentinel = self.config.watch.sentinel
        if sentinel and not os.path.lexists(self.config.paths.inbox / sentinel):
            return (
                f"the sentinel {sentinel} is missing from the inbox {self.config.paths.inbox}: "
                "the share is probably not mounted; mount it (or create the sentinel file)"
            )
        return None

    def _refuse_duplicate_instance(self) -> None:
        for lease in self.spool.leases():
            if (
                lease.instance != self.instance
                or lease.age_seconds > self.config.instances.lease_seconds
            ):
                continue
            host, pid = lease.data.get("host"), lease.data.get("pid")
            if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                continue
            if host == socket.gethostname() and pid == os.getpid():
                continue
            raise ConfigError(
                f"instances.name: an instance named {self.instance!r} is already running "
                f"(pid {pid} on {host}); give each instance its own name with --instance"
            )

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> int:
        while not self.stopping.is_set():
            self._wait_for_events()
            if self.fatal:
                log.error("daemon_failing", reason=self.fatal)
                return 1
            missing = self._share_missing()
            if missing:
                log.error("share_missing", reason=missing, effect="exiting; systemd retries")
                return 1
            if self.watcher is not None and not self.watcher.alive():
                log.error(
                    "watcher_died",
                    effect="exiting so that systemd restarts the daemon instead of running blind",
                )
                return 1
            self._settle_due()
            self._periodic()
            self._dispatch()
        return 0

    def _wait_for_events(self) -> None:
        now = self.clock()
        deadlines = [self._next_rescan, self._next_takeover, now + 1.0]
        stable_at = self.stability.next_deadline()
        if stable_at is not None:
            deadlines.append(stable_at)
        timeout = max(0.0, min(deadlines) - now)
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(event)
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _handle(self, event: tuple[str, Any]) -> None:
        kind, payload = event
        if kind == "reload":
            self._reload()
        elif kind == "hint":
            path, is_folder = payload
            self._look_at(path, is_folder)
        elif kind == "events_lost":
            log.warning(
                "inbox_events_lost", cause="inotify queue overflow", effect="rescanning now"
            )
            self._next_rescan = self.clock()
        elif kind == "done":
            self.in_flight -= 1
            self.outcomes.append(payload)
            if payload.status == "deferred":
                job = self.spool.reload_by_id(payload.job_id)
                if job is not None:
                    why = payload.code or "deferred"
                    self.deferred.append((self.clock() + DEFER_SECONDS, job, why))
                self._heartbeat_wake.set()

    def _look_at(self, absolute: str, is_folder: bool) -> None:
        inbox = str(self.config.paths.inbox)
        if not absolute.startswith(inbox + os.sep):
            return
        relative = absolute[len(inbox) + 1 :]
        if is_ignored_path(tuple(relative.split("/")), self.config.watch.ignore):
            return
        if is_folder or (os.path.isdir(absolute) and not os.path.islink(absolute)):
            for found in scan(self.config.paths.inbox, self.config.watch.ignore, relative):
                self._observe(found)
            return
        seen = look(self.config.paths.inbox, relative)
        if seen is None:
            self._forget(relative)
            return
        self._observe(seen)

    def _forget(self, relative: str) -> None:
        self.stability.forget(relative)
        self.arrivals.forget(relative)
        if self.blocked.pop(relative, None) is not None:
            log.info("claim_unblocked", source=relative, reason="the file left the inbox")
            self._publish_blocked()

    def _observe(self, seen: Seen) -> None:
        if seen.relative_path in self.queued:
            return
        blocked = self.blocked.get(seen.relative_path)
        if blocked is not None and self.clock() < blocked.retry_at:
            return  # waits out its back-off; the others go on
        self.stability.observe(seen)

    def _settle_due(self) -> None:
        inbox = self.config.paths.inbox
        arriving = self.arrivals.waiting()
        for relative in self.stability.due():
            seen = look(inbox, relative)
            if seen is None:
                self._forget(relative)
                continue
            if not self.stability.settle(seen):
                continue
            if self._has_arrived(seen):
                self.candidates.append(seen)
                self.queued.add(relative)
        if self.arrivals.waiting() != arriving:
            self._heartbeat_wake.set()  # status shows what is arriving without a lease's delay

    def _has_arrived(self, seen: Seen) -> bool:
        """A stable file is claimed once no writer on this host holds it open and its bytes look
        complete; until then it waits (with back-off), and a PDF whose end never comes is
        claimed after ``watch.incomplete_wait_seconds`` so that it fails as truncated."""
        relative = seen.relative_path
        if not seen.is_regular or not has_pdf_suffix(relative):
            return True  # preflight refuses it with its own code; nothing to wait for
        path = self.config.paths.inbox / relative
        verdict = self.arrivals.judge(relative, path, seen.size, seen.mtime_ns)
        self._report_lease_problem()
        if verdict.give_up:
            log.warning(
                "incomplete_wait_expired",
                source=relative,
                missing=verdict.reason,
                waited_seconds=round(verdict.waited_seconds, 1),
                effect="claimed now, to fail as pdf_unreadable (truncated)",
            )
        if verdict.claim:
            return True
        if verdict.first:
            self._log_waiting(relative, verdict.reason, seen.size)
        held = self.arrivals.long_writer(relative)
        if held is not None:
            log.warning(
                "writer_holds_file_open",
                source=relative,
                seconds=round(held),
                effect="still waiting: a process on this host keeps the file open for writing",
            )
        self.stability.observe(seen, verdict.wait_seconds)
        return False

    def _log_waiting(self, relative: str, reason: str | None, size: int) -> None:
        if reason == WRITER_OPEN:
            log.info("waiting_for_writer", source=relative, size_bytes=size)
        else:
            log.info(
                "waiting_for_end_of_file",
                source=relative,
                missing=reason,
                size_bytes=size,
                gives_up_after_seconds=self.arrivals.incomplete_wait,
            )

    def _report_lease_problem(self) -> None:
        problem = self.arrivals.lease_problem
        if problem is None or self._lease_problem_reported:
            return
        self._lease_problem_reported = True
        log.warning(
            "open_writer_check_unavailable",
            reason=problem,
            effect="writers on this host are not seen; the stability window, the end-of-file "
            "check and the check after conversion still apply. The unit grants CAP_LEASE; a "
            "CIFS/NFS client mount has no leases at all",
        )

    def _dispatch(self) -> None:
        if self.clock() < self._claims_paused_until:
            return
        while self.in_flight < MAX_IN_FLIGHT and self.candidates and not self.stopping.is_set():
            seen = self.candidates.popleft()
            self.queued.discard(seen.relative_path)
            current = look(self.config.paths.inbox, seen.relative_path)
            if current is None:
                continue
            now_seen: Seen = current
            if (now_seen.size, now_seen.mtime_ns) != (seen.size, seen.mtime_ns):
                self.stability.observe(now_seen)
                continue
            if now_seen.is_regular and self.arrivals.writer_holds(
                self.config.paths.inbox / seen.relative_path
            ):
                # Opened for writing again since it settled: back to waiting.
                self._log_waiting(seen.relative_path, WRITER_OPEN, now_seen.size)
                self.stability.observe(now_seen)
                continue
            self.arrivals.forget(seen.relative_path)
            parts = tuple(seen.relative_path.split("/"))
            profile = self.config.profile_of(parts)
            try:
                job = self.spool.claim(
                    seen.relative_path,
                    profile,
                    self.config.options_for(profile),
                    now_seen.size,
                    now_seen.mtime_ns,
                )
            except SourceBlocked as exc:
                self._block(now_seen, exc)
                continue
            except OSError as exc:
                # The state folder is full, read-only or gone: the file stays in the inbox.
                log.error(
                    "claim_failed",
                    source=seen.relative_path,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_seconds=CLAIM_BACKOFF_SECONDS,
                    effect="the file stays in the inbox; claims pause",
                )
                self.candidates.appendleft(seen)
                self.queued.add(seen.relative_path)
                self._claims_paused_until = self.clock() + CLAIM_BACKOFF_SECONDS
                return
            self._unblock(seen.relative_path, job)
            if job is None:
                log.info("claim_lost", source=seen.relative_path)
                continue
            log.info("job_claimed", job_id=job.job_id, source=job.relative_path, profile=profile)
            self._enqueue(job)

    def _block(self, seen: Seen, exc: SourceBlocked) -> None:
        """One file cannot be moved by the service user: it waits alone, with a growing
        back-off, and is logged once per cause; every other file is still claimed."""
        relative = seen.relative_path
        before = self.blocked.get(relative)
        tries = before.tries + 1 if before else 1
        delay = blocked_delay(tries)
        entry = Blocked(
            seen=seen,
            errno_name=exc.errno_name,
            error=exc.error.strerror or str(exc.error),
            folder=display(str(exc.folder)),
            fix=exc.fix,
            since=before.since if before else time.time(),
            tries=tries,
            retry_at=self.clock() + delay,
        )
        if before is None or before.errno_name != entry.errno_name:
            log.error(
                "claim_failed",
                source=relative,
                errno=entry.errno_name,
                error=entry.error,
                folder=entry.folder,
                fix=entry.fix,
                retry_in_seconds=delay,
                effect="this file stays in the inbox untouched and is tried again with a "
                "growing back-off (up to 10 min); the other files are claimed as usual",
            )
        self.blocked[relative] = entry
        self._publish_blocked()

    def _unblock(self, relative: str, job: Job | None) -> None:
        if self.blocked.pop(relative, None) is None:
            return
        log.info("claim_unblocked", source=relative, job_id=job.job_id if job else None)
        self._publish_blocked()

    def _retry_blocked(self) -> None:
        """Blocked files whose back-off is over go through the stability window again, like
        any file seen anew (observing an unchanged file again does not restart its window)."""
        now = self.clock()
        for relative, entry in list(self.blocked.items()):
            if entry.retry_at > now or relative in self.queued:
                continue
            current = look(self.config.paths.inbox, relative)
            if current is None:
                self._forget(relative)
                continue
            self.stability.observe(current)

    def _publish_blocked(self) -> None:
        self._blocked_view = tuple(self.blocked.values())
        self._heartbeat_wake.set()

    def _enqueue(self, job: Job) -> None:
        self.in_flight += 1
        self.jobs.put(job)

    def _periodic(self) -> None:
        now = self.clock()
        due = [job for at, job, _why in self.deferred if at <= now]
        self.deferred = [entry for entry in self.deferred if entry[0] > now]
        for job in due:
            self._enqueue(job)
        self._retry_blocked()
        if now >= self._next_rescan:
            self._next_rescan = now + self.config.watch.rescan_interval_seconds
            self._full_scan()
        if now >= self._next_takeover:
            self._next_takeover = now + self.config.instances.lease_seconds / 2
            for job in self.spool.take_over_dead(self.config.instances.lease_seconds):
                log.warning("job_taken_over", job_id=job.job_id, source=job.relative_path)
                cleanup_after_restart(self.spool, self.config, job)
                self._enqueue(job)
            self.spool.drop_orphan_reservations()

    def _full_scan(self) -> int:
        count = 0
        for seen in scan(self.config.paths.inbox, self.config.watch.ignore):
            self._observe(seen)
            count += 1
        return count

    def _hint(self, path: str, is_folder: bool) -> None:
        self.events.put(("hint", (path, is_folder)))

    # -- the runner thread --------------------------------------------------------------------

    def _start_runner(self) -> None:
        thread = threading.Thread(target=self._run_jobs, name="sca-runner", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_jobs(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                outcome = self._run_one(job)
            except EngineStartError as exc:
                self.fatal = f"the worker could not be restarted: {exc}"
                self.events.put(("wake", None))
                return
            except Exception as exc:  # noqa: BLE001 - one job's fault must not stop the others
                outcome = self._fail_unexpected(job, exc)
            finally:
                self.activity = Activity(state=self.activity.state)
                self._heartbeat_wake.set()
            self.events.put(("done", outcome))

    def _fail_unexpected(self, job: Job, error: Exception) -> Outcome:
        try:
            current = self.spool.reload(job) or job
        except OSError:
            current = job
        if current.phase in ("published", "failed_published"):
            # The outputs are out: only moving the original failed (archive/ or failed/ is not
            # writable). Failing the job now would publish a contradicting error envelope.
            effect = "the outputs are published; the original stays claimed until it can move"
            return self._defer(job, "job_disposal_deferred", error, effect)
        log.error(
            "job_error_unexpected",
            job_id=job.job_id,
            source=job.relative_path,
            error=f"{type(error).__name__}: {error}",
            exc_info=error,
        )
        try:
            return self.runner.fail_unexpected(current, error)
        except Exception as second:  # noqa: BLE001 - e.g. the outbox itself is unwritable
            effect = "the file stays claimed and is tried again later"
            return self._defer(job, "job_deferred", second, effect)

    def _defer(self, job: Job, event: str, error: Exception, effect: str) -> Outcome:
        log.error(
            event,
            job_id=job.job_id,
            source=job.relative_path,
            error=f"{type(error).__name__}: {error}",
            retry_in_seconds=DEFER_SECONDS,
            effect=effect,
        )
        return Outcome(job.job_id, "deferred", f"{event}: {type(error).__name__}: {error}")

    def _run_one(self, job: Job) -> Outcome:
        if self.stopping.is_set():
            self.spool.return_to_inbox(job)
            log.info(
                "job_returned_to_inbox",
                job_id=job.job_id,
                source=job.relative_path,
                reason="stopping",
            )
            return Outcome(job.job_id, "returned", "stopping")
        self.activity = Activity(
            self.activity.state,
            job.job_id,
            job.shown,
            started=time.monotonic(),
            limit_seconds=float(job.options.document_timeout_seconds),
        )
        self._heartbeat_wake.set()
        while True:
            outcome = self.runner.run(job)
            if outcome.status != "requeued":
                return outcome
            reloaded = self.spool.reload(job)
            if reloaded is None:
                return Outcome(job.job_id, "returned", "vanished")
            job = reloaded
            if self.stopping.is_set():
                self.spool.return_to_inbox(job)
                return Outcome(job.job_id, "returned", "stopping")

    def _on_progress(self, job_id: str, page: int, pages: int) -> None:
        if self.activity.job_id == job_id:
            self.activity.page, self.activity.pages = page, pages
            self._heartbeat_wake.set()

    # -- heartbeat ----------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        thread = threading.Thread(target=self._beat, name="sca-heartbeat", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _beat(self) -> None:
        """Lease heartbeats, systemd's STATUS= and WATCHDOG=1, from one thread that keeps going
        while the main thread loads models or waits on a job."""
        interval = max(0.5, self.config.instances.lease_seconds / 4)
        if self.notifier.watchdog_seconds:
            interval = min(interval, self.notifier.watchdog_seconds / 2)
        next_lease = 0.0
        woken = True
        while not self._stopped_for_good():
            now = time.monotonic()
            if now >= next_lease or woken:
                # Cleared before the status is read: a wake during the write is not lost.
                self._heartbeat_wake.clear()
                try:
                    self.spool.heartbeat(self.status())
                except OSError as exc:
                    log.error("heartbeat_failed", error=str(exc))
                next_lease = now + max(0.5, self.config.instances.lease_seconds / 4)
            self._tell_systemd()
            woken = self._heartbeat_wake.wait(min(interval, 1.0))

    def _tell_systemd(self) -> None:
        if not self.notifier.enabled:
            return
        if self.ready.is_set() and not self.stopping.is_set():
            line = self.status_line()
            if line != self._last_status_line:
                self._last_status_line = line
                self.notifier.status(line)
        if self.notifier.watchdog_seconds is None:
            return
        problem = self.health_problem()
        if problem is None:
            self.notifier.watchdog()
        elif problem != self._watchdog_withheld:
            log.error("watchdog_withheld", reason=problem, effect="systemd will restart us")
        self._watchdog_withheld = problem

    def health_problem(self) -> str | None:
        """Why the daemon should not tell systemd it is well, or None when it is."""
        if self.watcher is not None and not self.watcher.alive():
            return "the inbox watcher is not running"
        silent = self.engine.silent_seconds()
        if silent > WORKER_SILENCE_SECONDS:
            return f"the worker process has not answered for {silent:.0f} s"
        activity = self.activity
        if activity.job_id and activity.started:
            overdue = time.monotonic() - activity.started - activity.limit_seconds
            if overdue > OVERDUE_GRACE_SECONDS:
                return f"job {activity.job_id} is {overdue:.0f} s past its time limit"
        return None

    def status_line(self) -> str:
        """What systemd shows in ``systemctl status``: idle, or converting X (page n/m)."""
        activity = self.activity
        queued = len(self.candidates) + max(0, self.in_flight - (1 if activity.job_id else 0))
        if activity.job_id:
            doing = f"converting {activity.source}"
            if activity.pages:
                doing += f" (page {activity.page}/{activity.pages})"
        else:
            doing = "idle"
        if queued:
            doing += f", {queued} queued"
        if self._blocked_view:
            doing += f", {len(self._blocked_view)} blocked (see sir-convert status)"
        info = self.engine.info
        if info is not None and not info.loaded:
            return f"no GPU: jobs fail with gpu_not_available; {doing}"
        return doing

    # -- reload -------------------------------------------------------------------------------

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            self._apply_reload()
        finally:
            self.notifier.ready(self.status_line())

    def _apply_reload(self) -> None:
        source = self.config.source
        if source is None:
            log.error("config_reload_refused", reason="the daemon was not started from a file")
            return
        try:
            # The same gate as at start: a file others may write could lift the GPU-first lock.
            check_config_permissions(source)
            new = config_module.load(source)
        except ConfigError as exc:
            log.error("config_reload_refused", reason=str(exc), effect="the old config stays")
            return
        # --instance and --gpu on the command line win over the file, as at start.
        new = new.with_instance_name(self.instance).with_device_index(self.config.gpu.device_index)
        changed = config_module.changed_keys(self.config, new)
        refused = config_module.not_live(changed)
        if refused:
            log.error(
                "config_reload_refused",
                keys=refused,
                reason="these settings cannot change while the daemon runs; restart it "
                "(systemctl restart) to apply them",
                effect="the old config stays",
            )
            return
        self.config = new
        self.runner.config = new
        self.stability.window = new.watch.stability_seconds
        self.arrivals.window = new.watch.stability_seconds
        self.arrivals.incomplete_wait = new.watch.incomplete_wait_seconds
        logs.configure(new.logging.level, new.logging.format)
        log.info("config_reloaded", changed=changed)

    def _stopped_for_good(self) -> bool:
        return self._finished

    def status(self) -> dict[str, Any]:
        activity = self.activity
        probe = self.engine.probe
        return {
            "state": "stopping" if self.stopping.is_set() else activity.state,
            "activity": "converting" if activity.job_id else "idle",
            "job_id": activity.job_id,
            "source": activity.source,
            "page": activity.page,
            "pages": activity.pages,
            "queued": len(self.candidates) + max(0, self.in_flight - (1 if activity.job_id else 0)),
            "watching": len(self.stability),
            "arriving": [
                {"source": display(path), "waiting_for": reason}
                for path, reason in sorted(self.arrivals.waiting().items())[:STATUS_ARRIVING]
            ],
            "arriving_count": len(self.arrivals),
            "deferred": [
                {
                    "source": display(job.relative_path),
                    "job_id": job.job_id,
                    "why": why,
                    "retry_in_seconds": round(max(0.0, at - self.clock())),
                }
                for at, job, why in self.deferred[:STATUS_ARRIVING]
            ],
            "blocked_count": len(self._blocked_view),
            "blocked": [
                entry.to_dict(self.clock()) for entry in self._blocked_view[:BLOCKED_SHOWN]
            ],
            "gpu": probe.to_dict() if probe else None,
            "lock": self.governance.lock,
            "started_at": self.started_at,
            "version": __version__,
        }

    # -- stop ---------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if not self.stopping.is_set():
            self.notifier.stopping("stopping")
        self.stopping.set()
        self._heartbeat_wake.set()
        log.info("daemon_stopping", running=self.activity.job_id)
        deadline = time.monotonic() + self.config.service.stop_grace_seconds
        runner_threads = [t for t in self._threads if t.name == "sca-runner"]
        self.jobs.put(None)
        for thread in runner_threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning(
                    "stop_grace_expired",
                    job_id=self.activity.job_id,
                    effect="the running job goes back to the inbox without counting an attempt",
                )
                self.runner.abandon = True
                self.engine.abort()
                thread.join(timeout=30)
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
        self.engine.stop()
        self._finished = True
        self._heartbeat_wake.set()
        for thread in self._threads:
            if thread.name == "sca-heartbeat":
                thread.join(timeout=5)
        try:
            self.spool.record_stop({"version": __version__, "started_at": self.started_at})
        except OSError as exc:
            log.warning("stop_note_failed", error=str(exc), effect="status cannot say when")
        self.spool.remove_lease()
        log.info("daemon_stopped")

    def _install_signals(self) -> None:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            # Never touch locks inside a signal handler: hand the work to a thread.
            threading.Thread(target=self.request_stop, name="sca-signal").start()

        def on_hup(signum: int, _frame: FrameType | None) -> None:
            threading.Thread(target=self.request_reload, name="sca-signal").start()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
