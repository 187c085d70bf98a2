"""Fenced takeover: an instance frozen past its lease, at each stage of a job, then woken after
another instance took the job over, publishes nothing and replaces nothing; the job is
published exactly once, and the stale instance logs ``lease_lost`` and forgets it.

The freeze is a real SIGSTOP (``tests.crash_harness stop:STAGE``): every thread stops, the
heartbeat too, so the lease runs out exactly as it would under a stalled host or a hung mount.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import daemon as harness
from tests.daemon import Daemon
from tests.helpers import files_under, make_pdf, wait_for, write_config

LEASE_SECONDS = 2


def _frozen(daemon: harness.Daemon) -> bool:
    assert daemon.process is not None
    with open(f"/proc/{daemon.process.pid}/stat", encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def _snapshot(outbox: Path) -> dict[str, tuple[int, str]]:
    """Every output by name: its inode and content hash (a replaced file changes either)."""
    found: dict[str, tuple[int, str]] = {}
    for name in files_under(outbox):
        if name.startswith("."):
            continue  # a stage, or a file being written: not an output yet
        path = outbox / name
        try:
            found[name] = (os.lstat(path).st_ino, hashlib.sha256(path.read_bytes()).hexdigest())
        except FileNotFoundError:
            continue
    return found


@contextmanager
def _watching(outbox: Path) -> Iterator[list[str]]:
    """Every output as first seen, polled all along: a name whose inode or bytes ever change,
    or that vanishes, was replaced, whenever that happened."""
    first: dict[str, tuple[int, str]] = {}
    changes: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.05):
            now = _snapshot(outbox)
            for name, seen in first.items():
                if now.get(name) != seen:
                    changes.append(f"{name}: {seen} -> {now.get(name)}")
            first.update({k: v for k, v in now.items() if k not in first})

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield changes
    finally:
        done.set()
        poller.join()


def _job_events(daemon: harness.Daemon, job_id: str) -> list[str]:
    return [event["event"] for event in daemon.events() if event.get("job_id") == job_id]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage", ["queued", "converting", "after_stem_chosen", "before_commit", "after_commit"]
)
def test_an_instance_frozen_past_its_lease_publishes_the_job_exactly_once(
    tmp_path: Path, stage: str
) -> None:
    config = write_config(
        tmp_path, instances={"lease_seconds": LEASE_SECONDS}, conversion={"normalize": "none"}
    )
    outbox = tmp_path / "outbox"
    stale = Daemon(config, instance="stale", crash_at=f"stop:{stage}", log_name="stale", quick=True)
    with stale.start(), _watching(outbox) as replaced:
        make_pdf(tmp_path / "inbox" / "report.pdf")
        wait_for(lambda: _frozen(stale), timeout=60)
        (claimed,) = os.listdir(tmp_path / "state" / "claimed" / "stale")
        with Daemon(config, instance="holder", log_name="holder", quick=True).start() as holder:
            wait_for(lambda: (outbox / "report.json").exists(), timeout=60)
            published = _snapshot(outbox)
            assert stale.process is not None
            stale.process.send_signal(signal.SIGCONT)
            stale.wait_event("lease_lost", timeout=30)
            time.sleep(3 * LEASE_SECONDS)  # room for any retry or late write to show
            # The stale instance still serves: a new file is converted by one of the two.
            make_pdf(tmp_path / "inbox" / "after.pdf")
            wait_for(lambda: (outbox / "after.json").exists(), timeout=60)
            assert holder.terminate() == 0
        assert stale.terminate() == 0

    assert not replaced
    assert {k: v for k, v in _snapshot(outbox).items() if k.startswith("report")} == published
    assert sorted(os.listdir(outbox)) == ["after.json", "after.md", "report.json", "report.md"]
    assert sorted(os.listdir(tmp_path / "archive")) == ["after.pdf", "report.pdf"]
    stale_said = _job_events(stale, claimed)
    assert stale_said.count("lease_lost") == 1, stale_said
    assert not {"job_succeeded", "job_failed", "job_deferred", "job_error_unexpected"} & set(
        stale_said
    ), stale_said
    held = _job_events(holder, claimed)
    assert {"job_succeeded", "job_disposed_after_restart"} & set(held), held
    assert not files_under(tmp_path / "state" / "claimed")
