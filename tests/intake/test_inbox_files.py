"""The inbox's table of files before their claim: the stability window on an injected clock,
the line dispatch takes from, and a blocked file's back-off."""

from __future__ import annotations

import pytest

from sir_convert_a_lot.intake.blocked import Blocked
from sir_convert_a_lot.intake.inbox_files import FileState, InboxFiles
from tests.intake.test_watch import FakeClock, seen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def files(clock: FakeClock) -> InboxFiles:
    return InboxFiles(5.0, clock=lambda: clock.now)


# -- settling --------------------------------------------------------------------------------


def test_a_file_that_keeps_growing_is_never_due_or_settled(
    files: InboxFiles, clock: FakeClock
) -> None:
    for tick in range(40):
        clock.now = 1000.0 + tick  # one tick a second for 40 s: far past the 5 s window
        current = seen(size=100 * (tick + 1), mtime_ns=tick)
        files.observe(current)
        assert files.due() == []
        assert files.settle(current) is False
    assert "a.pdf" in files


def test_a_file_whose_mtime_alone_changes_is_not_stable(
    files: InboxFiles, clock: FakeClock
) -> None:
    for tick in range(20):
        clock.now = 1000.0 + tick
        current = seen(size=100, mtime_ns=tick)  # rewritten in place, same size
        files.observe(current)
        assert files.settle(current) is False


def test_a_file_settles_only_after_a_full_unchanged_window(
    files: InboxFiles, clock: FakeClock
) -> None:
    files.observe(seen())

    clock.now = 1004.9
    files.observe(seen())  # unchanged: must not restart the window
    assert files.due() == []
    assert files.settle(seen()) is False
    assert "a.pdf" in files

    clock.now = 1005.0
    assert files.due() == ["a.pdf"]
    assert files.settle(seen()) is True
    files.queue(seen())
    assert files.count(FileState.SETTLING, FileState.INCOMPLETE) == 0
    assert files.take() == seen()


def test_a_change_seen_when_settling_restarts_the_window(
    files: InboxFiles, clock: FakeClock
) -> None:
    files.observe(seen(size=100))
    clock.now = 1005.0
    assert files.due() == ["a.pdf"]

    assert files.settle(seen(size=200)) is False

    assert files.due() == []
    assert files.next_deadline() == 1010.0
    clock.now = 1009.9
    assert files.settle(seen(size=200)) is False
    clock.now = 1010.0
    assert files.settle(seen(size=200)) is True


def test_a_path_that_was_never_observed_does_not_settle(files: InboxFiles) -> None:
    assert files.settle(seen()) is False


def test_next_deadline_is_the_earliest_window_end(files: InboxFiles, clock: FakeClock) -> None:
    assert files.next_deadline() is None

    files.observe(seen("a.pdf"))
    clock.now = 1002.0
    files.observe(seen("b.pdf"))
    assert files.next_deadline() == 1005.0

    clock.now = 1003.0
    files.observe(seen("a.pdf", size=101))  # a changed: its window starts again
    assert files.next_deadline() == 1007.0


def test_due_lists_paths_by_how_long_they_have_been_still(
    files: InboxFiles, clock: FakeClock
) -> None:
    files.observe(seen("aaa.pdf"))
    clock.now = 1001.0
    files.observe(seen("zzz.pdf"))
    clock.now = 1002.0
    files.observe(seen("aaa.pdf", size=101))  # aaa changed: now the more recent one
    clock.now = 1010.0

    assert files.due() == ["zzz.pdf", "aaa.pdf"]


def test_forget_drops_a_path(files: InboxFiles, clock: FakeClock) -> None:
    files.observe(seen("a.pdf"))
    files.observe(seen("b.pdf"))

    files.forget("a.pdf")
    files.forget("never-seen.pdf")  # no error

    clock.now = 1010.0
    assert files.due() == ["b.pdf"]
    assert "a.pdf" not in files
    assert files.settle(seen("a.pdf")) is False
    files.forget("b.pdf")
    assert files.next_deadline() is None


def test_a_custom_window_is_honoured(files: InboxFiles, clock: FakeClock) -> None:
    files.observe(seen("quick.pdf"), window=1.0)
    files.observe(seen("slow.pdf"), window=30.0)
    files.observe(seen("default.pdf"))
    assert files.next_deadline() == 1001.0

    clock.now = 1001.0
    assert files.due() == ["quick.pdf"]
    assert files.settle(seen("quick.pdf")) is True
    files.queue(seen("quick.pdf"))

    clock.now = 1005.0
    assert files.due() == ["default.pdf"]
    assert files.settle(seen("slow.pdf")) is False

    clock.now = 1030.0
    assert files.due() == ["default.pdf", "slow.pdf"]


def test_a_custom_window_survives_a_change_seen_when_settling(
    files: InboxFiles, clock: FakeClock
) -> None:
    files.observe(seen("slow.pdf"), window=30.0)
    clock.now = 1030.0

    assert files.settle(seen("slow.pdf", size=999)) is False

    assert files.next_deadline() == 1060.0
    clock.now = 1035.0  # the default window has passed, the custom one has not
    assert files.due() == []


# -- the line, and blocked files --------------------------------------------------------------


def _settled(files: InboxFiles, clock: FakeClock, *names: str) -> None:
    for name in names:
        files.observe(seen(name))
    clock.now += 5.0
    for name in files.due():
        assert files.settle(seen(name))
        files.queue(seen(name))


def test_claimable_files_are_taken_in_line_and_one_put_back_goes_first(
    files: InboxFiles, clock: FakeClock
) -> None:
    _settled(files, clock, "a.pdf", "b.pdf", "c.pdf")
    assert files.take() == seen("a.pdf")
    files.put_back(seen("a.pdf"))
    assert [files.take(), files.take(), files.take()] == [
        seen(n) for n in ("a.pdf", "b.pdf", "c.pdf")
    ]
    assert files.take() is None


def test_a_claimable_file_ignores_new_looks_and_stays_in_line_when_reported_gone(
    files: InboxFiles, clock: FakeClock
) -> None:
    _settled(files, clock, "a.pdf")
    files.observe(seen("a.pdf", size=5))  # in line: dispatch looks again before the claim
    files.forget("a.pdf")
    assert files.get("a.pdf") is not None and files.take() == seen("a.pdf")
    files.claimed("a.pdf")
    assert "a.pdf" not in files


def _blocked(retry_at: float, tries: int = 1) -> Blocked:
    return Blocked(seen("a.pdf"), "EACCES", "denied", "inbox", "fix", 0.0, tries, retry_at)


def test_a_blocked_file_backs_off_then_settles_again_keeping_its_record_until_claimed(
    files: InboxFiles, clock: FakeClock
) -> None:
    _settled(files, clock, "a.pdf")
    assert files.take() == seen("a.pdf")
    files.block(seen("a.pdf"), _blocked(clock.now + 10))
    assert [entry.tries for entry in files.blocked_view] == [1]
    files.observe(seen("a.pdf", size=1))  # backing off: a look changes nothing
    assert files.unblocked_due() == [] and files.due() == []
    clock.now += 10
    assert files.unblocked_due() == ["a.pdf"]
    files.observe(seen("a.pdf"))
    row = files.get("a.pdf")
    assert row is not None and row.state is FileState.SETTLING and row.blocked is not None
    assert files.claimed("a.pdf") is not None
    assert files.blocked_view == () and "a.pdf" not in files
