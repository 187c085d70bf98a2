"""What other threads tell the main loop, one frozen dataclass per kind.

The watcher, the runner thread and the signal handlers never touch the main loop's state; they
put one of these on the service's queue and the main loop handles it (``Service._handle``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sir_convert_a_lot.jobs.outcome import Outcome


@dataclass(frozen=True)
class Wake:
    """Nothing to handle: look at the loop's conditions (stopping, a fatal error) now."""


@dataclass(frozen=True)
class Reload:
    """SIGHUP: read the config file again."""


@dataclass(frozen=True)
class Hint:
    """The watcher saw something change at ``path`` (absolute), a folder or maybe a file."""

    path: str
    is_folder: bool


@dataclass(frozen=True)
class EventsLost:
    """The watcher's event queue overflowed: only a full scan knows the inbox now."""


@dataclass(frozen=True)
class Done:
    """The runner thread finished a job (or deferred it)."""

    outcome: Outcome


Event = Wake | Reload | Hint | EventsLost | Done
