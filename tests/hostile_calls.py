"""The hostile share user's system calls, each on one name and never through a link in its last
component (``O_NOFOLLOW``; the user checks the folders above), and the daemon's launcher with
its device-lock folder moved where the test planted a sentinel:
``python -m tests.hostile_calls LOCK_FOLDER --config CFG run``."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from pathlib import Path

FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks the user


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FLAGS)


def write_new(path: str, content: bytes) -> None:
    fd = create(path)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def truncate(path: str, size: int, content: bytes = b"") -> None:
    """Cuts the regular file to ``size`` bytes, then writes ``content`` from its start."""
    fd = os.open(path, os.O_WRONLY | FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EISDIR, "not a regular file")
        os.ftruncate(fd, size)
        if content:
            os.write(fd, content)
    finally:
        os.close(fd)


def chmod(path: str, mode: int) -> None:
    fd = os.open(path, os.O_RDONLY | FLAGS)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def hard_link(old: str, new: str) -> None:
    os.link(old, new, follow_symlinks=False)


def taken_first(
    _function: object, path: str, info: tuple[type[BaseException], BaseException, object]
) -> None:
    """``rm -r``'s error handler: the daemon took a file first; anything else stops it."""
    if not issubclass(info[0], FileNotFoundError):
        raise OSError(errno.EIO, f"rm -r failed on {path}")


def launch(argv: list[str]) -> int:
    """The daemon with its device-lock folder at ``argv[0]`` rather than ``/run/sir-convert``,
    a host-wide folder the test must neither make nor litter."""
    from sir_convert_a_lot.engine import gpu
    from sir_convert_a_lot.ops.cli import main

    gpu.LOCK_FOLDER = Path(argv[0])
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
