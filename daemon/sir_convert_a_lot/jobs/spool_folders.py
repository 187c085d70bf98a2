"""The spool's folders, and how an original is put back or set aside: what every part of the
spool (``jobs.claims``, ``jobs.records``, ``jobs.leases``, ``jobs.disposal``) stands on.

The layout on disk is told in ``jobs.spool``. Every part is built from the same paths and
instance, so each caller holds only the part it uses.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.folders import RESULT_FOLDER_MODE
from sir_convert_a_lot.fsutil import make_private_dirs, open_dir
from sir_convert_a_lot.jobs.custody import require_safe_instance
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.reservations import Reservations

SOURCE = "source"
Mode = sharefs.FolderMode
SHARED_RESULT_FOLDERS = Mode(RESULT_FOLDER_MODE)
RECORD = "job.json"
STOPPED = ".stopped"  # instances/<instance>.stopped: when and which version last stopped

Clock = Callable[[], float]


class SpoolFolders:
    """Where an instance's claims, records and leases live under ``paths.state``, and the one
    way an original leaves a job folder (``_put``): never through a link, never stuck."""

    def __init__(self, paths: Paths, instance: str, clock: Clock = time.time) -> None:
        self.paths = paths
        self.instance = require_safe_instance(instance)
        self.clock = clock
        self.state = paths.state
        self.tmp_root = self.state / "tmp"
        self.claimed_root = self.state / "claimed"
        self.instances_root = self.state / "instances"
        self.failures_root = self.state / "failures"
        self.reservations_root = self.state / "reservations"
        self.reservations = Reservations(self.reservations_root)

    @property
    def my_tmp(self) -> Path:
        return self.tmp_root / self.instance

    @property
    def my_claims(self) -> Path:
        return self.claimed_root / self.instance

    @property
    def lease_path(self) -> Path:
        return self.instances_root / f"{self.instance}.lease"

    def ensure_layout(self) -> None:
        for folder in (
            self.my_tmp,
            self.my_claims,
            self.instances_root,
            self.failures_root,
            self.reservations_root,
        ):
            make_private_dirs(folder)

    def job_folder(self, job: Job) -> Path:
        return self.my_claims / job.job_id

    def source_path(self, job: Job) -> Path:
        return self.job_folder(job) / SOURCE

    # -- where an original goes -------------------------------------------------------------

    def _give_back(self, job_folder: Path, parts: tuple[str, ...], name: str) -> str:
        """The original back into ``inbox/parts`` (folders made take the inbox's own mode)."""
        like_inbox = sharefs.FolderMode(stat.S_IMODE(os.stat(self.paths.inbox).st_mode))
        return self._put(job_folder, self.paths.inbox, parts, name, like_inbox)

    def _set_aside(self, job_folder: Path, root: Path, parts: tuple[str, ...], name: str) -> str:
        return self._put(job_folder, root, parts, name, SHARED_RESULT_FOLDERS)

    def _put(
        self, job_folder: Path, root: Path, parts: tuple[str, ...], name: str, mode: Mode
    ) -> str:
        """The original into ``root/parts`` under a free name; its relative path there. Into
        ``root`` itself when a name on the way is a link or a file (a swapped folder, or an
        earlier original called like the folder): never through it, never stuck."""
        with open_dir(job_folder) as fd:
            try:
                return sharefs.place(fd, SOURCE, root, parts, name, mode)
            except sharefs.NotAFolder:
                return sharefs.place(fd, SOURCE, root, (), name, mode)
