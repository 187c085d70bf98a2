"""Run the real daemon, but SIGKILL it at one named point of a job's life, or SIGSTOP it once
at one named stage (``stop:STAGE``).

Usage: python -m tests.crash_harness POINT|stop:STAGE [sir-convert arguments...]

The hooks live here, in the tests, by wrapping the daemon's own functions: the product has no
crash switches. A SIGKILL leaves exactly the on-disk state of that instant, which is what the
restart has to recover from. A SIGSTOP freezes every thread, the heartbeat too, so the lease
runs out while the instance still believes it holds its job: a stale instance, once SIGCONTed.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from sir_convert_a_lot.engine import supervisor
from sir_convert_a_lot.jobs import claims, endings, publish, spool
from sir_convert_a_lot.jobs.job import Phase
from sir_convert_a_lot.ops.cli import main


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(owner: Any, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _die()
        return result

    setattr(owner, name, wrapped)


def _before(owner: Any, name: str) -> None:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _die()

    setattr(owner, name, wrapped)


def _between_markdown_and_sidecar(write_sidecar_tmp: bool) -> None:
    original = publish._write_new

    def wrapped(dir_fd: int, name: str, content: bytes) -> None:
        is_sidecar = (
            name.startswith(publish.TMP_PREFIX)
            and name.endswith(publish.SIDECAR)
            and not name.endswith(publish.ERROR)
        )
        if is_sidecar and not write_sidecar_tmp:
            _die()
        original(dir_fd, name, content)
        if is_sidecar:
            _die()

    publish._write_new = wrapped


def _after_first_picture_temporary() -> None:
    """Die once a picture's temporary is written inside ``<stem>_artifacts/``, before its
    rename: a half-done picture set and no Markdown."""
    original = publish._write_new

    def wrapped(dir_fd: int, name: str, content: bytes) -> None:
        original(dir_fd, name, content)
        if name.startswith(publish.TMP_PREFIX) and name.endswith(".png"):
            _die()

    publish._write_new = wrapped


POINTS: dict[str, Callable[[], None]] = {
    "after_claim": lambda: _after(claims.Claims, "claim"),
    "after_attempt_started": lambda: _after(spool.Spool, "begin_attempt"),
    "before_sidecar": lambda: _between_markdown_and_sidecar(write_sidecar_tmp=False),
    "sidecar_tmp_written": lambda: _between_markdown_and_sidecar(write_sidecar_tmp=True),
    "before_archive": lambda: _before(spool.Spool, "archive"),
    "before_fail_disposal": lambda: _before(spool.Spool, "fail"),
    "after_stem_chosen": lambda: _after(endings.Endings, "_named"),
    "picture_tmp_written": _after_first_picture_temporary,
    "after_pictures": lambda: _after(endings, "write_pictures"),
}


def _stop_once() -> Callable[[], None]:
    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            os.kill(os.getpid(), signal.SIGSTOP)

    return stop


def _stop_around_commit(after: bool) -> None:
    """Stop just before (or just after) the record update that commits a job's outputs."""
    original = spool.Spool.update
    stop = _stop_once()

    def wrapped(self: spool.Spool, job: Any, **changes: Any) -> Any:
        commits = changes.get("phase") in (Phase.PUBLISHED, Phase.FAILED_PUBLISHED)
        if commits and not after:
            stop()
        result = original(self, job, **changes)
        if commits and after:
            stop()
        return result

    spool.Spool.update = wrapped  # type: ignore[method-assign]


def _stop_after(owner: Any, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    stop = _stop_once()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        stop()
        return result

    setattr(owner, name, wrapped)


STAGES: dict[str, Callable[[], None]] = {
    "queued": lambda: _stop_after(claims.Claims, "claim"),
    "converting": lambda: _stop_after(supervisor.Engine, "convert"),
    "after_stem_chosen": lambda: _stop_after(endings.Endings, "_named"),
    "before_commit": lambda: _stop_around_commit(after=False),
    "after_commit": lambda: _stop_around_commit(after=True),
}


if __name__ == "__main__":
    point = sys.argv[1]
    if point.startswith("stop:"):
        STAGES[point.removeprefix("stop:")]()
    else:
        POINTS[point]()
    sys.exit(main(sys.argv[2:]))
