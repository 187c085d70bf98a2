"""The local transport's pipe is closed once, by whichever thread gets there first, and never
while another thread reads or writes it; every thread that waits for the worker's end reads its
exit code (issue 26: a stop during a drained recycle closed one worker's pipe from two threads;
the second ``os.close`` failed with EBADF and the daemon exited 1, or would have closed whatever
descriptor had taken that number meanwhile)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import pytest

from sir_convert_a_lot.engine.startup import worker_settings
from sir_convert_a_lot.engine.transports.base import TransportClosed
from sir_convert_a_lot.engine.transports.local import LocalProcessTransport
from tests.helpers import load_config


class _CountedEnd(Connection):
    """A pipe end that counts its closes; a close lingers (up to ``linger`` seconds) until a
    second one comes in, as a close does when another thread runs while it releases the GIL."""

    def __init__(self, handle: int, linger: float = 0.5) -> None:
        super().__init__(handle)
        self.closes = 0
        self.linger = linger
        self._second = threading.Event()

    def _close(self, _close: Any = os.close) -> None:
        handle = self.fileno()
        self.closes += 1
        if self.closes == 1:
            self._second.wait(self.linger)
        else:
            self._second.set()
        _close(handle)


class _Exited:
    """The worker process as the transport sees it once the worker has exited."""

    pid = 4242
    exitcode = 0

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        return None

    def kill(self) -> None:
        return None


def _transport(tmp_path: Path, end: Connection) -> LocalProcessTransport:
    """A transport whose worker has exited and whose pipe end is ``end``."""
    transport = LocalProcessTransport(worker_settings(load_config(tmp_path)))
    transport._process = cast(Any, _Exited())
    transport._conn = end
    return transport


def test_two_threads_closing_one_worker_close_its_pipe_once(tmp_path: Path) -> None:
    read, write = os.pipe()
    end = _CountedEnd(read)
    transport = _transport(tmp_path, end)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            transport.close()
        except BaseException as error:  # whatever any thread raised, the test reports
            errors.append(error)

    closers = [threading.Thread(target=close) for _ in range(2)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(10)
    os.close(write)
    assert errors == []
    assert end.closes == 1
    assert transport.exit_code() == 0  # still answers after the close


def test_a_close_waits_for_a_receive_in_progress_and_the_receive_ends_as_closed(
    tmp_path: Path,
) -> None:
    read, write = os.pipe()
    end = _CountedEnd(read, linger=0.0)
    transport = _transport(tmp_path, end)
    received: list[object] = []
    returned: list[float] = []

    def receive() -> None:
        try:
            received.append(transport.receive(1.0))
        except TransportClosed as closed:
            received.append(closed)
        returned.append(time.monotonic())

    receiving = threading.Thread(target=receive)
    receiving.start()
    time.sleep(0.2)  # the receive polls the pipe, which stays silent
    transport.close()
    closed_at = time.monotonic()
    receiving.join(10)
    os.close(write)
    assert end.closes == 1
    # The pipe was not closed under the poll: a descriptor that took its number meanwhile would
    # have been read (or closed) in its place.
    assert returned and returned[0] <= closed_at
    [outcome] = received
    assert isinstance(outcome, TransportClosed)  # nothing came, and the worker is gone
    try:
        transport.receive(0.0)
    except TransportClosed:
        pass
    else:
        raise AssertionError("a closed transport received")


@pytest.mark.slow
def test_threads_waiting_together_for_a_worker_s_end_all_read_its_exit_code(
    tmp_path: Path,
) -> None:
    # A crash report and a stop can wait for the same worker at once; each must read the exit
    # code, not None because the other reaped the process first.
    transport = LocalProcessTransport(worker_settings(load_config(tmp_path)))
    forked = multiprocessing.get_context("fork")
    for _round in range(10):
        process = forked.Process(target=time.sleep, args=(0.2,))
        process.start()
        transport._process = process
        codes: list[int | None] = []

        def wait_for_its_end(codes: list[int | None] = codes) -> None:
            codes.append(transport.exit_code(wait=10))

        waiters = [threading.Thread(target=wait_for_its_end) for _ in range(8)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(20)
        assert codes == [0] * 8
