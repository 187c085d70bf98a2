"""Writing results: choose names, write them into the job's stage under temporary names, fsync,
rename (``jobs.placing`` then moves them into the outbox).

A result's family shares its stem: ``<stem>_artifacts/`` (the pictures), ``<stem>.docling.json``,
``<stem>.md``, ``<stem>.json`` (the sidecar) or ``<stem>.error.json``. They are placed in
that order, the sidecar last: a sidecar means "complete". An existing output is never
overwritten: names collide when equal case-insensitively after NFC, any member of the family
blocks a stem (a folder ``x_artifacts/`` too), and a new job takes ``stem (2)``, ``stem (3)``...
for all of its files. The stem a job chose is written to its record before anything is written,
so a redo after a crash reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.folders import RESULT_FOLDER_MODE
from sir_convert_a_lot.fsutil import dump_json, fsync_dir_fd, numbered
from sir_convert_a_lot.names import NAME_MAX, collision_key, display, shorten, split_suffix
from sir_convert_a_lot.sharefs import FolderMode, ShareDir

MARKDOWN = ".md"
SIDECAR = ".json"
ERROR = ".error.json"
DOCLING_JSON = ".docling.json"
ARTIFACTS = "_artifacts"  # a folder: <stem>_artifacts/picture-0001.png
FAMILY = (MARKDOWN, SIDECAR, ERROR, DOCLING_JSON, ARTIFACTS)
TMP_PREFIX = ".sca-tmp-"
# Room kept after a stem for a collision number and the longest member of the family the job
# writes: ``.error.json``, or ``.docling.json`` for a job that writes one.
_NUMBER_ROOM = len(" (9999)")
OUR_PICTURE = re.compile(r"picture-[0-9]{4,6}\.png")

# Reservations: while a job is between choosing a stem and renaming its sidecar, the stem is
# held in the state folder so another instance publishing into the same folder cannot pick it.
# ``where`` is the folder's key within the share (never the path it is mounted at).
Reserve = Callable[[str, str], bool]
Folder = Path | ShareDir  # a bare Path is a folder we trust as given (tests, one-shot output)

# Output folders the daemon makes: readable by the share, writable by the service user alone.
RESULT_FOLDERS = FolderMode(RESULT_FOLDER_MODE)


class NameTaken(FileExistsError):
    """Just before the commit, a name was found taken by a file this job did not write."""


@dataclass(frozen=True)
class Published:
    stem: str
    paths: dict[str, Path]
    sizes: dict[str, int]
    sha256: dict[str, str]


def _dir(folder: Folder) -> ShareDir:
    return folder if isinstance(folder, ShareDir) else ShareDir(folder)


def folder_key(parts: tuple[str, ...]) -> str:
    """A result folder's reservation key: its parts within the share, compared as names are
    (case-insensitively after NFC), so instances mounting the share at different paths, and
    folders a case-insensitive client sees as one, agree."""
    return "/".join(collision_key(part) for part in parts)


def output_folder(outbox: Path, folder_parts: tuple[str, ...]) -> ShareDir:
    """The job's folder in the outbox, made (0755, whatever the umask) where missing; every
    component a real folder, never a link."""
    where = ShareDir(outbox, folder_parts)
    with where.open(RESULT_FOLDERS):
        pass
    return where


def choose_stem(
    folder: Folder,
    source_name: str,
    relative_path: str,
    *,
    on_collision: str,
    reserve: Reserve,
    longest: str = ERROR,
    where: str = "",
) -> str:
    """The first free stem for this source in ``folder``. A stem is free when no member of its
    family (.md, .json, .error.json, .docling.json, _artifacts) exists, except an earlier
    ``.error.json`` of this same source, which a new result supersedes. ``longest``: the
    longest suffix the job will write (the stem is shortened so that it fits); ``where``: the
    folder's reservation key."""
    base = base_stem(source_name, longest)
    if on_collision == "replace":
        return base
    with _dir(folder).open() as fd:
        existing = {collision_key(name): name for name in os.listdir(fd)}
        for number in range(1, 100_000):
            stem = numbered(base, "", number)
            blockers = [
                existing[collision_key(stem + kind)]
                for kind in FAMILY
                if collision_key(stem + kind) in existing
            ]
            blockers = [
                name
                for name in blockers
                if not (name.endswith(ERROR) and same_source_in(fd, name, relative_path))
            ]
            if not blockers and reserve(where, collision_key(stem)):
                return stem
    raise FileExistsError(f"no free output name for {display(source_name)!r} in {folder}")


def base_stem(source_name: str, longest: str = ERROR) -> str:
    """The source's name without its suffix (``.pdf``, ``.docx``, ...), shortened so every output
    name fits on disk."""
    room = max(len(ERROR), len(longest)) + _NUMBER_ROOM
    return shorten(split_suffix(source_name)[0], NAME_MAX - room)


def same_source_in(dir_fd: int, error_json: str, relative_path: str) -> bool:
    try:
        fd = os.open(error_json, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return False
            data = json.loads(handle.read(1 << 20))
        source = data.get("source", {})
    except (OSError, ValueError, AttributeError):
        return False
    from sir_convert_a_lot.names import json_name

    ours = json_name(relative_path, "relative_path")
    return all(source.get(key) == value for key, value in ours.items())


def write_outputs(
    folder: Folder,
    stem: str,
    job_id: str,
    files: list[tuple[str, bytes]],
) -> Published:
    """Write each (kind, content) as ``stem+kind`` in order, each via a temporary name, fsynced
    and renamed; the last one (the sidecar) marks completion. ``folder`` is the job's own stage
    (``jobs.placing``), so a name there is this job's to replace."""
    where = _dir(folder)
    paths: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    with where.open() as fd:
        for kind, content in files:
            final = stem + kind
            tmp = f"{TMP_PREFIX}{job_id}{kind}"
            _write_new(fd, tmp, content)
            os.rename(tmp, final, src_dir_fd=fd, dst_dir_fd=fd)
            fsync_dir_fd(fd)
            paths[kind] = where / final
            sizes[kind] = len(content)
            digests[kind] = hashlib.sha256(content).hexdigest()
    return Published(stem, paths, sizes, digests)


def write_pictures(
    folder: Folder, stem: str, job_id: str, pictures: tuple[tuple[str, bytes], ...]
) -> None:
    """Write the pictures into ``folder/<stem>_artifacts/``, each via a temporary name, fsynced
    and renamed, before the Markdown and the sidecar. Pictures there by our own naming that are
    not in this set (an earlier attempt's, or those of the result this one replaces) go."""
    name = stem + ARTIFACTS
    where = _dir(folder)
    if not pictures and not _real_folder(where, name):
        return
    target = where.child(name)
    keep = {picture for picture, _content in pictures}
    with target.open(RESULT_FOLDERS) as fd:
        for picture, content in pictures:
            tmp = f"{TMP_PREFIX}{job_id}-{picture}"
            _write_new(fd, tmp, content)
            os.rename(tmp, picture, src_dir_fd=fd, dst_dir_fd=fd)
        drop_other_pictures(fd, keep)
    if not pictures:
        with where.open() as parent, contextlib.suppress(OSError):  # not empty: others' files
            os.rmdir(name, dir_fd=parent)
            fsync_dir_fd(parent)


def drop_other_pictures(dir_fd: int, keep: set[str]) -> None:
    """Pictures by our naming that are not in ``keep`` (an earlier attempt's, or those of the
    result this one replaces) go; anything else in the folder is someone else's and stays."""
    for entry in os.listdir(dir_fd):
        if OUR_PICTURE.fullmatch(entry) and entry not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=dir_fd)
    fsync_dir_fd(dir_fd)


def _real_folder(folder: ShareDir, name: str) -> bool:
    try:
        with folder.open() as fd:
            return stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _write_new(dir_fd: int, name: str, content: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)  # our own leftover from a killed attempt
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)


def remove_superseded_error(folder: Folder, stem: str, relative_path: str) -> bool:
    """After a success, an earlier ``stem.error.json`` of the same source is out of date."""
    with _dir(folder).open() as fd:
        if same_source_in(fd, stem + ERROR, relative_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem + ERROR, dir_fd=fd)
            return True
    return False


def remove_temporaries(folder: Folder, job_id: str, stem: str | None = None) -> int:
    """Delete the temporary files and stage folders an uncommitted attempt of ``job_id`` left in
    ``folder`` (and, given its stem, in its ``<stem>_artifacts/``)."""
    where = _dir(folder)
    removed = 0
    try:
        if stem is not None and _real_folder(where, stem + ARTIFACTS):
            removed += remove_temporaries(where.child(stem + ARTIFACTS), job_id)
        with where.open() as fd:
            for name in os.listdir(fd):
                if name.startswith(TMP_PREFIX + job_id):
                    with contextlib.suppress(FileNotFoundError):
                        remove_entry(fd, name)
                        removed += 1
    except OSError:
        return removed
    return removed


def remove_entry(dir_fd: int, name: str) -> None:
    """A temporary file, or a whole stage folder (``jobs.placing``), never through a link."""
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def sidecar_bytes(document: dict[str, Any]) -> bytes:
    return dump_json(document)
