"""The stop steps: each runs whatever the one before it raised, and nothing fails unsaid."""

from __future__ import annotations

from typing import cast

from structlog.testing import capture_logs

from sir_convert_a_lot.intake.watch import InboxWatcher
from sir_convert_a_lot.service import shutdown


class _WatcherThatRaisesAtStop:
    def stop(self) -> None:
        raise RuntimeError("observer thread already gone")


def test_a_watcher_that_raises_at_its_stop_is_logged_and_is_no_fault() -> None:
    watcher = cast(InboxWatcher, _WatcherThatRaisesAtStop())
    with capture_logs() as logged:
        clean = shutdown.in_order([("watcher", lambda: shutdown.stop_watching(watcher))])
    assert clean  # watchdog's races at its stop do not make the daemon exit 1
    [warning] = [e for e in logged if e["event"] == "watcher_stop_failed"]
    assert warning["log_level"] == "warning"
    assert warning["error"] == "RuntimeError: observer thread already gone"


def test_later_steps_run_after_one_that_raises_and_the_stop_is_not_clean() -> None:
    ran: list[str] = []

    def fails() -> None:
        raise OSError("EBADF")

    with capture_logs() as logged:
        clean = shutdown.in_order([("first", fails), ("second", lambda: ran.append("second"))])
    assert not clean and ran == ["second"]
    assert [e["step"] for e in logged if e["event"] == "stop_step_failed"] == ["first"]


def test_no_watcher_is_nothing_to_stop() -> None:
    with capture_logs() as logged:
        shutdown.stop_watching(None)
    assert logged == []
