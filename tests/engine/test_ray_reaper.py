"""The reaper of a private Ray finds the cluster's processes by their mark, by the logs they
write in the cluster's folder, and below them; it spares whoever only reads those logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sir_convert_a_lot.engine.ray_cluster import MARK_VARIABLE
from sir_convert_a_lot.engine.ray_reaper import reap, writing_under
from tests.helpers import wait_for

pytestmark = pytest.mark.slow  # each test starts a few shell processes


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def _alive(pid: int) -> bool:
    """Running, not a zombie awaiting its parent's wait."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _orphan_writing(log: Path) -> int:
    """A process that appends to ``log`` and whose parent has died, so init owns it, with no
    mark in its environment: a Ray agent after a SIGKILLed daemon took its raylet along."""
    environment = {k: v for k, v in os.environ.items() if k != MARK_VARIABLE}
    out = subprocess.run(
        ["sh", "-c", f'sh -c \'exec 3>>"$0"; exec sleep 60\' "{log}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        check=True,
        env=environment,
    )
    pid = int(out.stdout)
    assert wait_for(lambda: writing_under(str(log.parent)) == [pid], timeout=10)
    return pid


def test_an_orphan_writing_in_the_cluster_s_folder_without_the_mark_is_reaped(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sca-ray-x"
    (folder / "logs").mkdir(parents=True)
    orphan = _orphan_writing(folder / "logs" / "dashboard_agent.log")
    try:
        assert _alive(orphan)
        killed = reap("mark-of-nobody", str(folder), frozenset({os.getpid()}))
        assert killed >= 1
        assert wait_for(lambda: not _alive(orphan), timeout=10)
        assert not folder.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


def test_a_process_marked_with_the_cluster_s_mark_is_reaped_and_another_mark_is_not(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    ours = subprocess.Popen(["sleep", "60"], env={**os.environ, MARK_VARIABLE: "ours"})
    theirs = subprocess.Popen(["sleep", "60"], env={**os.environ, MARK_VARIABLE: "theirs"})
    started += [ours, theirs]
    reap("ours", str(tmp_path / "absent"), frozenset({os.getpid()}))
    assert ours.wait(timeout=10) == -9
    assert theirs.poll() is None


def test_a_reader_of_the_cluster_s_logs_is_spared(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """An operator's ``tail -f`` on a Ray log at the daemon's stop is not the cluster's."""
    folder = tmp_path / "sca-ray-y"
    folder.mkdir()
    (folder / "raylet.out").write_text("started\n")
    reader = subprocess.Popen(
        ["sh", "-c", 'exec 3<"$0"; exec sleep 60', str(folder / "raylet.out")]
    )
    writer = subprocess.Popen(
        ["sh", "-c", 'exec 3>>"$0"; exec sleep 60', str(folder / "raylet.out")]
    )
    started += [reader, writer]
    assert wait_for(lambda: writing_under(str(folder)) == [writer.pid], timeout=10)
    reap("mark-of-nobody", str(folder), frozenset({os.getpid()}))
    assert writer.wait(timeout=10) == -9
    assert reader.poll() is None


def test_a_folder_that_is_not_a_cluster_s_is_refused() -> None:
    for folder in ("", "/", "relative/sca-ray-z"):
        with pytest.raises(ValueError, match="not a cluster's folder"):
            writing_under(folder)
