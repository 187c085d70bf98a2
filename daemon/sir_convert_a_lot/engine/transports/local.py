"""The first transport: the worker as a child process of the daemon, spoken to over a pipe.

The child is started with ``spawn`` (a clean interpreter, no inherited CUDA state), so a
converter that hangs in native code, exhausts memory or crashes the interpreter on a hostile PDF
takes only the child down. Messages are the frozen dataclasses of ``protocol``, pickled over a
``multiprocessing`` pipe. Signs of life come through a shared double the child stamps every
second from its own thread: a child stuck in native code that holds the GIL stops stamping.

The pipe end is used and closed from several threads (a document's pump, a recycle, ``stop``),
and ``Connection.close`` is not safe against itself: two closes at once both ``os.close`` the
number, and the second fails with EBADF or closes whatever took the number meanwhile. So the
transport closes it once, under a lock, and only once no ``send`` or ``receive`` is using it.
Reaping the child is not safe against itself either: of two threads that join it at once, one
reaps it and the other's ``waitpid`` fails, so it reads no exit code. So a thread waits on the
process's sentinel, which any number of threads may do, and reaps it under a lock.

The parent half is ``LocalProcessTransport``; the child half is ``worker_process_main``, which
makes the process die with the daemon and then runs the worker's entry point over the pipe:
``worker.serve``, unless a test hands the transport its own (``worker.WorkerEntry``).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.protocol import WorkerSettings
from sir_convert_a_lot.engine.transports.base import TransportClosed
from sir_convert_a_lot.engine.worker import WorkerEntry

_JOIN_SECONDS = 10.0


def resident_bytes(pid: int) -> int | None:
    """The process's resident memory (VmRSS), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class LocalProcessTransport:
    """One spawned worker process and the parent's end of its pipe. ``serve`` is what the child
    runs: the real worker (the only one production uses), or the tests' scripted one."""

    def __init__(self, settings: WorkerSettings, serve: WorkerEntry = worker.serve) -> None:
        self.settings = settings
        self.serve = serve
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._stamp: Any = None  # multiprocessing.Value("d"): the child's last sign of life
        self._sending = threading.Lock()  # held while the pipe is written
        self._receiving = threading.Lock()  # held while the pipe is polled and read
        self._closing = threading.Lock()  # one close at a time
        self._reaping = threading.Lock()  # one waitpid at a time

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._stamp = context.Value("d", time.monotonic(), lock=False)
        process = context.Process(
            target=worker_process_main,
            args=(child, self.settings, os.getpid(), self._stamp, self.serve),
            name="sca-worker",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

    def send(self, message: object) -> None:
        with self._sending:
            conn = self._conn
            if conn is None:
                raise TransportClosed("the worker's pipe is closed")
            try:
                conn.send(message)
            except OSError:
                raise TransportClosed("the worker's pipe broke") from None

    def receive(self, timeout: float) -> object | None:
        with self._receiving:
            conn, process = self._conn, self._process
            if conn is None or process is None:
                raise TransportClosed("the worker's pipe is closed")
            try:
                if conn.poll(timeout):
                    message: object = conn.recv()
                    return message
            except (EOFError, OSError):
                raise TransportClosed("the worker's pipe closed") from None
        if not self._alive(process):
            raise TransportClosed("the worker process exited")
        return None

    def alive(self) -> bool:
        return self._process is not None and self._alive(self._process)

    def _alive(self, process: BaseProcess) -> bool:
        with self._reaping:
            return process.is_alive()

    def silent_seconds(self) -> float:
        if self._stamp is None or not self.alive():
            return 0.0
        return max(0.0, time.monotonic() - float(self._stamp.value))

    def resident_bytes(self) -> int | None:
        process = self._process
        if process is None or process.pid is None or not self._alive(process):
            return None
        return resident_bytes(process.pid)

    def exit_code(self, wait: float = 0.0) -> int | None:
        process = self._process
        if process is None:
            return None
        return self._reap(process, wait)

    def _reap(self, process: BaseProcess, wait: float) -> int | None:
        """The exit code once the process has ended within ``wait`` seconds, else None."""
        ended = not self._alive(process) or bool(
            wait > 0 and multiprocessing.connection.wait([process.sentinel], timeout=wait)
        )
        with self._reaping:
            if ended:  # its sentinel closes a moment before it can be reaped: wait for that
                process.join(timeout=_JOIN_SECONDS)
            return process.exitcode

    def lost_with_node(self) -> bool:
        return False  # the node is this host: if it went, so did the daemon

    def kill(self) -> None:
        process = self._process
        if process is not None and self._alive(process):
            process.kill()

    def close(self) -> None:
        """Kill the worker if need be, then close the pipe: once, whoever else closes it, and
        after a ``send`` or ``receive`` in progress (the worker gone, it ends at once)."""
        with self._closing:
            process = self._process
            if process is not None:
                if self._alive(process):
                    process.kill()
                self._reap(process, _JOIN_SECONDS)
            with self._sending, self._receiving:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


# -- the child's side ---------------------------------------------------------------------------


def worker_process_main(
    conn: Connection,
    settings: WorkerSettings,
    parent_pid: int,
    stamp: Any = None,
    serve: WorkerEntry = worker.serve,
) -> None:
    """Entry point of the worker process: ready it to be a worker, then run ``serve``."""
    _die_with_parent(parent_pid)
    if stamp is not None:
        threading.Thread(target=_beat, args=(stamp,), name="sca-alive", daemon=True).start()
    worker.quiet_libraries(settings)
    # The supervisor handles SIGINT/SIGTERM and tells us to stop; a terminal's Ctrl-C must not
    # kill a conversion behind its back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        serve(conn, settings)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when the supervisor dies, so a killed daemon leaves no
    conversion running behind it. Linux sends it when the *thread* that started us ends, so a
    worker must be started from a thread that outlives it (a job thread, the recycling thread)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _beat(stamp: Any) -> None:
    """Stamp ``stamp`` once a second. A worker stuck in native code that holds the GIL stops
    stamping, and the supervisor stops telling systemd's watchdog that all is well."""
    while True:
        stamp.value = time.monotonic()
        time.sleep(1.0)
