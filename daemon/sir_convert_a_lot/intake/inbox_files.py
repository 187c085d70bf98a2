"""Every inbox file the daemon knows before its claim, in one table: its state, and every move
between states, here.

A hint or a scan *sees* a file (``observe``): it enters the table ``SETTLING``. Its size, mtime
and identity must hold still for the stability window; any change restarts it. A file still
unchanged once its window is over (``due``, then ``settle``) has either arrived, and becomes
``CLAIMABLE`` (``queue``), or a writer still holds it or its end is missing, and it is
``INCOMPLETE`` (``wait``): looked at again after a back-off (``intake.arrival`` keeps that
clock). Dispatch takes the claimable files in line (``take``); a file leaves the table once
claimed (``claimed``) or gone (``forget``). One the service user cannot move is ``BLOCKED``
(``block``) until its own back-off is over (``unblocked_due``), and then settles again, keeping
its block record (status shows it, and the next failure counts on) until it is claimed or gone.

Clocks are the service's (monotonic) clock, injected so tests need not sleep. Only the main
thread changes the table; other threads read ``blocked_view``, a tuple replaced whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sir_convert_a_lot.intake.blocked import Blocked
from sir_convert_a_lot.intake.watch import Seen

Clock = Callable[[], float]


class FileState(StrEnum):
    SETTLING = "settling"  # seen: must hold still for its window
    INCOMPLETE = "incomplete"  # stable, but not arrived yet: looked at again after a back-off
    BLOCKED = "blocked"  # its claim failed (the service user cannot move it): backs off
    CLAIMABLE = "claimable"  # settled and arrived: waits in line for dispatch


@dataclass
class InboxFile:
    """One inbox file's row: what was last seen of it, its state, and its clock."""

    seen: Seen
    state: FileState
    since: float  # when its window (or back-off) began
    window: float  # how long it must hold still (SETTLING, INCOMPLETE)
    turn: int = 0  # its place in line, while CLAIMABLE
    blocked: Blocked | None = None  # the last failed claim, until claimed or gone


class InboxFiles:
    """The table, by relative path (see the module's docstring for the states)."""

    def __init__(self, window: float, clock: Clock = time.monotonic) -> None:
        self.window = window  # the stability window for files seen anew
        self.clock = clock
        self.blocked_view: tuple[Blocked, ...] = ()
        self._rows: dict[str, InboxFile] = {}
        self._first_turn = 0
        self._next_turn = 0

    def __contains__(self, relative_path: object) -> bool:
        return relative_path in self._rows

    def get(self, relative_path: str) -> InboxFile | None:
        return self._rows.get(relative_path)

    def count(self, *states: FileState) -> int:
        return sum(1 for row in self._rows.values() if row.state in states)

    def blocked(self) -> dict[str, Blocked]:
        """The files with a failed claim on record, by relative path."""
        return {path: row.blocked for path, row in self._rows.items() if row.blocked}

    # -- settling -----------------------------------------------------------------------------

    def observe(self, seen: Seen, window: float | None = None) -> None:
        """A look at the file: a file seen anew, or changed, starts (again) its window; an
        unchanged one keeps it. A file in line or backing off from a failed claim waits on."""
        row = self._rows.get(seen.relative_path)
        if row is not None and row.state is FileState.CLAIMABLE:
            return
        if row is not None and row.state is FileState.BLOCKED:
            assert row.blocked is not None
            if self.clock() < row.blocked.retry_at:
                return
        wanted = self.window if window is None else window
        if row is None or row.state is FileState.BLOCKED or row.seen.state != seen.state:
            blocked = row.blocked if row is not None else None
            self._rows[seen.relative_path] = InboxFile(
                seen, FileState.SETTLING, self.clock(), wanted, blocked=blocked
            )

    def due(self) -> list[str]:
        """The files whose window is over, the longest waiting first: to be looked at again."""
        now = self.clock()
        ready = [
            (row.since, path)
            for path, row in self._rows.items()
            if row.state in (FileState.SETTLING, FileState.INCOMPLETE)
            and now - row.since >= row.window
        ]
        return [path for _since, path in sorted(ready)]

    def settle(self, seen: Seen) -> bool:
        """Look again at a due file: True when unchanged for its window (the caller then
        ``queue``s or ``wait``s it); a change restarts the same window."""
        row = self._rows.get(seen.relative_path)
        if row is None or row.state not in (FileState.SETTLING, FileState.INCOMPLETE):
            return False
        if row.seen.state != seen.state:
            row.seen, row.since = seen, self.clock()
            return False
        return self.clock() - row.since >= row.window

    def wait(self, seen: Seen, seconds: float) -> None:
        """Stable but not arrived: looked at again in ``seconds`` (or when it changes)."""
        row = self._row_for(seen)
        row.state, row.since, row.window = FileState.INCOMPLETE, self.clock(), seconds

    def next_deadline(self) -> float | None:
        """When the next window ends (None: no file is settling or waiting)."""
        ends = [
            row.since + row.window
            for row in self._rows.values()
            if row.state in (FileState.SETTLING, FileState.INCOMPLETE)
        ]
        return min(ends, default=None)

    # -- the line, for dispatch ---------------------------------------------------------------

    def queue(self, seen: Seen) -> None:
        """Settled and arrived: the file joins the end of the line."""
        row = self._row_for(seen)
        row.state, row.turn = FileState.CLAIMABLE, self._next_turn
        self._next_turn += 1

    def put_back(self, seen: Seen) -> None:
        """A file that could not be claimed for a reason not its own goes first next time."""
        row = self._row_for(seen)
        self._first_turn -= 1
        row.state, row.turn = FileState.CLAIMABLE, self._first_turn

    def take(self) -> Seen | None:
        """The first file in line, out of the line (its row stays until ``claimed``)."""
        waiting = [row for row in self._rows.values() if row.state is FileState.CLAIMABLE]
        if not waiting:
            return None
        first = min(waiting, key=lambda row: row.turn)
        # Taken: should the claim not happen (a writer came back), it settles again from now.
        first.state, first.since, first.window = FileState.SETTLING, self.clock(), self.window
        return first.seen

    def has_claimable(self) -> bool:
        return any(row.state is FileState.CLAIMABLE for row in self._rows.values())

    # -- claims -------------------------------------------------------------------------------

    def block(self, seen: Seen, entry: Blocked) -> None:
        """Its claim failed: it backs off until ``entry.retry_at``."""
        row = self._row_for(seen)
        row.state, row.blocked = FileState.BLOCKED, entry
        self._show_blocked()

    def unblocked_due(self) -> list[str]:
        """The blocked files whose back-off is over (the caller looks at each again)."""
        now = self.clock()
        return [
            path
            for path, row in self._rows.items()
            if row.state is FileState.BLOCKED and row.blocked and row.blocked.retry_at <= now
        ]

    def claimed(self, relative_path: str) -> Blocked | None:
        """The file was claimed (or lost to another instance): its row leaves. Its block
        record, if it had one (to say it is no longer blocked)."""
        row = self._rows.pop(relative_path, None)
        return self._unblock(row)

    def forget(self, relative_path: str) -> Blocked | None:
        """The file is gone: its row leaves, except from the line, where dispatch finds it gone
        when it looks once more before the claim. Its block record, if it had one."""
        row = self._rows.get(relative_path)
        if row is not None and row.state is not FileState.CLAIMABLE:
            del self._rows[relative_path]
        return self._unblock(row)

    def _unblock(self, row: InboxFile | None) -> Blocked | None:
        if row is None or row.blocked is None:
            return None
        blocked, row.blocked = row.blocked, None
        self._show_blocked()
        return blocked

    def _row_for(self, seen: Seen) -> InboxFile:
        row = self._rows.get(seen.relative_path)
        if row is None:
            row = InboxFile(seen, FileState.SETTLING, self.clock(), self.window)
            self._rows[seen.relative_path] = row
        row.seen = seen
        return row

    def _show_blocked(self) -> None:
        self.blocked_view = tuple(row.blocked for row in self._rows.values() if row.blocked)
