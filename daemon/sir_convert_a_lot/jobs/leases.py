"""Leases and takeover: each instance says it is alive by rewriting its lease, and takes over
the claimed jobs of an instance whose lease expired.

Lease ages are measured against our own lease's mtime (both stamped by the same file server, so
host clocks do not matter).
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.fsutil import (
    PRIVATE_FILE_MODE,
    entries,
    read_json,
    subfolders,
    write_json_atomic,
)
from sir_convert_a_lot.jobs.job import Job
from sir_convert_a_lot.jobs.records import Records
from sir_convert_a_lot.jobs.spool_folders import STOPPED, SpoolFolders


@dataclass(frozen=True)
class Lease:
    instance: str
    age_seconds: float
    data: dict[str, Any]


class Instances(SpoolFolders):
    """The ``instances/`` folder: this instance's lease and stop note, every instance's lease
    (status, doctor, the start's refusals), and the takeover of dead instances' jobs. Apart from
    the records because the heartbeat's thread and ``status`` use it with no job in hand; the
    takeover loads what it took through ``records``."""

    def __init__(self, records: Records) -> None:
        super().__init__(records.paths, records.instance, records.clock)
        self.records = records

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
                job = self.records.load_job(target)
                if job is not None:
                    taken.append(job)
            tmp_folder = self.tmp_root / owner
            for building in subfolders(tmp_folder):
                self.records.finish_half_claim(building, self.my_claims)
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
