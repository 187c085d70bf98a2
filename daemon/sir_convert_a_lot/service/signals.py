"""The daemon's signals: SIGTERM and SIGINT stop it and SIGHUP reloads its config, while it runs.

Signals are the process's, and Python lets only its main thread take them: a service run on
another thread (as the tests run it) leaves them to the process. A handler never touches a lock
(it may interrupt the very thread that holds one): it hands the work to a thread of its own.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def handled(*, stop: Callable[[], None], reload: Callable[[], None]) -> Iterator[None]:
    """``stop`` on SIGTERM and SIGINT, ``reload`` on SIGHUP, each called on a new thread, until
    the block ends; then the old handlers come back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {number: signal.getsignal(number) for number in _SIGNALS}
    _install(stop, reload)
    try:
        yield
    finally:
        for number, handler in saved.items():
            if handler is not None:
                signal.signal(number, handler)


def _install(stop: Callable[[], None], reload: Callable[[], None]) -> None:
    def on_term(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=stop, name="sca-signal").start()

    def on_hup(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=reload, name="sca-signal").start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
