"""The reaper of a private Ray: ``python -m sir_convert_a_lot.engine.ray_reaper MARK FOLDER``.

Started by the daemon with a pipe on its standard input that only the daemon holds. It waits
for that pipe to close, which happens however the daemon ends (a clean stop, a crash, SIGKILL),
then kills every process whose environment carries ``SIR_CONVERT_RAY_MARK=MARK`` (the private
cluster's GCS, raylet and workers inherit it), every process writing a file under FOLDER (each
of the cluster's processes writes its log there; someone reading one, ``tail -f``, is spared)
and every process below them, and removes the cluster's folder.

The open files matter for Ray's agents: their process title overwrites the environment that
held the mark, and when a SIGKILLed daemon takes the raylet with it, they pass to init before
anyone can find them below it. Found by the mark alone they stayed, one pair per crash.
It ignores SIGINT and SIGTERM: stopping it early would leave the cluster behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator

_ROUNDS = 3  # Ray's processes may start others while they are being killed
_PAUSE_SECONDS = 0.5


def marked_processes(mark: str, spare: frozenset[int] = frozenset()) -> list[int]:
    """The pids whose environment holds this cluster's mark (``""``: any private Ray's),
    except ``spare``."""
    variable = b"SIR_CONVERT_RAY_MARK="
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spare:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                values = environ.read().split(b"\0")
        except OSError:
            continue
        if any(
            v.startswith(variable) and (not mark or v == variable + mark.encode()) for v in values
        ):
            found.append(int(entry))
    return found


def writing_under(folder: str, spare: frozenset[int] = frozenset()) -> list[int]:
    """The pids with a file open for writing below ``folder`` (an absolute path, never
    ``/``), except ``spare``; a file removed since still counts, under its old path."""
    root = os.path.normpath(folder)
    if not os.path.isabs(root) or root == "/":
        raise ValueError(f"not a cluster's folder: {folder!r}")
    prefix = root + "/"
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and int(entry) not in spare
        and any(path.startswith(prefix) for path in files_written_by(int(entry)))
    ]


def files_written_by(pid: int) -> Iterator[str]:
    """The paths a process has open for writing (a removed file's ends in `` (deleted)``);
    none for a process that is gone or another user's."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for descriptor in descriptors:
        try:
            path = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            with open(f"/proc/{pid}/fdinfo/{descriptor}", "rb") as info:
                flags = next(line for line in info if line.startswith(b"flags:")).split()[1]
        except (OSError, StopIteration, IndexError):
            continue
        if (int(flags, 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR):
            yield path


def with_descendants(pids: list[int], spare: frozenset[int] = frozenset()) -> list[int]:
    """``pids`` and every process below them: Ray's agents replace their environment (the
    mark is gone from it) but are the raylet's children while it lives (after, they belong to
    init, and only the logs they write say whose they are)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in found or pid in spare:
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def reap(mark: str, folder: str, spare: frozenset[int]) -> int:
    """Kill the cluster's processes (a few rounds) and remove its folder; how many were
    killed."""
    if not mark:
        raise ValueError("a reaper needs its cluster's mark: an empty one matches every Ray")
    killed = 0
    for _ in range(_ROUNDS):
        writers = writing_under(folder, spare) if folder else []
        pids = with_descendants(marked_processes(mark, spare) + writers, spare)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        if not pids:
            break
        time.sleep(_PAUSE_SECONDS)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    return killed


def main(argv: list[str]) -> int:
    mark, folder = argv[1], argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    daemon = os.getppid()
    while sys.stdin.buffer.read(65536):
        pass  # nothing is ever written; EOF means the daemon let go of the pipe
    reap(mark, folder, frozenset({os.getpid(), daemon}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
