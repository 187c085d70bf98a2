"""What operators ask of a spool without a daemon: ``status`` and ``retry``.

Both read only the shared folders (leases, claims, failure records), so they work from any host
that mounts them, whether or not a daemon runs there.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError, ErrorCode
from sir_convert_a_lot.folders import state_problem
from sir_convert_a_lot.fsutil import (
    OutsideFolder,
    inside_folder,
    make_dirs_no_symlinks,
    move_to_free_name,
)
from sir_convert_a_lot.intake.watch import scan
from sir_convert_a_lot.jobs.spool import Spool, walk_files
from sir_convert_a_lot.names import decode_from_record, display

RECENT_FAILURES = 10


def gather_status(config: Config) -> dict[str, Any]:
    spool = Spool(config.paths, instance="status")
    instances = []
    blocked: list[dict[str, Any]] = []
    for lease in sorted(spool.leases(), key=lambda lease: lease.instance):
        data = dict(lease.data)
        live = lease.age_seconds <= config.instances.lease_seconds
        if live:
            blocked += [{**entry, "instance": lease.instance} for entry in _blocked_of(data)]
        instances.append(
            {
                "instance": lease.instance,
                "live": live,
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
                "blocked": data.get("blocked_count") or 0,
                "deferred": data.get("deferred") or [],
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
        "blocked": blocked,
        "recent_failures": recent,
    }


def _blocked_of(lease: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocked files a lease lists (a lease is data: keep only well-formed entries)."""
    entries = lease.get("blocked")
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict) and "source" in entry]


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
        blocked = f", {inst['blocked']} blocked" if inst.get("blocked") else ""
        lines.append(
            f"  {inst['instance']}: {liveness}, {doing}, {inst.get('queued') or 0} queued"
            f"{blocked}, {gpu_text}, lock {inst.get('lock')}, "
            f"version {inst.get('version') or 'unknown'}, pid {inst.get('pid')} on "
            f"{inst.get('host')}"
        )
        lines += _arriving_lines(inst)
        lines += [
            f"    deferred: {entry.get('source')} ({entry.get('why')}), next try in "
            f"{entry.get('retry_in_seconds')} s"
            for entry in inst.get("deferred") or []
        ]
    if status.get("blocked"):
        lines += ["", "blocked in the inbox (the service user cannot move them):"]
        for entry in status["blocked"]:
            lines.append(
                f"  {entry['source']}: {entry.get('errno')} {entry.get('error')}, tried "
                f"{entry.get('tries')}x, next try in {entry.get('retry_in_seconds')} s"
            )
            lines.append(f"    fix: {entry.get('fix')}")
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
    problem: str | None = None  # could not be moved (refused, gone)
    skipped: str | None = None  # deliberately left in failed/ (why)


@dataclass(frozen=True)
class RetrySelection:
    """Which failures ``retry`` moves. Names pick files whatever their code; ``--all`` picks
    every failure whose code is retryable (the same file may succeed later), or every one with
    ``include_permanent``; ``codes`` narrows either to those codes (and alone means ``--all``
    of those codes, permanent ones included: the operator named them)."""

    names: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    include_permanent: bool = False

    def reaches(self, code: str | None) -> bool:
        return not self.codes or code in self.codes

    def skip_reason(self, code: str | None) -> str | None:
        """Why a failure that was reached stays in failed/ (None: it is moved)."""
        if self.names or self.codes or self.include_permanent:
            return None
        if code is None or code not in _CODES:
            return "its record names no known error code; retry it by name"
        if not ErrorCode(code).retryable:
            return (
                f"{code} is permanent (the file itself must change); retry it by name, with "
                f"--code {code}, or pass --include-permanent"
            )
        return None


_CODES = frozenset(code.value for code in ErrorCode)


def retry(config: Config, selection: RetrySelection) -> list[Retried]:
    """Move the selected failed originals back into the inbox under their original relative
    folder; the others that ``--all`` reached are reported as skipped, with why. Every path a
    record names is proven to lie inside its folder first: a record is data that whoever could
    write the state folder could have forged, and retry often runs as root."""
    spool = Spool(config.paths, instance="retry")
    refuse_untrusted_state(config.paths.state, spool.failures_root)
    results: list[Retried] = []
    for record in spool.failure_records():
        try:
            relative = decode_from_record(record["relative_path_b64"])
            failed_rel = decode_from_record(record["failed_path_b64"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue  # damaged: nothing in it can be matched or moved
        shown = display(relative)
        if selection.names and not selection.names & {
            shown,
            display(Path(relative).name),
            display(failed_rel),
            str(record.get("job_id")),
        }:
            continue
        code = record.get("code")
        code = code if isinstance(code, str) else None
        if not selection.reaches(code):
            continue
        why = selection.skip_reason(code)
        if why is not None:
            results.append(Retried(shown, None, skipped=why))
            continue
        results.append(_retry_one(config, record, relative, failed_rel))
    return results


def refuse_untrusted_state(state: Path, failures: Path) -> None:
    """Records in a state folder others may write could name any file: act on none of them."""
    for folder in (state, failures):
        with contextlib.suppress(FileNotFoundError):
            os.lstat(folder)  # a caller who may not look inside gets the plain PermissionError
        problem = state_problem(folder, owner=None)
        if problem:
            raise ConfigError(f"paths.state: {problem}; retry moved nothing")


def _retry_one(config: Config, record: dict[str, Any], relative: str, failed_rel: str) -> Retried:
    shown = display(relative)
    record_path = Path(record["_record"])
    if not record.get("_trusted"):
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} was not written by the daemon (another "
            "user owns it); nothing was moved",
        )
    try:
        source = inside_folder(config.paths.failed, failed_rel, "its failed_path")
        inside_folder(config.paths.inbox, relative, "its relative_path")
    except OutsideFolder as exc:
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} is forged or damaged: {exc}; "
            "nothing was moved",
        )
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            record_path.unlink()
        return Retried(shown, None, "the failed original is no longer there")
    if not stat.S_ISREG(info.st_mode):
        return Retried(
            shown,
            None,
            "the failed original is not a regular file (a symbolic link?); "
            "retry moves regular files only",
        )
    folder = _inbox_folder(config.paths.inbox, Path(relative).parent.parts)
    target = move_to_free_name(source, folder, Path(relative).name)
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    return Retried(shown, display(str(target.relative_to(config.paths.inbox))))


def _inbox_folder(inbox: Path, parts: tuple[str, ...]) -> Path:
    """``inbox/parts...``; the folders made here take the inbox's owner, group and mode. retry
    often runs as root, and a root-owned 0755 folder would block the very file it brings back:
    the service user could not move it out of there."""
    model = os.stat(inbox)
    current = inbox
    for part in parts:
        created = not os.path.lexists(current / part)
        current = make_dirs_no_symlinks(current, (part,))
        if created:
            with contextlib.suppress(OSError):  # only root may give a folder away
                os.chown(current, model.st_uid, model.st_gid, follow_symlinks=False)
            with contextlib.suppress(OSError):
                os.chmod(current, stat.S_IMODE(model.st_mode))
    return current
