"""The spool: claims, job records, leases, recovery and disposition, all as renames.

Layout under ``paths.state`` (on the inbox's filesystem, so every move is one ``rename``)::

    tmp/<instance>/<job_id>/          a claim being built
    claimed/<instance>/<job_id>/      source  +  job.json
    instances/<instance>.lease        heartbeat (mtime) and what the instance is doing
    instances/<instance>.stopped      when the instance last stopped, and its version
    failures/<job_id>.json            where a failed original went, for retry and status

The spool is the service user's alone: its folders are made 0750 and its records 0640 whatever
the umask, and every name read back from a record is checked before use (``Job.from_record``),
so a record cannot lead a move out of its folder.

Every decision is written to ``job.json`` before it is acted on, so that recovery after a crash
at any point only has to read what is there. At every instant the original lives in exactly one
place: the inbox, a job folder, the archive or the failed folder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.folders import RESULT_FOLDER_MODE
from sir_convert_a_lot.fsutil import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    entries,
    fsync_dir,
    make_private_dirs,
    open_dir,
    read_json,
    remove_tree,
    subfolders,
    write_json_atomic,
)
from sir_convert_a_lot.jobs.custody import require_safe_instance
from sir_convert_a_lot.jobs.job import Job, new_job_id, read_job
from sir_convert_a_lot.jobs.reservations import Reservations
from sir_convert_a_lot.jobs.source_blocked import SOURCE_SIDE_ERRNOS, SourceBlocked
from sir_convert_a_lot.names import display, encode_for_record
from sir_convert_a_lot.options import ConversionOptions

SOURCE = "source"
Mode = sharefs.FolderMode
SHARED_RESULT_FOLDERS = Mode(RESULT_FOLDER_MODE)
RECORD = "job.json"
STOPPED = ".stopped"  # instances/<instance>.stopped: when and which version last stopped

Clock = Callable[[], float]


@dataclass(frozen=True)
class Lease:
    instance: str
    age_seconds: float
    data: dict[str, Any]


class Spool:
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

    # -- claim --------------------------------------------------------------------------------

    def claim(
        self,
        relative_path: str,
        profile: str | None,
        options: ConversionOptions,
        size: int,
        mtime_ns: int,
        identity: sharefs.FileId,
    ) -> Job | None:
        """Move ``inbox/relative_path`` into a new job folder, only when it is still the very
        file that was seen (``identity``; else ``sharefs.Swapped``). None when another
        instance (or the user) took the file first."""
        job = Job(
            job_id=new_job_id(),
            relative_path=relative_path,
            profile=profile,
            options=options,
            claimed_at=self.clock(),
            claimed_size=size,
            claimed_mtime_ns=mtime_ns,
            instance=self.instance,
        )
        building = self.my_tmp / job.job_id
        moving = False
        try:
            make_private_dirs(self.my_tmp)
            os.mkdir(building, PRIVATE_DIR_MODE)
            write_json_atomic(building / RECORD, job.to_record(), PRIVATE_FILE_MODE)
            moving = True
            with open_dir(building) as building_fd:
                sharefs.take(self.paths.inbox, relative_path, identity, building_fd, SOURCE)
        except sharefs.Swapped:
            remove_tree(building)  # nothing was moved out of the share
            raise
        except OSError as exc:
            remove_tree(building)  # the source never left the inbox
            if moving and isinstance(exc, FileNotFoundError):
                return None  # another instance took it
            if moving and exc.errno in SOURCE_SIDE_ERRNOS:
                # The job folder was just written, so the rename failed on the inbox's side.
                folder = self.paths.inbox.joinpath(*job.folder_parts)
                raise SourceBlocked(relative_path, folder, exc) from exc
            raise
        try:
            fsync_dir(building)
            make_private_dirs(self.my_claims)
            os.rename(building, self.job_folder(job))
        except OSError:
            # Give the file back rather than strand it until the next start's recovery.
            with contextlib.suppress(OSError):  # never over a newer file of the same name
                self._give_back(building, job.folder_parts, job.name)
                remove_tree(building)
            raise
        fsync_dir(self.my_claims)
        fsync_dir(self.my_tmp)
        return job

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

    # -- records ------------------------------------------------------------------------------

    def save(self, job: Job) -> Job:
        write_json_atomic(self.job_folder(job) / RECORD, job.to_record(), PRIVATE_FILE_MODE)
        return job

    def update(self, job: Job, **changes: Any) -> Job:
        return self.save(replace(job, **changes))

    def begin_attempt(self, job: Job) -> Job:
        """Every start of a conversion counts, written down before the conversion starts."""
        return self.update(job, attempts=job.attempts + 1)

    def still_mine(self, job: Job) -> bool:
        """False when a live instance took this job over (we were presumed dead)."""
        return os.path.lexists(self.source_path(job))

    def drop_orphan_reservations(self) -> int:
        """Reservations whose job no longer exists anywhere in the spool."""
        live = {job.name for owner in subfolders(self.claimed_root) for job in subfolders(owner)}
        live |= {job.name for owner in subfolders(self.tmp_root) for job in subfolders(owner)}
        return self.reservations.drop_orphans(live)

    # -- recovery -----------------------------------------------------------------------------

    def recover(self) -> list[Job]:
        """This instance's unfinished jobs after a restart, oldest first; half-built claims done."""
        self.ensure_layout()
        for building in subfolders(self.my_tmp):
            self._finish_half_claim(building, self.my_claims)
        return self._load_jobs(self.my_claims)

    def reload(self, job: Job) -> Job | None:
        """The job as its record now says (after the runner updated it)."""
        return read_job(self.my_claims / job.job_id / RECORD)

    def _finish_half_claim(self, building: Path, into: Path) -> None:
        if os.path.lexists(building / SOURCE):
            make_private_dirs(into)
            with contextlib.suppress(FileNotFoundError):
                os.rename(building, into / building.name)
        else:
            remove_tree(building)

    def _load_jobs(self, folder: Path) -> list[Job]:
        jobs: list[Job] = []
        for job_folder in subfolders(folder):
            job = self._load_job(job_folder)
            if job is not None:
                jobs.append(job)
        jobs.sort(key=lambda j: (j.claimed_at, j.job_id))
        return jobs

    def _load_job(self, job_folder: Path) -> Job | None:
        has_source = os.path.lexists(job_folder / SOURCE)
        job = read_job(job_folder / RECORD)
        if job is None:
            if has_source:
                # The record is damaged but the file is here: keep it visible to people.
                self._quarantine(job_folder)
            else:
                remove_tree(job_folder)
            return None
        if not has_source:
            # The original had already been archived or failed; only the folder was left.
            remove_tree(job_folder)
            return None
        if self._duplicate_of_inbox(job, job_folder):
            remove_tree(job_folder)
            return None
        if job.instance != self.instance or job_folder.name != job.job_id:
            job = replace(job, instance=self.instance, job_id=job_folder.name)
            write_json_atomic(job_folder / RECORD, job.to_record(), PRIVATE_FILE_MODE)
        return job

    def _duplicate_of_inbox(self, job: Job, job_folder: Path) -> bool:
        """A crash inside move_no_replace (link done, unlink not) leaves one file under two
        names; the inbox name wins and the job's is dropped."""
        try:
            ours = os.lstat(job_folder / SOURCE)
        except OSError:
            return False
        theirs = sharefs.lstat(self.paths.inbox, job.relative_path)
        return theirs is not None and sharefs.file_id(ours) == sharefs.file_id(theirs)

    def _quarantine(self, job_folder: Path) -> None:
        self._set_aside(
            job_folder, self.paths.failed, ("_unrecoverable",), f"{job_folder.name}.bin"
        )
        remove_tree(job_folder)

    # -- leases and takeover ------------------------------------------------------------------

    def heartbeat(self, status: dict[str, Any]) -> None:
        record = {
            "instance": self.instance,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "heartbeat_at": self.clock(),
            **status,
        }
        write_json_atomic(self.lease_path, record, PRIVATE_FILE_MODE)

    def remove_lease(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lease_path)

    def record_stop(self, details: dict[str, Any]) -> None:
        """Leave a note that this instance stopped, and when: the lease goes with the process,
        and without the note ``status`` could not tell a stopped spool from a new one."""
        record = {
            "instance": self.instance,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "stopped_at": self.clock(),
            **details,
        }
        write_json_atomic(self.instances_root / f"{self.instance}{STOPPED}", record)

    def stops(self) -> list[dict[str, Any]]:
        """The notes of instances that stopped, newest first; unreadable notes are skipped."""
        found: list[dict[str, Any]] = []
        for entry in entries(self.instances_root):
            if not entry.name.endswith(STOPPED) or entry.name.startswith("."):
                continue
            try:
                data = read_json(Path(entry.path))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("stopped_at"), int | float):
                found.append({**data, "instance": entry.name[: -len(STOPPED)]})
        return sorted(found, key=lambda note: float(note["stopped_at"]), reverse=True)

    def leases(self) -> list[Lease]:
        """Every instance's lease, with its age measured against our own lease's mtime when we
        have one (both stamped by the same file server, so host clocks do not matter)."""
        try:
            now = os.stat(self.lease_path).st_mtime
        except OSError:
            now = self.clock()
        found: list[Lease] = []
        for entry in entries(self.instances_root):
            if not entry.name.endswith(".lease") or entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
                data = read_json(Path(entry.path))
            except (OSError, ValueError):
                continue
            found.append(Lease(entry.name[: -len(".lease")], max(0.0, now - mtime), data))
        return found

    def take_over_dead(self, lease_seconds: float) -> list[Job]:
        """Move the jobs of instances whose lease expired into our claims (ENOENT: lost a race)."""
        live = {lease.instance for lease in self.leases() if lease.age_seconds <= lease_seconds}
        taken: list[Job] = []
        for owner_folder in subfolders(self.claimed_root):
            owner = owner_folder.name
            if owner == self.instance or owner in live:
                continue
            if not self._expired(owner_folder, lease_seconds):
                continue
            for job_folder in subfolders(owner_folder):
                target = self.my_claims / job_folder.name
                try:
                    os.rename(job_folder, target)
                except FileNotFoundError:
                    continue
                job = self._load_job(target)
                if job is not None:
                    taken.append(job)
            tmp_folder = self.tmp_root / owner
            for building in subfolders(tmp_folder):
                self._finish_half_claim(building, self.my_claims)
        return taken

    def _expired(self, owner_folder: Path, lease_seconds: float) -> bool:
        """No lease at all counts as expired once the owner's folder is older than a lease."""
        try:
            lease_mtime = os.stat(self.instances_root / f"{owner_folder.name}.lease").st_mtime
        except FileNotFoundError:
            lease_mtime = os.stat(owner_folder).st_mtime
        try:
            now = os.stat(self.lease_path).st_mtime
        except OSError:
            now = self.clock()
        return now - lease_mtime > lease_seconds

    # -- disposition --------------------------------------------------------------------------

    def return_to_inbox(self, job: Job) -> Path:
        """The original back to the inbox (SIGTERM, being written); numbered when taken."""
        placed = self._give_back(self.job_folder(job), job.folder_parts, job.name)
        remove_tree(self.job_folder(job))
        return self.paths.inbox / placed

    def archive(self, job: Job, mode: str) -> Path | None:
        """After success: into the archive (mirroring folders) or deleted."""
        target: Path | None = None
        if mode == "delete":
            os.unlink(self.source_path(job))  # ENOENT: taken over meanwhile, not ours to count
        else:
            placed = self._set_aside(
                self.job_folder(job), self.paths.archive, job.folder_parts, job.name
            )
            target = self.paths.archive / placed
        remove_tree(self.job_folder(job))
        return target

    def fail(self, job: Job, error: dict[str, Any], error_json: Path | None) -> Path:
        """After failure: the original into the failed folder, and a record for retry."""
        placed = self._set_aside(
            self.job_folder(job), self.paths.failed, job.folder_parts, job.name
        )
        target = self.paths.failed / placed
        record = {
            "job_id": job.job_id,
            "relative_path": display(job.relative_path),
            "relative_path_b64": encode_for_record(job.relative_path),
            "failed_path_b64": encode_for_record(str(target.relative_to(self.paths.failed))),
            "error_json_b64": (
                encode_for_record(str(error_json.relative_to(self.paths.outbox)))
                if error_json
                else None
            ),
            "code": error.get("code"),
            "message": error.get("message"),
            "failed_at": self.clock(),
            "instance": self.instance,
        }
        write_json_atomic(self.failures_root / f"{job.job_id}.json", record, PRIVATE_FILE_MODE)
        remove_tree(self.job_folder(job))
        return target

    def failure_records(self) -> list[dict[str, Any]]:
        """Every failure record, oldest first, with ``_record`` (its path) and ``_trusted``:
        whether the owner of the failures folder wrote it (anyone else's is shown, never acted
        on)."""
        try:
            owner: int | None = os.lstat(self.failures_root).st_uid
        except OSError:
            owner = None
        records: list[dict[str, Any]] = []
        for entry in entries(self.failures_root):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
                record = read_json(Path(entry.path))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                record["_record"] = entry.path
                record["_trusted"] = uid == owner
                records.append(record)
        records.sort(key=lambda r: float(r.get("failed_at") or 0))
        return records

    def counts(self) -> dict[str, int]:
        claimed = sum(len(subfolders(owner)) for owner in subfolders(self.claimed_root))
        return {"claimed": claimed}
