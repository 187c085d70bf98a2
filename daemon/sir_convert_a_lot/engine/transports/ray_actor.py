"""The second transport: the worker as a Ray actor, on whichever node of the cluster has room.

The actor (``WorkerActor``) runs the same ``worker.serve`` as a local worker process (or the
same test entry point, ``worker.WorkerEntry``), over two queues instead of a pipe; it is a
process of its own, so a hostile PDF that crashes or hangs the converter takes only the actor
down. The daemon's half (``RayActorTransport``) is what the
supervisor sees: messages go in with ``put`` and come back in lists from ``take``, a call that
waits up to the supervisor's receive timeout. A document's bytes travel through Ray's object
store (``ray.put`` on the daemon's host, written to a private folder on the actor's), so the
actor's node needs no view of the share; it answers with the Markdown and metadata as messages.
The copy keeps the file's suffix (``.docx``, ``.png``), for any format of ``conversion.formats``.

An actor sees only its own GPU, as ``cuda:0``; its host index (from Ray) is what the probe asks
NVML about and what the actor's host-local GPU lock is taken on (``WorkerSettings.host_gpu``).
Ray restarts nothing here: an actor that dies ends this transport, and the supervisor's next
start makes a fresh one, after counting the attempt as for any crash. When the actor's node
went away, ``lost_with_node`` says so, and its jobs are innocent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import EngineSection
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.protocol import Converted, ConvertRequest, Failed, WorkerSettings
from sir_convert_a_lot.engine.ray_cluster import RayCluster
from sir_convert_a_lot.engine.transports.base import TransportClosed
from sir_convert_a_lot.engine.transports.local import resident_bytes
from sir_convert_a_lot.engine.worker import WorkerEntry
from sir_convert_a_lot.formats import BY_SUFFIX
from sir_convert_a_lot.names import split_suffix

_ENDED = "sca-worker-ended"  # the actor's serve loop returned: no more messages will come
_RPC_SLACK_SECONDS = 5.0  # over a take's own timeout before the actor counts as silent
_ACTOR_CONCURRENCY = 8  # put, put_document and take run side by side on the actor


class _QueueChannel:
    """The worker's end of the actor's two queues (``worker.Channel``)."""

    def __init__(self, inbox: queue.Queue[object], outbox: queue.Queue[object]) -> None:
        self.inbox, self.outbox = inbox, outbox

    def send(self, obj: object) -> None:
        self.outbox.put(obj)

    def recv(self) -> object:
        message = self.inbox.get()
        if message is _ENDED:
            raise EOFError
        return message


class WorkerActor:
    """The actor's side: serves the worker on a thread and hands its messages out in batches.
    ``serve`` is the worker's entry point: the real worker, or the tests' scripted one."""

    def __init__(self, settings: WorkerSettings, serve: WorkerEntry = worker.serve) -> None:
        import ray

        gpu_ids = ray.get_gpu_ids()
        if gpu_ids:  # Ray made only these visible: the first is cuda:0 in here
            settings = replace(settings, device_index=0, host_gpu=int(gpu_ids[0]))
        self.settings = settings
        self.serve = serve
        self._inbox: queue.Queue[object] = queue.Queue()
        self._outbox: queue.Queue[object] = queue.Queue()
        self._sources: dict[str, Path] = {}
        self._folder = _private_folder()
        threading.Thread(target=self._serve, name="sca-serve", daemon=True).start()

    def _serve(self) -> None:
        worker.quiet_libraries(self.settings)
        try:
            self.serve(_QueueChannel(self._inbox, self._outbox), self.settings)
        finally:
            self._outbox.put(_ENDED)

    def where(self) -> dict[str, Any]:
        import ray

        return {
            "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "gpus": list(ray.get_gpu_ids()),
        }

    def put(self, message: object) -> None:
        self._inbox.put(message)

    def put_document(self, request: ConvertRequest, data: bytes) -> None:
        path = self._folder / f"{request.job_id}{_suffix(request.source_name)}"
        path.write_bytes(data)
        self._sources[request.job_id] = path
        self._inbox.put(replace(request, source_path=str(path)))

    def take(self, timeout: float) -> tuple[list[object], int | None]:
        """The worker's messages: waits up to ``timeout`` for the first, then takes what is
        there; with the actor's resident memory."""
        messages: list[object] = []
        with contextlib.suppress(queue.Empty):
            messages.append(self._outbox.get(timeout=timeout))
            while True:
                messages.append(self._outbox.get_nowait())
        for message in messages:
            if isinstance(message, Converted | Failed):
                path = self._sources.pop(message.job_id, None)
                if path is not None:
                    path.unlink(missing_ok=True)
        if _ENDED in messages:
            shutil.rmtree(self._folder, ignore_errors=True)
        return messages, resident_bytes(os.getpid())


def _suffix(source_name: str) -> str:
    """The file's own suffix when the format table knows it (``.docx``, ``.png``), else
    ``.pdf``: the copy keeps what the file is, never a name the sender chose."""
    suffix = split_suffix(Path(source_name).name)[1].lower()
    return suffix if suffix in BY_SUFFIX else ".pdf"


_ACTOR_CLASS: dict[int, Any] = {}  # the remote class, made once per Ray module


def _remote_class(ray: Any) -> Any:
    key = id(ray)
    if key not in _ACTOR_CLASS:
        _ACTOR_CLASS[key] = ray.remote(WorkerActor)
    return _ACTOR_CLASS[key]


def _actor_settings(settings: WorkerSettings, instance: str) -> WorkerSettings:
    return replace(settings, lock_instance=instance)


class RayActorTransport:
    """The daemon's end of one actor (``transports.base.Transport``); ``serve`` goes to the
    actor as its worker's entry point."""

    def __init__(
        self,
        settings: WorkerSettings,
        cluster: RayCluster,
        section: EngineSection,
        instance: str,
        serve: WorkerEntry = worker.serve,
    ) -> None:
        self.settings = _actor_settings(settings, instance)
        self.serve = serve
        self.cluster = cluster
        self.section = section
        self.where: dict[str, Any] = {}
        self._actor: Any = None
        self._where: Any = None  # the where() answer on its way
        self._pending: Any = None  # the take() in flight: its answer must not be lost
        self._pending_since = 0.0
        self._pending_timeout = 0.0
        self._buffer: deque[object] = deque()
        self._rss: int | None = None
        self._gone = False
        self._killed = False
        self._death = ""  # what Ray said when the actor was lost
        self._lock = threading.Lock()
        self._receiving = threading.RLock()

    def start(self) -> None:
        ray = self.cluster.ray
        self._actor = (
            _remote_class(ray)
            .options(
                num_cpus=self.section.cpus_per_worker,
                num_gpus=self.section.gpus_per_worker,
                max_concurrency=_ACTOR_CONCURRENCY,
                max_restarts=0,
                max_task_retries=0,
            )
            .remote(self.settings, self.serve)
        )
        self._where = self._actor.where.remote()  # known before the actor can be lost

    def send(self, message: object) -> None:
        actor = self._live_actor()
        if isinstance(message, ConvertRequest):
            data = _read_bounded(message.source_path, self.settings.max_file_bytes)
            actor.put_document.remote(message, self.cluster.ray.put(data))
        else:
            actor.put.remote(message)

    def receive(self, timeout: float) -> object | None:
        with self._receiving:  # one take() in flight at a time, whoever asks
            return self._receive(timeout)

    def _receive(self, timeout: float) -> object | None:
        if self._buffer:
            return self._buffer.popleft()
        actor = self._live_actor()
        ray = self.cluster.ray
        if self._pending is None:
            self._pending = actor.take.remote(timeout)
            self._pending_since, self._pending_timeout = time.monotonic(), timeout
        ready, _ = ray.wait([self._pending], timeout=timeout + _RPC_SLACK_SECONDS)
        if not ready:
            return None
        pending, self._pending = self._pending, None
        self._learn_where(timeout=0.0)
        try:
            messages, self._rss = ray.get(pending)
        except Exception as exc:  # noqa: BLE001 - RayActorError and kin: the actor is gone
            self._lost(exc)
            raise TransportClosed(f"the worker actor is gone: {self._death}") from None
        for message in messages:
            if message == _ENDED:
                self._gone = True
                break
            self._buffer.append(message)
        if self._buffer:
            return self._buffer.popleft()
        if self._gone:
            raise TransportClosed("the worker actor ended")
        return None

    def _live_actor(self) -> Any:
        if self._actor is None or self._gone:
            raise TransportClosed("the worker actor is gone")
        return self._actor

    def _lost(self, exc: Exception) -> None:
        self._gone = True
        self._death = f"{type(exc).__name__}: {str(exc)[:300]}"

    @property
    def death(self) -> str:
        """What Ray said when the actor was lost (empty while it lives)."""
        return self._death

    def lost_with_node(self) -> bool:
        """Whether the actor went down because its node did (not a document's doing)."""
        if not self._gone or not self._death:
            return False
        if "its node has died" in self._death:
            return True
        node = self.where.get("node_id")
        return bool(node) and not self.cluster.node_alive(str(node))

    def _learn_where(self, timeout: float) -> None:
        with self._lock:
            asked = self._where
            if self.where or asked is None:
                return
        ray = self.cluster.ray
        ready, _ = ray.wait([asked], timeout=timeout)
        if ready:
            with contextlib.suppress(Exception):
                self.where = ray.get(asked)
            with self._lock:
                self._where = None

    def describe(self) -> dict[str, Any]:
        """Where the actor runs (host, node id, pid, GPU ids); empty until it answered."""
        if self.alive():
            with contextlib.suppress(Exception):
                self._learn_where(timeout=1.0)
        return dict(self.where)

    def alive(self) -> bool:
        return self._actor is not None and not self._gone

    def silent_seconds(self) -> float:
        if self._pending is None or not self.alive():
            return 0.0
        late = time.monotonic() - self._pending_since - self._pending_timeout
        return max(0.0, late)

    def resident_bytes(self) -> int | None:
        return self._rss if self.alive() else None

    def exit_code(self, wait: float = 0.0) -> int | None:
        """None: an actor has no exit code the daemon can read. ``wait`` lets a worker told to
        shut down finish (its remaining messages are dropped: its jobs are settled anyway)."""
        deadline = time.monotonic() + wait
        while self.alive() and time.monotonic() < deadline:
            try:
                self.receive(min(0.25, max(0.0, deadline - time.monotonic())))
            except TransportClosed:
                break
        return None

    def kill(self) -> None:
        """Also an actor whose worker ended (told to shut down, as a recycle does): the actor
        itself lives on and holds its CPUs and GPU until it is killed."""
        actor = self._actor
        if actor is not None and not self._killed:
            with contextlib.suppress(Exception):
                self.cluster.ray.kill(actor, no_restart=True)
            self._killed = True
            self._death = self._death or "killed by the daemon"
            self._gone = True

    def close(self) -> None:
        self.kill()  # a take() in flight then ends at once
        with self._receiving:
            self._buffer.clear()
            self._pending = None


def _private_folder() -> Path:
    """``sca-actor-<pid>`` in this node's temporary folder, for the documents in this actor;
    those of actors that are gone (killed, so they could not clean up) are removed first."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob("sca-actor-*"):
        pid = stale.name.removeprefix("sca-actor-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    folder = base / f"sca-actor-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    return folder


def _read_bounded(path: str, limit: int) -> bytes:
    """The document's bytes for the object store; at most one byte over the limit, so the
    worker's own size check still sees an oversized file as one."""
    try:
        with open(path, "rb") as source:
            return source.read(limit + 1)
    except OSError:
        return b""  # the worker fails it as unreadable, in the words every engine uses
