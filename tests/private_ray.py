"""Which private Rays a test started, and which Ray processes outlived their reaper.

Two pytest processes (``tools/test -n 2``) may each run a Ray test at once, so "no private Ray
on the host" is not a test's own check. A private Ray is this test process's when its reaper
(``python -m sir_convert_a_lot.engine.ray_reaper MARK FOLDER``, which lives as long as the
cluster and never rewrites its environment) carries this process's ``PYTEST_XDIST_WORKER``.
A Ray process whose reaper is gone is a leak, whoever started it: that is every test's
business.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot.engine.ray_reaper import (
    files_written_by,
    marked_processes,
    with_descendants,
    writing_under,
)

REAPER_MODULE = b"sir_convert_a_lot.engine.ray_reaper"
WORKER_VARIABLE = b"PYTEST_XDIST_WORKER="
MARK_PREFIX = b"SIR_CONVERT_RAY_MARK="
FIXTURE_MARK = re.compile(rb"test-(\d+)-")  # tests/engine/test_pool.py's own clusters
PRIVATE_FOLDER = re.compile(re.escape(tempfile.gettempdir()) + r"/sca-ray-[^/]+(?=/)")


@dataclass(frozen=True)
class PrivateRay:
    reaper: int
    mark: str
    folder: str
    worker: bytes  # the PYTEST_XDIST_WORKER its daemon ran under, b"" outside xdist


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def private_rays() -> list[PrivateRay]:
    """Every private Ray on this host whose reaper still runs."""
    found = []
    for pid in _pids():
        argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
        if len(argv) >= 5 and argv[2] == REAPER_MODULE:
            environ = _read(f"/proc/{pid}/environ").split(b"\0")
            worker = next((v for v in environ if v.startswith(WORKER_VARIABLE)), b"")
            mark, folder = argv[3].decode(), argv[4].decode()
            found.append(PrivateRay(pid, mark, folder, worker.removeprefix(WORKER_VARIABLE)))
    return found


def my_private_rays() -> list[PrivateRay]:
    """The private Rays started by this test process or the daemons it started."""
    mine = os.environ.get("PYTEST_XDIST_WORKER", "").encode()
    return [ray for ray in private_rays() if ray.worker == mine]


def processes_of(ray: PrivateRay) -> list[int]:
    """A private Ray's reaper and every process the reaper would kill."""
    found = marked_processes(ray.mark) + writing_under(ray.folder)
    return sorted({ray.reaper, *with_descendants(found)})


def leaked_ray_processes() -> list[int]:
    """Processes of a private Ray whose reaper has exited: its mark, or the logs it still
    writes in a ``sca-ray-`` folder, belong to no running cluster."""
    live = private_rays()
    marks = {ray.mark.encode() for ray in live}
    folders = {ray.folder for ray in live}
    leaked = set()
    for pid in marked_processes("", _test_runners()):
        mark = _mark_of(pid)
        fixture = FIXTURE_MARK.match(mark)
        if mark not in marks and not (fixture and Path(f"/proc/{int(fixture[1])}").exists()):
            leaked.add(pid)
    runners = _test_runners()
    for pid in (pid for pid in _pids() if pid not in runners):
        for path in files_written_by(pid):
            folder = PRIVATE_FOLDER.match(path)
            if folder and folder[0] not in folders:
                leaked.add(pid)
    return sorted(leaked)


def _test_runners() -> frozenset[int]:
    """This pytest process and, under xdist, its controller and the other workers: a test that
    ran a Service in-process made its pytest process a Ray driver, which keeps writing its
    (removed) logs in the cluster's folder after the cluster has gone."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return frozenset({os.getpid()})
    controller = os.getppid()
    workers = [pid for pid in _pids() if _parent(pid) == controller]
    return frozenset({os.getpid(), controller, *workers})


def _parent(pid: int) -> int | None:
    try:
        return int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def _mark_of(pid: int) -> bytes:
    environ = _read(f"/proc/{pid}/environ").split(b"\0")
    return next((v for v in environ if v.startswith(MARK_PREFIX)), MARK_PREFIX).removeprefix(
        MARK_PREFIX
    )


def private_ray_processes() -> list[int]:
    """This test process's Rays' processes (its daemons' and its fixtures'), and every leaked
    Ray process."""
    mine = {pid for ray in my_private_rays() for pid in processes_of(ray)}
    fixture = f"test-{os.getpid()}-".encode()
    mine |= {pid for pid in marked_processes("") if _mark_of(pid).startswith(fixture)}
    return sorted(mine | set(leaked_ray_processes()))
