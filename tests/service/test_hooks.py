"""The hook queue (``service.hooks``) with a stand-in for the process: which ending runs which
hook with which file, that handing one over never waits, the pool's bound, a full queue, what the
journal and the metrics are told, and the stop. Real processes: ``test_hook_process``."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from sir_convert_a_lot.config import Config, HooksSection, MetricsSection
from sir_convert_a_lot.jobs.outcome import Outcome, Status
from sir_convert_a_lot.jobs.publish import ERROR, MARKDOWN, SIDECAR
from sir_convert_a_lot.service.hook_process import Call, Ran
from sir_convert_a_lot.service.hooks import Hooks
from sir_convert_a_lot.service.metrics import Metrics
from tests.helpers import load_config, wait_for

OUT = Path("/srv/out")


def _config(tmp_path: Path, **hooks: Any) -> Config:
    config = load_config(tmp_path)
    section = HooksSection(**{"on_success": "/ok", "on_failure": "/bad", **hooks})
    return dataclasses.replace(config, hooks=section)


def _succeeded(job_id: str) -> Outcome:
    outputs = {MARKDOWN: OUT / f"{job_id}.md", SIDECAR: OUT / f"{job_id}.json"}
    return Outcome(job_id, Status.SUCCEEDED, outputs=outputs)


def _failed(job_id: str) -> Outcome:
    return Outcome(job_id, Status.FAILED, "pdf_unreadable", {ERROR: OUT / f"{job_id}.error.json"})


class Stand:
    """Stands in for ``hook_process.run``: records each call, and holds it until released (or
    until its deadline, as a hanging hook would)."""

    def __init__(self, hold: bool = False, ran: Ran | None = None) -> None:
        self.calls: list[tuple[Call, float]] = []
        self.release = threading.Event()
        self.hold = hold
        self.running = 0
        self.peak = 0
        self.ran = ran or Ran("ran", 0, "done", 4, 0.01)
        self.lock = threading.Lock()

    def __call__(self, call: Call, kill_at: float) -> Ran:
        with self.lock:
            self.calls.append((call, kill_at))
            self.running += 1
            self.peak = max(self.peak, self.running)
        if self.hold:
            self.release.wait(timeout=max(0.0, kill_at - time.monotonic()))
        with self.lock:
            self.running -= 1
        return self.ran


def _hooks(config: Config, stand: Stand, **kwargs: Any) -> tuple[Hooks, list[str | None]]:
    counted: list[str | None] = []
    return Hooks(config, counted.append, run=stand, **kwargs), counted


def test_a_success_runs_on_success_with_its_sidecar_and_a_failure_on_failure_with_its_envelope(
    tmp_path: Path,
) -> None:
    stand = Stand()
    hooks, counted = _hooks(_config(tmp_path, max_running=1), stand)
    hooks.published(_succeeded("job_a"))
    hooks.published(_failed("job_b"))
    hooks.published(Outcome("job_c", Status.RETURNED, "stopping"))
    hooks.published(Outcome("job_d", Status.DEFERRED, "output_unwritable"))
    wait_for(lambda: len(counted) == 2, timeout=10)
    hooks.stop()
    assert [call for call, _ in stand.calls] == [
        Call("/ok", OUT / "job_a.json", "job_a", "succeeded", 60),
        Call("/bad", OUT / "job_b.error.json", "job_b", "failed", 60),
    ]
    assert counted == [None, None]


def test_an_empty_hook_runs_nothing_and_a_reload_changes_the_next_hook(tmp_path: Path) -> None:
    stand = Stand()
    hooks, _counted = _hooks(_config(tmp_path, on_success=""), stand)
    hooks.published(_succeeded("job_a"))
    hooks.reconfigure(_config(tmp_path, on_success="/new", timeout_seconds=5))
    hooks.published(_succeeded("job_b"))
    hooks.stop()
    assert [(call.hook, call.job_id, call.timeout) for call, _ in stand.calls] == [
        ("/new", "job_b", 5)
    ]


def test_handing_over_never_waits_and_at_most_max_running_hooks_run_at_once(
    tmp_path: Path,
) -> None:
    stand = Stand(hold=True)
    hooks, counted = _hooks(_config(tmp_path, max_running=2), stand)
    started = time.monotonic()
    for number in range(6):
        hooks.published(_succeeded(f"job_{number}"))
    assert time.monotonic() - started < 0.5  # the hooks hang; the main loop does not
    wait_for(lambda: stand.running == 2, timeout=10)
    time.sleep(0.2)
    assert (stand.running, len(stand.calls)) == (2, 2)  # the others wait in the queue
    stand.release.set()
    wait_for(lambda: len(counted) == 6, timeout=10)
    hooks.stop()
    assert stand.peak == 2
    assert sorted(call.job_id for call, _ in stand.calls) == [f"job_{n}" for n in range(6)]


def test_a_full_queue_drops_the_hook_and_says_so_with_the_job_id(tmp_path: Path) -> None:
    stand = Stand(hold=True)
    hooks, counted = _hooks(_config(tmp_path, max_running=1), stand, queue_limit=2)
    hooks.published(_succeeded("job_running"))
    wait_for(lambda: stand.running == 1, timeout=10)
    with capture_logs() as logged:
        for name in ("job_1", "job_2", "job_3"):
            hooks.published(_succeeded(name))
    [dropped] = [e for e in logged if e["event"] == "hook_dropped"]
    assert (dropped["job_id"], dropped["reason"], dropped["log_level"]) == (
        "job_3",
        "queue_full",
        "warning",
    )
    assert counted == ["dropped"]
    stand.release.set()
    hooks.stop()
    assert [call.job_id for call, _ in stand.calls] == ["job_running", "job_1", "job_2"]


def test_every_end_of_a_hook_is_logged_with_the_job_id_and_counted(tmp_path: Path) -> None:
    ends = {
        "job_ran": Ran("ran", 0, "posted", 6, 0.1),
        "job_exit": Ran("exit", 1, "curl: (22) 500", 14, 0.2),
        "job_timeout": Ran("timeout", None, "waiting...", 10, 61.0),
        "job_spawn": Ran("spawn", None, "", 0, 0.0, error="PermissionError: denied"),
    }

    def run(call: Call, kill_at: float) -> Ran:
        if call.job_id == "job_raises":
            raise ValueError("a bug")
        return ends[call.job_id]

    counted: list[str | None] = []
    hooks = Hooks(_config(tmp_path, max_running=1), counted.append, run=run)
    with capture_logs() as logged:
        for job_id in [*ends, "job_raises"]:
            hooks.published(_succeeded(job_id))
        wait_for(lambda: len(counted) == 5, timeout=10)
        hooks.stop()
    seen = {e["job_id"]: e for e in logged}
    assert {job_id: (e["event"], e["log_level"]) for job_id, e in seen.items()} == {
        "job_ran": ("hook_ran", "info"),
        "job_exit": ("hook_failed", "warning"),
        "job_timeout": ("hook_timed_out", "warning"),
        "job_spawn": ("hook_not_started", "error"),
        "job_raises": ("hook_not_started", "error"),
    }
    assert seen["job_ran"]["output"] == "posted"
    assert (seen["job_exit"]["exit_code"], seen["job_exit"]["output"]) == (1, "curl: (22) 500")
    assert seen["job_timeout"]["timeout_seconds"] == 60
    assert seen["job_raises"]["error"] == "ValueError: a bug"
    assert all(e["path"] == str(OUT / f"{e['job_id']}.json") for e in seen.values())
    assert counted == [None, "exit", "timeout", "spawn", "spawn"]


def test_a_stop_waits_at_most_the_timeout_for_the_hooks_and_drops_what_it_cannot_start(
    tmp_path: Path,
) -> None:
    stand = Stand(hold=True)  # every hook hangs until its deadline
    hooks, counted = _hooks(_config(tmp_path, max_running=1, timeout_seconds=1), stand)
    for number in range(4):
        hooks.published(_succeeded(f"job_{number}"))
    wait_for(lambda: stand.running == 1, timeout=10)
    stopped = time.monotonic()
    with capture_logs() as logged:
        hooks.stop()
        hooks.published(_succeeded("job_late"))
    took = time.monotonic() - stopped
    assert took < 2.5, "a stop waits for the hooks about hooks.timeout_seconds, not 4 of them"
    stop_at = hooks._stop_at
    assert stop_at is not None and all(kill_at <= stop_at for _call, kill_at in stand.calls)
    dropped = [e["job_id"] for e in logged if e["event"] == "hook_dropped"]
    assert "job_late" in dropped and len(dropped) >= 2
    assert all(e["reason"] == "stopping" for e in logged if e["event"] == "hook_dropped")
    assert len(stand.calls) + len(dropped) == 5
    assert counted.count("dropped") == len(dropped) and len(counted) == 5


def test_the_metrics_count_every_hook_and_each_failure_by_reason() -> None:
    metrics = Metrics(MetricsSection(), "host-gpu0")
    for failure in (None, "timeout", "exit", None, "dropped", "timeout"):
        metrics.hook_ended(failure)
    samples = {
        (sample.name, sample.labels.get("reason")): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name.startswith("sir_convert_hook") and sample.name.endswith("_total")
    }
    assert samples == {
        ("sir_convert_hooks_total", None): 6,
        ("sir_convert_hook_failures_total", "exit"): 1,
        ("sir_convert_hook_failures_total", "timeout"): 2,
        ("sir_convert_hook_failures_total", "spawn"): 0,
        ("sir_convert_hook_failures_total", "dropped"): 1,
    }
