"""Claim pacing by pages in flight (contract section 3): the claimed, unfinished jobs hold at
most ``gpu.max_pages_in_flight`` pages, at least one job is claimed, and a job whose page count
the worker has not reported yet holds further claims back (the daemon never opens a PDF)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.intake.dispatch import Dispatcher, may_claim
from sir_convert_a_lot.intake.queue import Intake
from sir_convert_a_lot.intake.watch import look
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.service import startup
from tests.helpers import load_config, make_pdf


@pytest.mark.parametrize(
    ("held", "allowed"),
    [
        ([], True),  # nothing claimed: one job always, however large
        ([None], False),  # its count is not known yet
        ([3], True),
        ([3, 4], True),  # 7 of 8
        ([3, 5], False),  # 8 of 8: full
        ([3, None], False),
        ([100], False),  # a large document, claimed alone, stays alone
    ],
)
def test_the_pacing_rule(held: list[int | None], allowed: bool) -> None:
    assert may_claim(held, 8) is allowed


class Paced:
    """A dispatcher over real folders, whose claimed jobs' page counts the test reports as the
    worker would."""

    def __init__(self, tmp_path: Path, names: list[str], max_pages: int = 8) -> None:
        self.config: Config = load_config(tmp_path, gpu={"max_pages_in_flight": max_pages})
        spool = Spool(self.config.paths, self.config.instances.name)
        startup.prepare_folders(self.config, spool)
        self.intake = Intake(self.config, time.monotonic, lambda: None)
        for name in names:
            make_pdf(self.config.paths.inbox / name)
            seen = look(self.config.paths.inbox, name)
            assert seen is not None
            self.intake.files.queue(seen)
        self.claimed: list[Job] = []
        self.pages: dict[str, int | None] = {}
        self.dispatcher = Dispatcher(
            self.config, self.intake, spool.claims, time.monotonic, self._add
        )

    def _add(self, job: Job) -> None:
        self.claimed.append(job)
        self.pages[job.job_id] = None

    def dispatch(self) -> list[str]:
        """Claims now; the names of the files claimed by this call."""
        before = len(self.claimed)
        self.dispatcher.dispatch(lambda: list(self.pages.values()), threading.Event())
        return [job.relative_path for job in self.claimed[before:]]

    def reports(self, name: str, pages: int) -> None:
        self.pages[self._id(name)] = pages

    def ends(self, name: str) -> None:
        del self.pages[self._id(name)]

    def _id(self, name: str) -> str:
        return next(job.job_id for job in self.claimed if job.relative_path == name)


def test_claims_follow_the_pages_the_worker_reports(tmp_path: Path) -> None:
    paced = Paced(tmp_path, ["a.pdf", "b.pdf", "c.pdf", "d.pdf", "e.pdf"])
    assert paced.dispatch() == ["a.pdf"]
    assert paced.dispatch() == []  # a's page count is not known yet
    paced.reports("a.pdf", 3)
    assert paced.dispatch() == ["b.pdf"]
    paced.reports("b.pdf", 4)
    assert paced.dispatch() == ["c.pdf"]  # 7 of 8 pages held
    paced.reports("c.pdf", 1)
    assert paced.dispatch() == []  # 8 of 8
    paced.ends("a.pdf")  # its pages are free
    assert paced.dispatch() == ["d.pdf"]
    assert sorted(p.name for p in paced.config.paths.inbox.iterdir()) == ["e.pdf"]


def test_a_document_larger_than_the_limit_is_claimed_alone(tmp_path: Path) -> None:
    paced = Paced(tmp_path, ["big.pdf", "small.pdf"], max_pages=8)
    assert paced.dispatch() == ["big.pdf"]
    paced.reports("big.pdf", 500)
    assert paced.dispatch() == []
    paced.ends("big.pdf")
    assert paced.dispatch() == ["small.pdf"]


def test_the_default_limit_is_two_layout_batches(tmp_path: Path) -> None:
    config = load_config(tmp_path, gpu={"layout_batch_size": 16})
    assert config.gpu.max_pages_in_flight == 0
    assert config.gpu.max_pages_in_flight_in_effect == 32


def test_a_negative_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gpu\.max_pages_in_flight"):
        load_config(tmp_path, gpu={"max_pages_in_flight": -1})
