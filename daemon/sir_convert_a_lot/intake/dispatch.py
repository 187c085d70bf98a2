"""Claims the candidates into jobs, paced by the pages the claimed jobs hold, and after a claim
fails for the state folder's sake, no claims for a while.

The pacing rule (``may_claim``): a new job is claimed only when every claimed, unfinished job's
page count is known and together they hold fewer than ``gpu.max_pages_in_flight`` pages; with
no job claimed, one is always claimed, however large. The daemon never opens a PDF to count its
pages (a hostile file is only ever opened by the isolated worker): a job's count is what the
worker reports once it has opened the file (its first ``Progress``), milliseconds after the job
is submitted. Until then the job blocks further claims, so claims follow the worker's pace.

Claiming late keeps files in the inbox, where the user still sees and may take them, until the
worker is about to want them; another instance may claim them meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from sir_convert_a_lot import logs, sharefs
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.intake.queue import Intake
from sir_convert_a_lot.intake.watch import Seen
from sir_convert_a_lot.jobs.claims import Claims
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.source_blocked import SourceBlocked

log = logs.get()

CLAIM_BACKOFF_SECONDS = 10.0  # after a failed claim (state folder unwritable, full)


def may_claim(pages_in_flight: Collection[int | None], max_pages_in_flight: int) -> bool:
    """Whether one more job may be claimed, given the pages each claimed, unfinished job holds
    (None: not known yet): always with none in flight; never while a count is unknown; else
    while they hold fewer than ``max_pages_in_flight`` pages together."""
    if not pages_in_flight:
        return True
    known = [pages for pages in pages_in_flight if pages is not None]
    return len(known) == len(pages_in_flight) and sum(known) < max_pages_in_flight


class Dispatcher:
    """Turns candidates into claimed jobs and hands each to ``enqueue``."""

    def __init__(
        self,
        config: Config,
        intake: Intake,
        claims: Claims,
        clock: Callable[[], float],
        enqueue: Callable[[Job], None],
        max_pages_in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        # the pages in flight allowed (default: gpu.max_pages_in_flight in effect, live)
        self.max_pages_in_flight = max_pages_in_flight or (
            lambda: self.config.gpu.max_pages_in_flight_in_effect
        )
        self.intake = intake
        self.claims = claims
        self.clock = clock
        self.enqueue = enqueue
        self.paused_until = 0.0  # the service clock

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: the next claim uses its profiles and options (and its pages limit,
        which ``max_pages_in_flight`` reads live)."""
        self.config = config

    def dispatch(
        self, pages_in_flight: Callable[[], list[int | None]], stopping: threading.Event
    ) -> None:
        """Claim candidates while the pacing rule allows (``pages_in_flight``: the pages each
        claimed, unfinished job holds, None while unknown) and not stopping."""
        if self.clock() < self.paused_until:
            return
        most = self.max_pages_in_flight()
        while (
            may_claim(pages_in_flight(), most)
            and self.intake.files.has_claimable()
            and not stopping.is_set()
        ):
            seen = self.intake.next_candidate()
            if seen is None:
                return
            current = self.intake.still_settled(seen)
            if current is not None and not self._claim(seen, current):
                return

    def _claim(self, seen: Seen, current: Seen) -> bool:
        """Claim one file; False when claims pause (the state folder failed)."""
        relative = seen.relative_path
        profile = self.config.profile_of(tuple(relative.split("/")))
        try:
            job = self.claims.claim(
                relative,
                profile,
                self.config.options_for(profile),
                current.size,
                current.mtime_ns,
                seen.identity,
            )
        except SourceBlocked as exc:
            self.intake.block(current, exc)
            return True
        except sharefs.Swapped as exc:
            # A folder on its way became a link, or another file took its name, since it was
            # seen: nothing is taken through it. What is there now is seen anew, if anything.
            # Only the folder is an attack; a new file under an old name is a share's routine
            # (the same name dropped again after another instance took the first).
            say = log.warning if isinstance(exc.__cause__, sharefs.NotAFolder) else log.info
            say(
                "source_swapped",
                source=relative,
                reason=str(exc),
                effect="left alone; nothing was moved, read or converted through it",
            )
            self.intake.forget(relative)
            return True
        except OSError as exc:
            # The state folder is full, read-only or gone: the file stays in the inbox.
            log.error(
                "claim_failed",
                source=relative,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_seconds=CLAIM_BACKOFF_SECONDS,
                effect="the file stays in the inbox; claims pause",
            )
            self.intake.put_back(seen)
            self.paused_until = self.clock() + CLAIM_BACKOFF_SECONDS
            return False
        self.intake.claimed(relative, job)
        if job is None:
            log.info("claim_lost", source=relative)
            return True
        log.info("job_claimed", job_id=job.job_id, source=job.relative_path, profile=profile)
        self.enqueue(job)
        return True
