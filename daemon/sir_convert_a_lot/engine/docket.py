"""The documents an engine holds, from ``submit`` until a ``wait`` collects each outcome, and
the condition their waiters sleep on.

Each document is bound to the worker it was sent to, so that a worker's limits, its loss and its
recycle reach exactly the documents in it: while a recycle overlaps (``recycle``), two workers
hold documents at once, and the pump (``supervisor``) serves both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sir_convert_a_lot.engine.interface import WorkerCrashed
from sir_convert_a_lot.engine.protocol import Converted, Failed
from sir_convert_a_lot.engine.transports.base import Transport


@dataclass
class InFlight:
    """One submitted document, from ``submit`` until its ``wait`` collects the outcome."""

    transport: Transport
    limit: float  # seconds
    deadline: float  # monotonic
    shared: bool = False  # another document was in the worker beside it at some point
    answer: Converted | Failed | None = None
    error: Exception | None = None

    @property
    def settled(self) -> bool:
        return self.answer is not None or self.error is not None


ErrorFor = Callable[[str, InFlight], Exception]
"""The verdict for each document still waiting on a worker that is gone."""


class Docket:
    """The documents in flight by job id; ``settled`` guards them and wakes their waiters."""

    def __init__(self) -> None:
        self.jobs: dict[str, InFlight] = {}
        self.settled = threading.Condition(threading.RLock())

    def add(self, job_id: str, transport: Transport, limit: float) -> None:
        """A document sent to ``transport``; its clock starts now. It and those beside it in
        that worker are ``shared`` from here on."""
        with self.settled:
            job = InFlight(transport, limit, time.monotonic() + limit)
            for other in self.waiting_on(transport).values():
                other.shared = job.shared = True
            self.jobs[job_id] = job

    def waiting_on(self, transport: Transport) -> dict[str, InFlight]:
        """The documents in ``transport``'s worker with no outcome yet."""
        with self.settled:
            return {
                job_id: job
                for job_id, job in self.jobs.items()
                if job.transport is transport and not job.settled
            }

    def workers(self) -> list[Transport]:
        """The workers holding a document with no outcome yet, in the order they were sent."""
        with self.settled:
            return list(dict.fromkeys(j.transport for j in self.jobs.values() if not j.settled))

    def holds(self, worker: object) -> bool:
        """Whether a document sent to ``worker`` is not yet collected."""
        with self.settled:
            return any(job.transport is worker for job in self.jobs.values())

    def settle(self, transport: Transport, error_for: ErrorFor) -> None:
        """End every document still waiting on ``transport``'s worker with its verdict."""
        with self.settled:
            for job_id, job in self.waiting_on(transport).items():
                job.error = error_for(job_id, job)
            self.settled.notify_all()


def bystanders(transport: Transport) -> ErrorFor:
    """The verdict for documents in a worker stopped for another reason (a recycle, a stop, a
    restart, another document's limit): innocent, no attempt counted."""
    return lambda _job_id, _job: WorkerCrashed(transport.exit_code(), innocent=True)
