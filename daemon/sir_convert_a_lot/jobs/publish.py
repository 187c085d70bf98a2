"""Writing results into the outbox: choose names, write under temporary names, fsync, rename.

A result's family shares its stem: ``<stem>_artifacts/`` (the pictures), ``<stem>.docling.json``,
``<stem>.md``, ``<stem>.json`` (the sidecar) or ``<stem>.error.json``. They are renamed into
place in that order, the sidecar last: a sidecar means "complete". An existing output is never
overwritten: names collide when equal case-insensitively after NFC, any member of the family
blocks a stem (a folder ``x_artifacts/`` too), and a new job takes ``stem (2)``, ``stem (3)``...
for all of its files. The stem a job chose is written to its record before anything is written,
so a redo after a crash reuses it and replaces only its own half-done files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.fsutil import (
    dump_json,
    fsync_dir,
    fsync_dir_fd,
    make_dirs_no_symlinks,
    numbered,
    open_dir,
    read_json,
)
from sir_convert_a_lot.names import NAME_MAX, collision_key, display, shorten, split_suffix

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
_OUR_PICTURE = re.compile(r"picture-[0-9]{4,6}\.png")

# Reservations: while a job is between choosing a stem and renaming its sidecar, the stem is
# held in the state folder so another instance publishing into the same folder cannot pick it.
Reserve = Callable[[str, str], bool]


@dataclass(frozen=True)
class Published:
    stem: str
    paths: dict[str, Path]
    sizes: dict[str, int]
    sha256: dict[str, str]


def output_folder(outbox: Path, folder_parts: tuple[str, ...]) -> Path:
    return make_dirs_no_symlinks(outbox, folder_parts)


def choose_stem(
    folder: Path,
    source_name: str,
    relative_path: str,
    *,
    on_collision: str,
    reserve: Reserve,
    longest: str = ERROR,
) -> str:
    """The first free stem for this source in ``folder``. A stem is free when no member of its
    family (.md, .json, .error.json, .docling.json, _artifacts) exists, except an earlier
    ``.error.json`` of this same source, which a new result supersedes. ``longest``: the
    longest suffix the job will write (the stem is shortened so that it fits)."""
    base = base_stem(source_name, longest)
    if on_collision == "replace":
        return base
    with open_dir(folder) as fd:
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
            if not (name.endswith(ERROR) and _same_source(folder / name, relative_path))
        ]
        if not blockers and reserve(str(folder), collision_key(stem)):
            return stem
    raise FileExistsError(f"no free output name for {display(source_name)!r} in {folder}")


def base_stem(source_name: str, longest: str = ERROR) -> str:
    """The source's name without ``.pdf``, shortened so every output name fits on disk."""
    room = max(len(ERROR), len(longest)) + _NUMBER_ROOM
    return shorten(split_suffix(source_name)[0], NAME_MAX - room)


def _same_source(error_json: Path, relative_path: str) -> bool:
    try:
        data = read_json(error_json, limit=1 << 20)
        source = data.get("source", {})
    except (OSError, ValueError, AttributeError):
        return False
    from sir_convert_a_lot.names import json_name

    ours = json_name(relative_path, "relative_path")
    return all(source.get(key) == value for key, value in ours.items())


def write_outputs(
    folder: Path, stem: str, job_id: str, files: list[tuple[str, bytes]]
) -> Published:
    """Write each (kind, content) as ``stem+kind`` in order, each via a temporary name, fsynced
    and renamed; the last one (the sidecar) marks completion."""
    paths: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    with open_dir(folder) as fd:
        for kind, content in files:
            final = stem + kind
            tmp = f"{TMP_PREFIX}{job_id}{kind}"
            _write_new(fd, tmp, content)
            os.rename(tmp, final, src_dir_fd=fd, dst_dir_fd=fd)
            fsync_dir_fd(fd)
            paths[kind] = folder / final
            sizes[kind] = len(content)
            digests[kind] = hashlib.sha256(content).hexdigest()
    return Published(stem, paths, sizes, digests)


def write_pictures(
    folder: Path, stem: str, job_id: str, pictures: tuple[tuple[str, bytes], ...]
) -> None:
    """Write the pictures into ``folder/<stem>_artifacts/``, each via a temporary name, fsynced
    and renamed, before the Markdown and the sidecar. Pictures there by our own naming that are
    not in this set (an earlier attempt's, or those of the result this one replaces) go."""
    name = stem + ARTIFACTS
    if not pictures and not _real_folder(folder / name):
        return
    target = make_dirs_no_symlinks(folder, (name,))
    keep = {picture for picture, _content in pictures}
    with open_dir(target) as fd:
        for picture, content in pictures:
            tmp = f"{TMP_PREFIX}{job_id}-{picture}"
            _write_new(fd, tmp, content)
            os.rename(tmp, picture, src_dir_fd=fd, dst_dir_fd=fd)
        for entry in os.listdir(fd):
            if _OUR_PICTURE.fullmatch(entry) and entry not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=fd)
        fsync_dir_fd(fd)
    if not pictures:
        with contextlib.suppress(OSError):  # not empty: someone else's files stay
            os.rmdir(target)
    fsync_dir(folder)


def remove_extras(folder: Path, stem: str) -> None:
    """Remove a stem's pictures (by our naming) and its docling JSON: what an attempt that was
    killed while publishing left, when the job then fails."""
    write_pictures(folder, stem, "", ())
    with contextlib.suppress(OSError):
        os.unlink(folder / (stem + DOCLING_JSON))


def _real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
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


def remove_superseded_error(folder: Path, stem: str, relative_path: str) -> bool:
    """After a success, an earlier ``stem.error.json`` of the same source is out of date."""
    path = folder / (stem + ERROR)
    if path.exists() and _same_source(path, relative_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    return False


def remove_temporaries(folder: Path, job_id: str, stem: str | None = None) -> int:
    """Delete the temporary files a killed attempt of ``job_id`` left in ``folder`` (and, given
    its stem, in its ``<stem>_artifacts/``)."""
    removed = 0
    if stem is not None and _real_folder(folder / (stem + ARTIFACTS)):
        removed += remove_temporaries(folder / (stem + ARTIFACTS), job_id)
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name.startswith(TMP_PREFIX + job_id):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
                removed += 1
    return removed


def sidecar_bytes(document: dict[str, Any]) -> bytes:
    return dump_json(document)
