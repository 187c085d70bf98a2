"""The fast inner loop (`tools/test --fast`) stays fast because a test that starts a process
must be marked slow; tests/conftest.py enforces that, and this shows it does."""

from __future__ import annotations

import multiprocessing
import subprocess

import pytest


def test_a_test_not_marked_slow_cannot_start_a_command() -> None:
    with pytest.raises(AssertionError, match="not marked slow"):
        subprocess.run(["true"], check=False)


def test_a_test_not_marked_slow_cannot_start_a_worker_process() -> None:
    process = multiprocessing.get_context("spawn").Process(target=print)
    with pytest.raises(AssertionError, match="not marked slow"):
        process.start()


@pytest.mark.slow
def test_a_slow_test_may_start_one() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
