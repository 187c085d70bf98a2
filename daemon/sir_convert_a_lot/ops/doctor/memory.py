"""The worker's memory next to the limits that act on it: the running instance's own figures
from its lease (resident memory, and on a GPU what torch holds after the last job), and whether
the limits can work together: a recycling threshold at or above the memory limit never acts,
since the limit stops the conversion first."""

from __future__ import annotations

from collections.abc import Iterator

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.ops.doctor.report import OK, WARN, Check
from sir_convert_a_lot.ops.status import gib, worker_memory_text

NEAR_LIMIT = 0.8  # a worker this close to its limit is worth a look before a file fails


def worker_memory(config: Config) -> Iterator[Check]:
    limit = config.conversion.max_worker_memory_bytes
    above = config.engine.recycle_above_bytes
    if limit and above >= limit:
        yield Check(
            WARN,
            "worker recycling",
            f"engine.recycle_above_bytes ({gib(above)}) is not below "
            f"conversion.max_worker_memory_bytes ({gib(limit)}): the limit stops a conversion "
            "before recycling can replace the worker between jobs",
            "set engine.recycle_above_bytes below the limit (three quarters of it, say)",
        )
    worker = _running_worker(config)
    if worker is None:
        after = config.engine.recycle_after_jobs
        yield Check(
            OK,
            "worker memory",
            f"no running instance {config.instances.name} to ask; limit "
            + (gib(limit) if limit else "none")
            + (f", recycled after {after} jobs" if after else ", never recycled after jobs"),
        )
        return
    rss = worker.get("memory_bytes")
    if limit and isinstance(rss, int) and rss >= NEAR_LIMIT * limit:
        yield Check(
            WARN,
            "worker memory",
            worker_memory_text(worker),
            "set engine.recycle_above_bytes below the limit, or raise "
            "conversion.max_worker_memory_bytes (and the unit's MemoryMax=)",
        )
    else:
        yield Check(OK, "worker memory", worker_memory_text(worker))


def _running_worker(config: Config) -> dict[str, object] | None:
    """What this instance's live lease says of its worker, if it runs and says so."""
    spool = Spool(config.paths, instance="doctor")
    for lease in spool.instances.leases():
        live = lease.age_seconds <= config.instances.lease_seconds
        worker = lease.data.get("worker")
        if lease.instance == config.instances.name and live and isinstance(worker, dict):
            return worker
    return None
