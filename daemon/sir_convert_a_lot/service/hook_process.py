"""One hook run: the executable with the published file's path as its one argument, in a session
of its own, its output kept, and its whole process group killed at its deadline.

The hook's exit is noticed without reaping it (``waitid`` with ``WNOWAIT``): while the exited
hook is a zombie its process group id cannot be reused, so killing what it left running in its
group can never hit an unrelated process. A child that kept the output pipe open would otherwise
hold the run until its deadline; what the hook leaves behind does not outlive it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

OUTPUT_KEEP: Final = 4096
"""The bytes of a hook's output kept for the journal: the last ones, where an error usually is."""
TERM_GRACE: Final = 2.0
"""Seconds between SIGTERM and SIGKILL for a hook past its deadline."""
DRAIN_SECONDS: Final = 1.0
"""How long output may still arrive after the hook's group is gone (a child that escaped it)."""
_POLL: Final = 0.05

Result = Literal["ran", "exit", "timeout", "spawn"]


@dataclass(frozen=True)
class Call:
    """A hook to run for one published result."""

    hook: str
    path: Path  # the sidecar or the error envelope
    job_id: str
    outcome: str  # "succeeded" or "failed"
    timeout: float


@dataclass(frozen=True)
class Ran:
    """How a hook run ended: ``ran`` (exit 0), ``exit`` (another code or a signal), ``timeout``
    (killed at its deadline) or ``spawn`` (it could not be started)."""

    result: Result
    exit_code: int | None
    output: str
    output_bytes: int
    seconds: float
    error: str = ""


def environment(call: Call) -> dict[str, str]:
    """The daemon's environment and the two variables the contract names."""
    return {**os.environ, "SIR_CONVERT_JOB_ID": call.job_id, "SIR_CONVERT_OUTCOME": call.outcome}


class _Tail:
    """The last ``OUTPUT_KEEP`` bytes of a pipe, and how many came in all."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.total = 0

    def read(self, fd: int) -> bool:
        """One read of what is there; False at the end of the pipe."""
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return False
        self.total += len(chunk)
        self.kept += chunk
        del self.kept[:-OUTPUT_KEEP]
        return bool(chunk)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace").strip()
        return ("…" + text) if self.total > len(self.kept) else text


def run(call: Call, kill_at: float) -> Ran:
    """Run ``call``'s hook; at ``kill_at`` (monotonic) its process group is killed, SIGTERM
    first. Never raises for anything the hook does."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [call.hook, str(call.path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(call),
            start_new_session=True,
        )
    except OSError as exc:
        return Ran("spawn", None, "", 0, 0.0, error=f"{type(exc).__name__}: {exc}")
    tail = _Tail()
    with process:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        open_pipe = _follow(process.pid, fd, tail, kill_at, True)
        timed_out = not _exited(process.pid)
        if timed_out:
            _signal_group(process.pid, signal.SIGTERM)
            open_pipe = _follow(process.pid, fd, tail, time.monotonic() + TERM_GRACE, open_pipe)
        _signal_group(process.pid, signal.SIGKILL)  # what is left of it, or what it left
        if open_pipe:
            _follow(-1, fd, tail, time.monotonic() + DRAIN_SECONDS, open_pipe)
        code = process.wait()
    seconds = round(time.monotonic() - started, 3)
    if timed_out:
        return Ran("timeout", None, tail.text(), tail.total, seconds)
    return Ran("ran" if code == 0 else "exit", code, tail.text(), tail.total, seconds)


def _follow(pid: int, fd: int, tail: _Tail, until: float, open_pipe: bool) -> bool:
    """Read output until ``pid`` exits (-1: until the pipe ends) or ``until`` passes; whether
    the pipe is still open. What an exited hook wrote last is read by the drain after it."""
    while pid < 0 or not _exited(pid):
        left = until - time.monotonic()
        if left <= 0 or (pid < 0 and not open_pipe):
            break
        if not open_pipe:
            time.sleep(min(left, _POLL))
            continue
        ready, _, _ = select.select([fd], [], [], min(left, _POLL))
        if ready:
            open_pipe = tail.read(fd)
    return open_pipe


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended, leaving it unreaped."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
