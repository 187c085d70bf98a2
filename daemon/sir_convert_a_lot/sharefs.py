"""Share folders walked by descriptor, never by path string.

A share user can swap any folder under the inbox (and, where they may write, the other share
folders) for a symbolic link between any two of our system calls. A path string is resolved
again by the kernel at every call, so a check on it proves nothing about the next call. Here
every component below a share root is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its
parent's descriptor, and every stat, open, rename and link acts on a name inside a folder
descriptor we hold: a link anywhere in the path stops the walk (``NotAFolder``) instead of
leading outside. The roots themselves are the operator's configured folders, trusted as given.

What is moved out of a share is also checked to be the very file that was seen, by
``(st_dev, st_ino)``: a file replaced meanwhile is left where it is (``Swapped``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_RENAME_NOREPLACE = 1
_NOT_A_FOLDER = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)

FileId = tuple[int, int]  # (st_dev, st_ino): which file, whatever its name


class NotAFolder(NotADirectoryError):
    """A component of a share path is a symbolic link, or not a folder at all."""

    def __init__(self, root: Path, parts: tuple[str, ...]) -> None:
        shown = "/".join(parts)
        super().__init__(
            errno.ELOOP,
            f"{shown!r} under {root} is a symbolic link or not a real folder; "
            "nothing is followed through it",
        )
        self.root = root
        self.parts = parts


class Swapped(Exception):
    """The name no longer leads to the file that was seen: its folder or the file itself was
    replaced meanwhile (``source_swapped``)."""


def file_id(info: os.stat_result) -> FileId:
    return (info.st_dev, info.st_ino)


def split(relative: str) -> tuple[str, ...]:
    """The parts of a relative share path, refusing ones that could climb or are empty."""
    parts = tuple(relative.split("/"))
    if not relative or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a plain relative path: {relative!r}")
    return parts


@dataclass(frozen=True)
class FolderMode:
    """How folders this walk creates are made: ``mode`` set with fchmod (so the umask does not
    decide), and optionally the owner and group of ``like`` (retry as root: its folders must
    belong to whoever owns the inbox, or the service user could not move files out of them)."""

    mode: int
    owner: tuple[int, int] | None = None


def _open_root(root: Path) -> int:
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _step(fd: int, part: str, create: FolderMode | None) -> tuple[int, bool]:
    """Open ``part`` inside the folder ``fd``, creating it first when asked; (fd, created)."""
    if not part or part in (".", "..") or "/" in part:
        raise ValueError(f"refusing path component {part!r}")
    created = False
    if create is not None:
        try:
            os.mkdir(part, 0o700, dir_fd=fd)  # narrow first; widened below once it is ours
            created = True
        except FileExistsError:
            pass
    child = os.open(part, DIR_FLAGS, dir_fd=fd)
    if created and create is not None:
        with contextlib.suppress(OSError):
            if create.owner is not None:
                os.fchown(child, *create.owner)
        inherited = os.fstat(child).st_mode & stat.S_ISGID  # a setgid share folder stays so
        os.fchmod(child, create.mode | inherited)
    return child, created


def open_folder(root: Path, parts: tuple[str, ...], create: FolderMode | None = None) -> int:
    """A descriptor for ``root/parts...``, every part opened without following a link. With
    ``create``, missing folders are made. Raises NotAFolder, FileNotFoundError."""
    fd = _open_root(root)
    for index, part in enumerate(parts):
        try:
            child, _created = _step(fd, part, create)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NOT_A_FOLDER:
                raise NotAFolder(root, parts[: index + 1]) from None
            raise
        os.close(fd)
        fd = child
    return fd


@contextlib.contextmanager
def folder(root: Path, parts: tuple[str, ...], create: FolderMode | None = None) -> Iterator[int]:
    fd = open_folder(root, parts, create)
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ShareDir:
    """A folder under a share root, named by its parts: every use opens it anew by descriptor
    walk, so a path string is never trusted between two calls."""

    root: Path
    parts: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """For messages and records only; never opened as a string."""
        return self.root.joinpath(*self.parts)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def child(self, name: str) -> ShareDir:
        return ShareDir(self.root, (*self.parts, name))

    def open(self, create: FolderMode | None = None) -> contextlib.AbstractContextManager[int]:
        return folder(self.root, self.parts, create)


def lstat(root: Path, relative: str) -> os.stat_result | None:
    """What the entry ``root/relative`` is (a link is itself), or None when it is gone or a
    folder on its way is not a real folder."""
    try:
        parts = split(relative)
        with folder(root, parts[:-1]) as fd:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except (OSError, ValueError):
        return None


def through_link(root: Path, relative: str) -> bool:
    """True when a folder on the way to ``root/relative`` is now a link or not a folder: the
    name was swapped, not merely removed."""
    try:
        parts = split(relative)
        with folder(root, parts[:-1]):
            return False
    except NotAFolder:
        return True
    except (OSError, ValueError):
        return False


def open_file(root: Path, relative: str) -> int:
    """A read-only descriptor of the entry ``root/relative``, never through a link in any
    component (the last one included) and never blocking on a FIFO. The caller checks
    ``S_ISREG`` on it. Raises OSError (NotAFolder for a link on the way)."""
    parts = split(relative)
    with folder(root, parts[:-1]) as fd:
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)


@dataclass(frozen=True)
class Entry:
    relative: str
    info: os.stat_result


def scan(root: Path, skip: Callable[[str, str], bool], below: str = "") -> Iterator[Entry]:
    """Every non-folder entry under ``root/below`` (``skip(name, relative)`` leaves out names
    and whole folders), descending only into real folders, by descriptor."""
    stack = [below]
    while stack:
        relative_folder = stack.pop()
        parts = tuple(relative_folder.split("/")) if relative_folder else ()
        try:
            fd = open_folder(root, parts)
        except (OSError, ValueError):
            continue
        try:
            with os.scandir(fd) as iterator:
                listing = list(iterator)
            for entry in listing:
                relative = f"{relative_folder}/{entry.name}" if relative_folder else entry.name
                if skip(entry.name, relative):
                    continue
                try:
                    info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    stack.append(relative)
                    continue
                yield Entry(relative, info)
        except OSError:
            continue
        finally:
            os.close(fd)


# -- moving files without replacing anything ----------------------------------------------------


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    # The C library the interpreter already has loaded (dlopen(NULL)): find_library would run
    # ldconfig in a subprocess at import, in the unit's sandbox too.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()
_NOREPLACE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Move ``src`` (in folder ``src_fd``) to ``dst`` (in ``dst_fd``), failing with
    FileExistsError instead of replacing anything: ``renameat2(RENAME_NOREPLACE)`` where the
    kernel and filesystem have it, else a hard link and an unlink (a link never replaces)."""
    if _renameat2 is not None:
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in _NOREPLACE_UNSUPPORTED:
            raise OSError(code, os.strerror(code), dst)
    try:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links either (some network filesystems): check, then rename.
        with contextlib.suppress(FileNotFoundError):
            os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
            raise FileExistsError(errno.EEXIST, "destination exists", dst) from None
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    os.unlink(src, dir_fd=src_fd)


def take(root: Path, relative: str, seen: FileId, dst_fd: int, dst: str) -> None:
    """Rename the share entry ``root/relative`` to ``dst`` in the folder ``dst_fd`` (one
    rename, on the share's filesystem), only when it is still the file that was seen.
    Raises FileNotFoundError (gone: another instance took it), Swapped (a folder on the way is
    a link, or the name now holds another file; nothing was moved), NotAFolder inside Swapped's
    cause."""
    parts = split(relative)
    try:
        parent = open_folder(root, parts[:-1])
    except NotAFolder as exc:
        raise Swapped(str(exc)) from exc
    try:
        info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if file_id(info) != seen:
            raise Swapped(f"{relative!r} is no longer the file that was seen")
        os.rename(parts[-1], dst, src_dir_fd=parent, dst_dir_fd=dst_fd)
        moved = os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
        if file_id(moved) != seen:
            # Replaced in the instant between the look and the rename: put it back.
            place_in(dst_fd, dst, parent, parts[-1])
            raise Swapped(f"{relative!r} was replaced while it was claimed; it was put back")
    finally:
        os.close(parent)


def numbered(stem: str, suffix: str, number: int) -> str:
    from sir_convert_a_lot.fsutil import numbered as _numbered

    return _numbered(stem, suffix, number)


def place_in(src_fd: int, src: str, dst_fd: int, name: str) -> str:
    """Move ``src`` into the folder ``dst_fd`` as ``name``, or ``name (2)``... when taken,
    never replacing anything. Returns the name it got."""
    from sir_convert_a_lot.names import split_suffix

    stem, suffix = split_suffix(name)
    for number in range(1, 10_000):
        candidate = numbered(stem, suffix, number)
        try:
            rename_no_replace(src_fd, src, dst_fd, candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free name", name)


def place(
    src_fd: int, src: str, root: Path, parts: tuple[str, ...], name: str, create: FolderMode
) -> str:
    """Move ``src`` into ``root/parts...`` (folders made as ``create`` says, walked without
    following links) under a free name; the new relative path."""
    with folder(root, parts, create) as dst_fd:
        placed = place_in(src_fd, src, dst_fd, name)
        with contextlib.suppress(OSError):
            os.fsync(dst_fd)
    return "/".join((*parts, placed))
