"""The supervisor's only view of a worker: a channel of ``protocol`` messages to something that
lives, may die, and can be killed.

One ``Transport`` is one worker's life. The supervisor makes it with a ``TransportFactory``,
calls ``start()``, then speaks the handshake of ``protocol`` over ``send``/``receive`` (probe,
load, ready), then sends ``ConvertRequest``s, each answered by ``Progress`` and one ``Converted``
or ``Failed`` with the same job id. Several requests may be outstanding and answers may come in
any order: the job id, not the order, pairs them. When the worker is lost (it died, it was
killed, its channel broke) ``send`` and ``receive`` raise ``TransportClosed``; a fresh worker
is a fresh ``Transport``.

The supervisor's limits need only what is here: ``receive`` with a timeout (document deadlines),
``silent_seconds`` (the health check), ``resident_bytes`` (the memory limit), ``exit_code``
(telling a crash from a kill), ``kill`` (from any thread) and ``close``. A transport that cannot
measure something says None (or 0.0 for silence) and that limit does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sir_convert_a_lot.engine.protocol import WorkerSettings


class TransportClosed(Exception):
    """The worker can no longer be reached: it exited, was killed, or its channel broke."""


class Transport(Protocol):
    def start(self) -> None:
        """Start the worker; it begins the handshake on its own (``Probed`` first)."""
        ...

    def send(self, message: object) -> None:
        """Hand one ``protocol`` message to the worker; ``TransportClosed`` when it is gone."""
        ...

    def receive(self, timeout: float) -> object | None:
        """The worker's next message, or None when none came within ``timeout`` seconds;
        ``TransportClosed`` when the worker is gone and nothing more will come."""
        ...

    def alive(self) -> bool: ...

    def silent_seconds(self) -> float:
        """How long the worker has shown no sign of life (0.0 when it is not running)."""
        ...

    def resident_bytes(self) -> int | None:
        """The worker's resident memory, or None when it is gone or cannot be measured."""
        ...

    def exit_code(self, wait: float = 0.0) -> int | None:
        """The worker's exit code, waiting up to ``wait`` seconds for it to end; None while it
        runs or when it has none to give."""
        ...

    def lost_with_node(self) -> bool:
        """Whether the worker was lost with the machine it ran on (a Ray node that went away):
        then no document in it was the cause."""
        ...

    def kill(self) -> None:
        """Stop the worker at once, from any thread, without waiting for it."""
        ...

    def close(self) -> None:
        """Make sure the worker is gone (killing it if need be) and release the channel.
        Idempotent; ``exit_code`` still answers afterwards."""
        ...


TransportFactory = Callable[[WorkerSettings], Transport]
