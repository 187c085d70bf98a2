"""What operators ask of a spool without a daemon: ``status`` and ``retry``.

Both read only the shared folders (leases, claims, failure records), so they work from any host
that mounts them, whether or not a daemon runs there.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.fsutil import make_dirs_no_symlinks, move_to_free_name
from sir_convert_a_lot.names import decode_from_record, display
from sir_convert_a_lot.spool import Spool, walk_files
from sir_convert_a_lot.watch import scan

RECENT_FAILURES = 10


def gather_status(config: Config) -> dict[str, Any]:
    spool = Spool(config.paths, instance="status")
    instances = []
    for lease in sorted(spool.leases(), key=lambda lease: lease.instance):
        data = dict(lease.data)
        instances.append(
            {
                "instance": lease.instance,
                "live": lease.age_seconds <= config.lease_seconds,
                "heartbeat_age_seconds": round(lease.age_seconds, 1),
                "host": data.get("host"),
                "pid": data.get("pid"),
                "state": data.get("state"),
                "activity": data.get("activity"),
                "source": data.get("source"),
                "page": data.get("page"),
                "pages": data.get("pages"),
                "queued": data.get("queued"),
                "arriving": data.get("arriving") or [],
                "arriving_count": data.get("arriving_count") or 0,
                "lock": data.get("lock"),
                "gpu": data.get("gpu"),
                "version": data.get("version"),
            }
        )
    with_lease = {inst["instance"] for inst in instances}
    stopped = [
        {
            "instance": note.get("instance"),
            "host": note.get("host"),
            "version": note.get("version"),
            "stopped_at": note.get("stopped_at"),
        }
        for note in spool.stops()
        if note.get("instance") not in with_lease
    ]
    claimed_by: dict[str, int] = {}
    for owner in _folders(spool.claimed_root):
        claimed_by[owner.name] = len(_folders(owner))
    failures = spool.failure_records()
    recent = [
        {
            "job_id": record.get("job_id"),
            "source": record.get("relative_path"),
            "code": record.get("code"),
            "message": record.get("message"),
            "failed_at": record.get("failed_at"),
        }
        for record in reversed(failures[-RECENT_FAILURES:])
    ]
    return {
        "queue": {
            "inbox": sum(1 for _ in scan(config.paths.inbox, config.watch.ignore)),
            "claimed": sum(claimed_by.values()),
            "claimed_by_instance": claimed_by,
            "failed": sum(1 for _ in walk_files(config.paths.failed)),
        },
        "instances": instances,
        "stopped_instances": stopped,
        "recent_failures": recent,
    }


def _folders(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


_WAITING_FOR = {
    "open_for_writing": "a writer on this host still has it open",
    "empty_file": "empty so far",
    "head_not_arrived": "only zeros so far",
    "no_eof_marker": "its end has not arrived",
    "xref_not_arrived": "its cross-reference table has not arrived",
}


def _arriving_lines(inst: dict[str, Any]) -> list[str]:
    """Files the instance sees but does not claim yet, and why (a copy still running)."""
    shown = inst.get("arriving") or []
    lines = [
        f"    arriving: {entry.get('source')} ({_WAITING_FOR.get(entry.get('waiting_for'), '?')})"
        for entry in shown
    ]
    more = int(inst.get("arriving_count") or 0) - len(shown)
    if more > 0:
        lines.append(f"    arriving: {more} more")
    return lines


def render_status(status: dict[str, Any]) -> str:
    queue = status["queue"]
    lines = [
        f"inbox: {queue['inbox']} waiting   claimed: {queue['claimed']}   "
        f"failed: {queue['failed']}",
        "",
        "instances:",
    ]
    if not any(inst["live"] for inst in status["instances"]):
        lines.append(f"  {_nothing_running(status.get('stopped_instances') or [])}")
    for inst in status["instances"]:
        liveness = "live" if inst["live"] else f"stale ({inst['heartbeat_age_seconds']} s)"
        if inst["activity"] == "converting":
            doing = f"converting {inst['source']}"
            if inst.get("pages"):
                doing += f" (page {inst['page']}/{inst['pages']})"
        else:
            doing = inst.get("state") or "unknown"
            if doing == "ready":
                doing = "idle"
        gpu = inst.get("gpu") or {}
        device = (gpu.get("device") or {}).get("name") if gpu.get("cuda_available") else None
        gpu_text = f"GPU {device}" if device else f"no GPU ({gpu.get('reason', 'unknown')})"
        lines.append(
            f"  {inst['instance']}: {liveness}, {doing}, {inst.get('queued') or 0} queued, "
            f"{gpu_text}, lock {inst.get('lock')}, version {inst.get('version') or 'unknown'}, "
            f"pid {inst.get('pid')} on {inst.get('host')}"
        )
        lines += _arriving_lines(inst)
    lines += ["", "recent failures:"]
    if not status["recent_failures"]:
        lines.append("  (none)")
    for failure in status["recent_failures"]:
        lines.append(f"  {failure['source']}: {failure['code']} - {failure['message']}")
    return "\n".join(lines)


def _nothing_running(stopped: list[dict[str, Any]]) -> str:
    """What to say when no instance is live: when the last one stopped, if any note says so."""
    if not stopped:
        return "no instance is running"
    last = stopped[0]
    when = datetime.fromtimestamp(float(last["stopped_at"]), tz=UTC)
    ago = max(0.0, time.time() - float(last["stopped_at"]))
    return (
        f"no instance is running; the last, {last['instance']} on {last.get('host')} "
        f"(version {last.get('version') or 'unknown'}), stopped at "
        f"{when:%Y-%m-%d %H:%M:%S} UTC ({_duration(ago)} ago)"
    )


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


@dataclass(frozen=True)
class Retried:
    source: str
    back_in_inbox: str | None
    problem: str | None = None


def retry(config: Config, names: list[str], everything: bool) -> list[Retried]:
    """Move failed originals back into the inbox under their original relative folder."""
    spool = Spool(config.paths, instance="retry")
    results: list[Retried] = []
    wanted = set(names)
    for record in spool.failure_records():
        relative = decode_from_record(record["relative_path_b64"])
        failed_rel = decode_from_record(record["failed_path_b64"])
        shown = display(relative)
        if not everything and not wanted & {
            shown,
            display(Path(relative).name),
            display(failed_rel),
            str(record.get("job_id")),
        }:
            continue
        record_path = Path(record["_record"])
        source = config.paths.failed / failed_rel
        if not os.path.lexists(source):
            with contextlib.suppress(FileNotFoundError):
                record_path.unlink()
            results.append(Retried(shown, None, "the failed original is no longer there"))
            continue
        folder = make_dirs_no_symlinks(config.paths.inbox, Path(relative).parent.parts)
        target = move_to_free_name(source, folder, Path(relative).name)
        with contextlib.suppress(FileNotFoundError):
            record_path.unlink()
        results.append(Retried(shown, display(str(target.relative_to(config.paths.inbox)))))
    return results
