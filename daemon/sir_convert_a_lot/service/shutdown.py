"""The stop steps run in their order whatever one of them raises.

A step that fails (an unexpected OSError from a part that was stopping, as issue 26's EBADF
was) must not skip those after it: the heartbeat must end, the stop be noted and the lease
removed, or another instance waits for a stale lease and ``status`` shows a daemon that is gone.
The failure is logged and the daemon exits 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sir_convert_a_lot import logs
from sir_convert_a_lot.intake.watch import InboxWatcher
from sir_convert_a_lot.jobs.leases import Instances
from sir_convert_a_lot.versions import build_id, package_version

log = logs.get()

Step = tuple[str, Callable[[], object]]


def in_order(steps: Iterable[Step]) -> bool:
    """Run each named step in order; whether every one ran without raising."""
    clean = True
    for name, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the steps after it must run all the same
            clean = False
            log.error(
                "stop_step_failed",
                step=name,
                error=f"{type(error).__name__}: {error}",
                effect="the remaining stop steps run all the same; the daemon exits 1",
            )
    return clean


def stop_watching(watcher: InboxWatcher | None) -> None:
    """Watchdog's own races at its stop are no fault of the daemon's, so they do not make it
    exit 1; but an operator who finds an observer thread left behind needs the reason."""
    if watcher is None:
        return
    try:
        watcher.stop()
    except Exception as error:  # noqa: BLE001 - any observer failure here is only noted
        log.warning(
            "watcher_stop_failed",
            error=f"{type(error).__name__}: {error}",
            effect="the stop goes on; the inbox is no longer watched either way",
        )


def note_stop(instances: Instances, started_at: float) -> None:
    """The note ``status`` reads once the lease is gone; without it, it cannot say when."""
    try:
        instances.record_stop(
            {"version": package_version(), "build": build_id(), "started_at": started_at}
        )
    except OSError as exc:
        log.warning("stop_note_failed", error=str(exc), effect="status cannot say when")
