"""Metrics for Prometheus: one registry of the daemon's own, updated from what the service hands
it, served at ``metrics.listen`` and written to ``metrics.textfile`` (both off by default).

Data flows one way. The main loop hands over each job's ``Outcome`` (``finished``) and, once a
turn, a ``Sample`` of its queue and worker (``sample``); nothing here reads the service. The
exposition is prometheus_client's, never written by hand: its HTTP server on a thread of its own,
bound only to the configured address, and its atomic textfile writer (a temporary file in the
same folder, then a rename) every ``TEXTFILE_SECONDS`` and once more at stop.

Every metric carries a ``daemon`` label (the instance name): several instances on one host
write several textfiles, and node_exporter refuses two files with the same series.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import generate_latest, write_to_textfile

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import MetricsSection, listen_address
from sir_convert_a_lot.engine.interface import WorkerMemory
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.jobs.outcome import Outcome, Status

log = logs.get()

TEXTFILE_SECONDS: Final = 5.0
"""How often the textfile is rewritten. node_exporter reads it at each scrape (typically every
15 to 60 s); a few seconds keeps it fresh at the cost of one small write."""

SECONDS_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Conversion seconds: a one-page PDF on a GPU takes about a second, the longest allowed job
(``document_timeout_seconds`` 7200) two hours."""


HOOK_FAILURES: Final = ("exit", "timeout", "spawn", "dropped")


@dataclass(frozen=True)
class Sample:
    """The service's queue and worker as the main loop sees them on one turn."""

    waiting: int  # files in the inbox this instance watches or is about to claim
    claimed: int  # jobs it has claimed and not finished
    worker_starts: int  # ``Engine.starts``: the first start, every restart and every recycle
    recycles: Mapping[str, int] = field(default_factory=dict)  # workers recycled, by reason
    memory: WorkerMemory | None = None  # the worker's memory now (``Engine.memory``)
    memory_limit_bytes: int = 0  # conversion.max_worker_memory_bytes (0: none)
    recycle_above_bytes: int = 0  # engine.recycle_above_bytes (0: never)


class Metrics:
    """The daemon's registry and its two outlets. ``finished`` and ``sample`` are called by the
    main thread, ``hook_ended`` by the hook threads (prometheus_client's metrics take their own
    locks); the HTTP server and the textfile thread only read the registry."""

    def __init__(self, section: MetricsSection, daemon: str) -> None:
        self.section = section
        self.registry = CollectorRegistry()
        self._daemon = daemon
        self._jobs = Counter(
            "sir_convert_jobs",
            "Jobs finished, by outcome (succeeded, failed, returned, deferred) and error code "
            "(none when succeeded; why, when returned or deferred)",
            ("daemon", "outcome", "code"),
            registry=self.registry,
        )
        self._jobs.labels(daemon, Status.SUCCEEDED.value, "none")  # 0 from the start
        self._seconds = Histogram(
            "sir_convert_conversion_seconds",
            "Seconds from a converted job's last attempt starting to its outputs published",
            ("daemon",),
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        ).labels(daemon)
        self._pages = self._counter("pages", "Pages of the documents converted")
        self._waiting = self._gauge(
            "files_waiting", "Files in the inbox this instance watches or is about to claim"
        )
        self._claimed = self._gauge(
            "files_claimed",
            "Jobs this instance has claimed and not finished (converting or queued)",
        )
        self._restarts = self._counter(
            "worker_restarts",
            "Worker process starts after the first (crash, timeout, memory), recycles not counted",
        )
        self._recycles = Counter(
            "sir_convert_worker_recycles",
            "Workers replaced between jobs (engine.recycle_after_jobs: jobs, "
            "engine.recycle_above_bytes: memory)",
            ("daemon", "reason"),
            registry=self.registry,
        )
        for reason in ("jobs", "memory"):
            self._recycles.labels(daemon, reason)  # 0 from the start
        self._recycles_seen: dict[str, int] = {}
        self._memory = self._memory_gauges()
        self._gpu_peak = self._gauge(
            "gpu_memory_peak_bytes",
            "Peak GPU memory the worker saw during the last job converted on the GPU",
        )
        self._layout_calls = self._counter(
            "layout_calls", "Layout model calls, a call shared by several jobs counted once"
        )
        self._layout_pages = self._counter("layout_pages", "Pages through the layout model")
        self._layout_mean = self._gauge(
            "layout_batch_mean_pages", "Mean pages per layout model call since the daemon started"
        )
        self._layout_totals = [0.0, 0.0]  # calls, pages
        self._tables, self._hooks = self._table_counters(), self._hook_counters()
        self._starts_seen = 1  # the first start is not a restart
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_error = ""

    def _counter(self, name: str, doc: str) -> Counter:
        metric = Counter(f"sir_convert_{name}", doc, ("daemon",), registry=self.registry)
        return metric.labels(self._daemon)

    def _table_counters(self) -> dict[str, Counter]:
        """The counts of the sidecars' ``execution.tables``, added up."""
        return {
            "predicted": self._counter("tables_predicted", "Tables TableFormer predicted"),
            "fast": self._counter(
                "tables_fast",
                "Tables the fast TableFormer prediction predicted (fewer than predicted: the "
                "fast path was off for the rest)",
            ),
            "checked": self._counter(
                "table_checks", "Fast table predictions also predicted by docling's own code"
            ),
            "mismatched": self._counter(
                "table_mismatches",
                "Checked tables whose two predictions differed (the fast path is off after one)",
            ),
        }

    def _hook_counters(self) -> dict[str, Counter]:
        """Hooks that ended, and those that failed by reason (``service.hooks``)."""
        failed = Counter(
            "sir_convert_hook_failures",
            "Hooks that failed, by reason: exit (not 0), timeout (killed), spawn (could not "
            "start) or dropped (never run: the queue was full or the daemon stopped)",
            ("daemon", "reason"),
            registry=self.registry,
        )
        for reason in HOOK_FAILURES:
            failed.labels(self._daemon, reason)  # 0 from the start
        ended = self._counter("hooks", "Hooks that ended: ran, failed or dropped")
        return {"ended": ended, "failed": failed}

    def _memory_gauges(self) -> dict[str, Gauge]:
        """The worker's memory beside its limits: what status and doctor show too."""
        return {
            "rss": self._gauge("worker_memory_bytes", "The worker's resident memory now"),
            "limit": self._gauge(
                "worker_memory_limit_bytes",
                "conversion.max_worker_memory_bytes: over it a conversion is stopped (0: none)",
            ),
            "recycle": self._gauge(
                "worker_recycle_above_bytes",
                "engine.recycle_above_bytes: over it after a job the worker is replaced (0: never)",
            ),
            "allocated": self._gauge(
                "gpu_memory_allocated_bytes",
                "torch.cuda.memory_allocated in the worker after its last job on the GPU",
            ),
            "reserved": self._gauge(
                "gpu_memory_reserved_bytes",
                "torch.cuda.memory_reserved in the worker after its last job on the GPU",
            ),
        }

    def _gauge(self, name: str, doc: str) -> Gauge:
        metric = Gauge(f"sir_convert_{name}", doc, ("daemon",), registry=self.registry)
        return metric.labels(self._daemon)

    # -- what the service hands over ----------------------------------------------------------

    def finished(self, outcome: Outcome) -> None:
        """One job's end: counted by outcome and code; a conversion's measures recorded."""
        code = outcome.code or "none"
        self._jobs.labels(self._daemon, outcome.status.value, code).inc()
        measured = outcome.measured
        if measured is None:
            return
        self._pages.inc(measured.pages)
        self._seconds.observe(measured.seconds)
        if measured.peak_gpu_memory_bytes is not None:
            self._gpu_peak.set(measured.peak_gpu_memory_bytes)
        for name, count in measured.tables.to_dict().items():
            self._tables[name].inc(count)
        if measured.layout_calls > 0:
            self._layout_calls.inc(measured.layout_calls)
            self._layout_pages.inc(measured.layout_pages)
            self._layout_totals[0] += measured.layout_calls
            self._layout_totals[1] += measured.layout_pages
            self._layout_mean.set(self._layout_totals[1] / self._layout_totals[0])

    def hook_ended(self, failure: str | None) -> None:
        """One hook's end (called by the hook threads): None when it ran and exited 0."""
        self._hooks["ended"].inc()
        if failure is not None:
            self._hooks["failed"].labels(self._daemon, failure).inc()

    def sample(self, sample: Sample) -> None:
        self._waiting.set(sample.waiting)
        self._claimed.set(sample.claimed)
        for reason, count in sample.recycles.items():
            seen = self._recycles_seen.get(reason, 0)
            if count > seen:
                self._recycles.labels(self._daemon, reason).inc(count - seen)
                self._recycles_seen[reason] = count
        restarts = sample.worker_starts - sum(sample.recycles.values())
        if restarts > self._starts_seen:
            self._restarts.inc(restarts - self._starts_seen)
            self._starts_seen = restarts
        self._memory["limit"].set(sample.memory_limit_bytes)
        self._memory["recycle"].set(sample.recycle_above_bytes)
        memory = sample.memory
        if memory is None:
            return
        for name, value in (
            ("rss", memory.rss_bytes),
            ("allocated", memory.gpu_allocated_bytes),
            ("reserved", memory.gpu_reserved_bytes),
        ):
            if value is not None:
                self._memory[name].set(value)

    def render(self) -> bytes:
        """The exposition, as /metrics serves it."""
        return generate_latest(self.registry)

    # -- the outlets --------------------------------------------------------------------------

    def start(self) -> None:
        """Listen and write as configured. A ConfigError naming the key when the address cannot
        be bound or the textfile cannot be written: nothing is left running then."""
        section = self.section
        if section.textfile:
            try:
                write_to_textfile(section.textfile, self.registry)
            except OSError as exc:
                raise ConfigError(
                    f"metrics.textfile: cannot write {section.textfile}: {exc.strerror or exc}"
                ) from exc
        if section.listen:
            address = listen_address(section.listen)
            assert address is not None  # the config's check
            try:
                self._server = start_http_server(address[1], address[0], self.registry)
            except OSError as exc:
                raise ConfigError(
                    f"metrics.listen: cannot listen on {section.listen}: {exc.strerror or exc}"
                ) from exc
            log.info("metrics_listening", listen=section.listen)
        if section.textfile:
            self._writer = threading.Thread(target=self._write, name="sca-metrics", daemon=True)
            self._writer.start()

    def stop(self) -> None:
        """The server closes its socket; the textfile is written a last time."""
        self._stop.set()
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None
        if self._writer is not None:
            self._writer.join(timeout=5)
            self._writer = None
            self._write_once()

    def _write(self) -> None:
        while not self._stop.wait(TEXTFILE_SECONDS):
            self._write_once()

    def _write_once(self) -> None:
        try:
            write_to_textfile(self.section.textfile, self.registry)
        except OSError as exc:
            if str(exc) == self._last_error:
                return  # said once; the next success or another error is news
            self._last_error = str(exc)
            log.warning(
                "metrics_textfile_failed",
                path=self.section.textfile,
                error=str(exc),
                effect="node_exporter shows the last file written; tried again shortly",
            )
        else:
            self._last_error = ""
