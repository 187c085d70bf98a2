"""Small, careful filesystem operations: atomic JSON, durable renames, no-replace moves, and
walking into output folders without following a planted symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# The spool is the daemon's alone: whatever the umask (the unit's is 0002, for the share), its
# folders and records are created writable by the service user only. The group may read them.
PRIVATE_DIR_MODE = 0o750
PRIVATE_FILE_MODE = 0o640


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some network filesystems refuse fsync on folders
        fd = os.open(path, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(fd)


def dump_json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_file_atomic(path: Path, content: bytes, mode: int = 0o644) -> None:
    """Write a sibling temporary file, fsync it, rename it over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    write_file_atomic(path, dump_json(data), mode)


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` with PRIVATE_DIR_MODE on every level it creates (``Path.mkdir(parents=True)``
    gives the parents the umask's mode, which under UMask=0002 is group-writable)."""
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_private_dirs(path.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, PRIVATE_DIR_MODE)


class OutsideFolder(ValueError):
    """A path read from a record would leave the folder it must lie in."""


def check_relative(relative: str, what: str) -> list[str]:
    """The parts of a relative path read from a record, refusing one that is absolute, empty,
    holds a NUL, or has empty, ``.`` or ``..`` parts: such a name could climb out."""
    if not relative or relative.startswith("/") or "\0" in relative:
        raise OutsideFolder(f"{what} {relative!r} is not a relative path")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise OutsideFolder(f"{what} {relative!r} climbs or has empty parts")
    return parts


def check_name(name: str, what: str) -> str:
    """A single file name read from a record (an output stem): one plain path component."""
    if len(check_relative(name, what)) != 1:
        raise OutsideFolder(f"{what} {name!r} is not a plain file name")
    return name


def read_json(path: Path, limit: int = 4 * 1024 * 1024) -> Any:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        return json.loads(handle.read(limit))


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def move_no_replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` on one filesystem, failing with FileExistsError rather than
    replacing an existing ``dst``. Uses link+unlink, which cannot overwrite; where hard links
    are not supported, falls back to check-then-rename."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EMLINK,
            errno.EXDEV,
        ):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "destination exists", str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def numbered(stem: str, suffix: str, number: int) -> str:
    """``report.pdf``, ``report (2).pdf``, ``report (3).pdf``, ...; the stem is shortened when
    the numbered name would not fit in one path component."""
    from sir_convert_a_lot.names import NAME_MAX, raw_bytes, shorten

    tail = suffix if number == 1 else f" ({number}){suffix}"
    return shorten(stem, NAME_MAX - len(raw_bytes(tail))) + tail


@contextlib.contextmanager
def open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, _DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a job folder we built ourselves (no symlinks followed)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def entries(folder: Path) -> list[os.DirEntry[str]]:
    """A folder's entries; nothing for a symlink planted where a spool folder belongs, so that
    a listing never leads out of the spool."""
    if os.path.islink(folder):
        return []
    try:
        with os.scandir(folder) as iterator:
            return list(iterator)
    except FileNotFoundError:
        return []


def subfolders(folder: Path) -> list[Path]:
    return [
        Path(entry.path)
        for entry in entries(folder)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    ]


def walk_files(root: Path) -> Iterator[Path]:
    """Every non-folder entry below ``root``, never descending through symlinks."""
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in entries(folder):
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            else:
                yield Path(entry.path)
