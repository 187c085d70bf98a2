"""The Ray engine: one supervised worker per actor, several actors, one engine to the jobs.

Each actor has its own ``supervisor.Engine`` over a ``RayActorTransport``, so every rule of a
local worker holds per actor: the handshake, warm models, document deadlines, the memory limit,
crashes counted and the actor replaced. ``EnginePool`` is what the job lifecycle sees
(``interface.ConversionEngine``): it connects to the cluster (``ray_cluster``), starts
``engine.workers`` actors (0: one per ``engine.gpus_per_worker`` GPUs the cluster has), and
hands each document to the live actor with the fewest documents in it; an actor that is gone is
replaced in the background (``_revive``) while the live ones carry on; an actor due for
recycling (``engine.recycle``) gets no new document while another can take it. Actors are
recycled drained, not overlapped: a replacement started beside a due actor would need the Ray
resources (a whole GPU) and the host's GPU lock that the due actor still holds. The daemon's
claim pacing counts pages over all actors (``max_pages_in_flight``).

GPU locks are the actors' own: each takes its host's lock on its GPU before loading onto it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.interface import (
    EngineStartError,
    ProgressSink,
    WorkerInfo,
    WorkerMemory,
)
from sir_convert_a_lot.engine.policy import Decision, RunOn
from sir_convert_a_lot.engine.protocol import Converted, Failed, WorkerSettings
from sir_convert_a_lot.engine.ray_cluster import RayCluster, connect
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.base import Transport
from sir_convert_a_lot.engine.transports.ray_actor import RayActorTransport
from sir_convert_a_lot.engine.worker import WorkerEntry
from sir_convert_a_lot.options import ConversionOptions

log = logs.get()

REVIVE_BACKOFF_SECONDS = 15.0  # between tries to start a fresh actor for a gone one
_REVIVE_TICK_SECONDS = 5.0  # how often the pool looks for actors that are gone


class EnginePool:
    kind = "ray"

    def __init__(
        self,
        config: Config,
        governance: Governance,
        *,
        instance: str,
        on_progress: ProgressSink | None = None,
        serve: WorkerEntry = worker.serve,
    ) -> None:
        self.config = config
        self.governance = governance
        self.instance = instance
        self.on_progress = on_progress
        self.serve = serve  # each actor's worker: the real one but in the tests (WorkerEntry)
        self.cluster: RayCluster | None = None
        self.engines: list[Engine] = []
        self.transports: dict[int, RayActorTransport] = {}  # id(engine) -> its current actor
        self._jobs: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._starting = threading.RLock()
        self._reviving: set[int] = set()  # id(engine) of those starting a fresh actor
        self._next_revival: dict[int, float] = {}  # id(engine) -> not before (monotonic)
        self._stopped = False
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- what the jobs and the service read ---------------------------------------------------

    @property
    def info(self) -> WorkerInfo | None:
        return next((e.info for e in self.engines if e.info is not None), None)

    @property
    def starts(self) -> int:
        return sum(engine.starts for engine in self.engines)

    @property
    def probe(self) -> GpuProbe | None:
        info = self.info
        return info.probe if info else None

    @property
    def alive(self) -> bool:
        return any(engine.alive for engine in self.engines)

    def silent_seconds(self) -> float:
        return max((engine.silent_seconds() for engine in self.engines), default=0.0)

    def memory(self) -> WorkerMemory:
        """The actor nearest its limit (the largest), with the recycles of all of them."""
        each = [engine.memory() for engine in self.engines]
        if not each:
            return WorkerMemory()
        largest = max(each, key=lambda memory: memory.rss_bytes or 0)
        recycles: dict[str, int] = {}
        for memory in each:
            for reason, count in memory.recycles.items():
                recycles[reason] = recycles.get(reason, 0) + count
        return replace(largest, recycles=recycles)

    def max_pages_in_flight(self, per_worker: int) -> int:
        """Claim pacing over the whole pool: each actor may hold ``per_worker`` pages."""
        return per_worker * max(1, len(self.engines))

    def workers(self) -> list[dict[str, Any]]:
        """Each actor: where it runs, its GPU, and the jobs in it (for status and the lease)."""
        with self._lock:
            jobs = dict(self._jobs)
        listed = []
        for number, engine in enumerate(self.engines):
            transport = self.transports.get(id(engine))
            where = transport.describe() if transport is not None and engine.alive else {}
            memory = engine.memory()
            listed.append(
                {
                    "actor": number,
                    "alive": engine.alive,
                    "host": where.get("host") or (engine.info.host if engine.info else ""),
                    "node_id": where.get("node_id", ""),
                    "pid": where.get("pid") or (engine.info.pid if engine.info else None),
                    "gpus": where.get("gpus", []),
                    "starts": engine.starts,
                    "memory_bytes": memory.rss_bytes,
                    "jobs_since_start": memory.jobs,
                    "recycles": sum(memory.recycles.values()),
                    "jobs": sorted(job for job, held in jobs.items() if held is engine),
                }
            )
        return listed

    # -- the engine ---------------------------------------------------------------------------

    def start(self) -> WorkerInfo:
        """Connect, then start every actor at once; ready when at least one is."""
        with self._starting:
            if self.cluster is None:
                self.cluster = connect(self.config.engine)
            if not self.engines:
                self.engines = [self._engine() for _ in range(self._count(self.cluster))]
            errors = _start_all([e for e in self.engines if not e.alive])
            if errors and len(errors) == len(self.engines):
                raise errors[0]
            for error in errors:
                log.warning("ray_worker_start_failed", reason=error.reason, message=str(error))
            later = time.monotonic() + REVIVE_BACKOFF_SECONDS
            for engine in self.engines:
                if not engine.alive:
                    self._next_revival[id(engine)] = later
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="sca-actor-watch", daemon=True
                )
                self._watcher.start()
            info = self.info
            assert info is not None
            return info

    def _count(self, cluster: RayCluster) -> int:
        section = self.config.engine
        if section.workers:
            return section.workers
        if section.gpus_per_worker <= 0:
            return 1
        count = int(cluster.gpus() // section.gpus_per_worker)
        if count < 1:
            raise EngineStartError(
                "ray_no_gpus",
                f"the Ray cluster at {cluster.address!r} has no GPUs to give "
                f"{section.gpus_per_worker:g} to an actor; start Ray on a GPU host, or set "
                "engine.workers and engine.gpus_per_worker for CPU actors",
            )
        return count

    def _engine(self) -> Engine:
        cluster = self.cluster
        assert cluster is not None
        engine: Engine | None = None

        def transport(settings: WorkerSettings) -> Transport:
            made = RayActorTransport(
                settings, cluster, self.config.engine, self.instance, self.serve
            )
            if engine is not None:
                self.transports[id(engine)] = made
            return made

        engine = Engine(
            self.config,
            self.governance,
            instance=self.instance,
            on_progress=self.on_progress,
            transport=transport,
            locks_device=False,
            overlap=False,  # a replacement beside it would need a second actor's GPU: drained
        )
        engine.kind = self.kind
        return engine

    def decide(self, options: ConversionOptions, source_name: str = "") -> Decision:
        with self._starting:
            if self.info is None:
                self.start()
        return self._choose().decide(options, source_name)

    def convert(
        self,
        job_id: str,
        source_path: str,
        options: ConversionOptions,
        run_on: RunOn,
        source_name: str = "",
        *,
        alone: bool = False,
    ) -> Converted | Failed:
        engine = self._choose()
        with self._lock:
            self._jobs[job_id] = engine
        try:
            return engine.convert(job_id, source_path, options, run_on, source_name, alone=alone)
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)

    def _choose(self) -> Engine:
        """The live actor with the fewest documents; when none is live, the emptiest (its next
        document starts a fresh actor). Actors that are gone are revived in the background."""
        if not self.engines:
            self.start()
        self._revive()
        with self._lock:
            load = {id(e): 0 for e in self.engines}
            for held in self._jobs.values():
                load[id(held)] += 1
            live = [
                e
                for e in self.engines
                if e.alive and e.info is not None and id(e) not in self._reviving
            ]
            # A due actor takes a document only when no other can: it waits for its fresh one.
            live = [e for e in live if not e.recycling] or live or self.engines
            return min(live, key=lambda e: load[id(e)])

    def _watch(self) -> None:
        """Revive gone actors on the clock, not only when a document comes."""
        while not self._stopping.wait(_REVIVE_TICK_SECONDS):
            self._revive()

    def _revive(self) -> None:
        """Start a fresh actor, on a thread of its own, for each engine whose actor is gone (it
        crashed, was killed past a limit, or its node was lost): the live actors take the
        documents meanwhile, and a node that comes back gets its actors again. A start that
        fails is tried again after ``REVIVE_BACKOFF_SECONDS``."""
        now = time.monotonic()
        with self._lock:
            due = [
                engine
                for engine in self.engines
                if not self._stopped
                and not engine.alive
                and not engine.recycling
                and id(engine) not in self._reviving
                and now >= self._next_revival.get(id(engine), 0.0)
            ]
            self._reviving.update(id(engine) for engine in due)
        for engine in due:
            threading.Thread(
                target=self._restart, args=(engine,), name="sca-actor-revive", daemon=True
            ).start()

    def _restart(self, engine: Engine) -> None:
        try:
            info = None if self._stopped else engine.revive()  # None: one runs (a recycle)
            if info is not None:
                log.info("ray_worker_started", host=info.host, pid=info.pid, starts=engine.starts)
        except EngineStartError as error:
            self._next_revival[id(engine)] = time.monotonic() + REVIVE_BACKOFF_SECONDS
            log.warning(
                "ray_worker_start_failed",
                reason=error.reason,
                message=str(error),
                retry_in_seconds=REVIVE_BACKOFF_SECONDS,
            )
        finally:
            with self._lock:
                self._reviving.discard(id(engine))

    def abort(self) -> None:
        for engine in self.engines:
            engine.abort()

    def stop(self) -> None:
        self._stopped = True
        self._stopping.set()
        for engine in self.engines:
            engine.stop()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None


def _start_all(engines: list[Engine]) -> list[EngineStartError]:
    """Start the engines side by side (each actor loads its models); the errors, if any."""
    errors: list[EngineStartError] = []

    def start(engine: Engine) -> None:
        try:
            engine.start()
        except EngineStartError as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(e,), name="sca-actor-start") for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
