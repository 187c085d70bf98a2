"""Output name reservations: which job holds which output stem in which outbox folder.

Two jobs whose sources differ only in case or Unicode form would otherwise pick the same
``<stem>.md``; the one that reserves a stem first keeps it until its outputs are published.
A reservation is a file named by the hash of (folder, collision key), holding the job id, so
taking one is a single ``O_EXCL`` create, safe across instances sharing the state folder. The
folder is keyed by its parts within the share (``publish.folder_key``), never by the path the
outbox is mounted at: instances mounting one share at different paths hold the same names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Set
from pathlib import Path

from sir_convert_a_lot.fsutil import PRIVATE_FILE_MODE, entries, make_private_dirs
from sir_convert_a_lot.names import collision_key


class Reservations:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, folder: str, key: str) -> Path:
        digest = hashlib.sha256(os.fsencode(folder) + b"\0" + os.fsencode(key)).hexdigest()
        return self.root / digest

    def reserve(self, folder: str, key: str, job_id: str) -> bool:
        """Hold an output stem for ``job_id``; False when another job holds it."""
        path = self._path(folder, key)
        make_private_dirs(self.root)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, PRIVATE_FILE_MODE)
        except FileExistsError:
            try:
                return path.read_text(encoding="ascii").strip() == job_id
            except OSError:
                return False
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(job_id)
        return True

    def release(self, folder: str, stem: str, job_id: str) -> None:
        """Give up ``job_id``'s hold on ``stem`` in the folder keyed ``folder`` (someone else's
        hold is left alone)."""
        path = self._path(folder, collision_key(stem))
        with contextlib.suppress(OSError):
            if path.read_text(encoding="ascii").strip() == job_id:
                path.unlink()

    def drop_orphans(self, live_job_ids: Set[str]) -> int:
        """Remove reservations whose job is not among ``live_job_ids``; how many went."""
        dropped = 0
        for entry in entries(self.root):
            try:
                holder = Path(entry.path).read_text(encoding="ascii").strip()
            except OSError:
                continue
            if holder not in live_job_ids:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    dropped += 1
        return dropped
