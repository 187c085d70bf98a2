"""Hooks (``[hooks]``): after a sidecar or an error envelope is published, the executable the
config names runs with that file's path, on a small pool of threads of its own.

The main loop hands over each ending (``published``) and never waits: the hook is queued, and
a queue that is full (``QUEUE_LIMIT``) drops it, saying so, rather than hold anything up. At
most ``hooks.max_running`` hooks run at once; each is killed with its process group at
``hooks.timeout_seconds`` (``service.hook_process``). Whatever a hook does, the job's outcome
stands: a hook that fails, hangs, cannot start or is dropped is logged with the job id and
counted (``sir_convert_hook_failures_total{reason}``), and the next one runs.

A stop lets running hooks finish within their own timeout, starts queued ones only until
``hooks.timeout_seconds`` from the stop, and drops the rest: a stop takes at most that long
here, and no hook outlives the daemon.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, HooksSection
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.jobs.publish import ERROR, SIDECAR
from sir_convert_a_lot.service import hook_process
from sir_convert_a_lot.service.hook_process import Call, Ran

log = logs.get()

QUEUE_LIMIT: Final = 1000
"""Hooks waiting for a free slot; one more is dropped (``hook_dropped``). A thousand is minutes
of conversions even on a fast GPU: a queue this long means the hooks cannot keep up."""
_JOIN_SLACK: Final = 5.0

Runner = Callable[[Call, float], Ran]
"""Runs one call until a monotonic deadline (``hook_process.run``)."""
Count = Callable[[str | None], None]
"""Counts one hook's end: None when it succeeded, else the failure's reason."""


class Hooks:
    """The hook queue and its threads. ``published``, ``reconfigure`` and ``stop`` are called by
    the main thread; the hook threads only take calls from the queue."""

    def __init__(
        self,
        config: Config,
        count: Count,
        run: Runner = hook_process.run,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.config = config
        self._count = count
        self._run = run
        self._queue_limit = queue_limit
        self._waiting: deque[Call] = deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._stop_at: float | None = None  # no call starts after it
        self._lock = threading.Condition()

    def reconfigure(self, config: Config) -> None:
        """The next ending uses the new hooks; surplus threads end once idle."""
        with self._lock:
            self.config = config
            self._lock.notify_all()

    @property
    def section(self) -> HooksSection:
        return self.config.hooks

    def published(self, outcome: Outcome) -> None:
        """A job ended: queue its hook, if it has one (never blocks)."""
        call = self._call_for(outcome)
        if call is None:
            return
        with self._lock:
            refused = (
                "stopping"
                if self._stop_at is not None
                else "queue_full"
                if len(self._waiting) >= self._queue_limit
                else None
            )
            if refused is None:
                self._waiting.append(call)
                self._add_thread_if_needed()
                self._lock.notify()
        if refused is not None:
            self._dropped(call, refused)

    def _call_for(self, outcome: Outcome) -> Call | None:
        """The hook an ending runs: a success's sidecar, a failure's envelope; nothing else."""
        section = self.section
        if outcome.status is Status.SUCCEEDED:
            hook, path = section.on_success, outcome.outputs.get(SIDECAR)
        elif outcome.status is Status.FAILED:
            hook, path = section.on_failure, outcome.outputs.get(ERROR)
        else:
            return None
        if not hook or path is None:
            return None
        return Call(hook, path, outcome.job_id, outcome.status.value, section.timeout_seconds)

    def stop(self) -> None:
        """Let the hooks end (see the module's docstring); returns once no hook runs."""
        with self._lock:
            if self._stop_at is None:
                self._stop_at = time.monotonic() + self.section.timeout_seconds
            stop_at = self._stop_at
            threads = list(self._threads)
            self._lock.notify_all()
        grace = hook_process.TERM_GRACE + hook_process.DRAIN_SECONDS + _JOIN_SLACK
        for thread in threads:
            thread.join(timeout=max(0.0, stop_at - time.monotonic()) + grace)
        with self._lock:
            left = list(self._waiting)
            self._waiting.clear()
        for call in left:
            self._dropped(call, "stopping")

    # -- the hook threads ---------------------------------------------------------------------

    def _add_thread_if_needed(self) -> None:
        """Under the lock: a thread for the new call, when none is idle and one more may run."""
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        if self._idle >= len(self._waiting) or len(self._threads) >= self.section.max_running:
            return
        thread = threading.Thread(target=self._work, name="sca-hook", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                taken = self._take()
                if taken is None:
                    self._threads.remove(threading.current_thread())
                    return
            call, kill_at = taken
            try:
                ran = self._run(call, kill_at)
            except Exception as exc:  # noqa: BLE001 - one hook's fault must not stop the others
                ran = Ran("spawn", None, "", 0, 0.0, error=f"{type(exc).__name__}: {exc}")
            self._report(call, ran)

    def _take(self) -> tuple[Call, float] | None:
        """Under the lock: the next call and its deadline, waiting for one; None when this
        thread is one too many or the daemon stops."""
        while True:
            now = time.monotonic()
            stop_at = self._stop_at
            if len(self._threads) > self.section.max_running:
                return None
            if stop_at is not None and (now >= stop_at or not self._waiting):
                return None
            if self._waiting:
                call = self._waiting.popleft()
                kill_at = now + call.timeout
                return call, kill_at if stop_at is None else min(kill_at, stop_at)
            self._idle += 1
            try:
                self._lock.wait()
            finally:
                self._idle -= 1

    # -- what the journal and the metrics say -------------------------------------------------

    def _report(self, call: Call, ran: Ran) -> None:
        bound = log.bind(
            job_id=call.job_id, hook=call.hook, path=str(call.path), outcome=call.outcome
        )
        if ran.result == "ran":
            bound.info("hook_ran", seconds=ran.seconds, output=ran.output)
            self._count(None)
            return
        effect = "the job's outcome stands"
        ended = bound.bind(seconds=ran.seconds, output=ran.output, output_bytes=ran.output_bytes)
        if ran.result == "exit":
            ended.warning("hook_failed", exit_code=ran.exit_code, effect=effect)
        elif ran.result == "timeout":
            ended.warning(
                "hook_timed_out",
                timeout_seconds=call.timeout,
                effect="killed with its process group; " + effect,
            )
        else:
            bound.error("hook_not_started", error=ran.error, effect=effect)
        self._count(ran.result)

    def _dropped(self, call: Call, reason: str) -> None:
        why = (
            "the daemon is stopping"
            if reason == "stopping"
            else f"{self._queue_limit} hooks already wait"
        )
        log.warning(
            "hook_dropped",
            job_id=call.job_id,
            hook=call.hook,
            path=str(call.path),
            outcome=call.outcome,
            reason=reason,
            effect=f"not run: {why}; the job's outcome stands",
        )
        self._count("dropped")
