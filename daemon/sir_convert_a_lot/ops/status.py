"""``sir-convert status``: what the spool and its instances are doing, gathered and rendered.

It reads only the shared folders (leases, stop notes, claims, failure records), so it works from
any host that mounts them, whether or not a daemon runs there.
"""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.fsutil import walk_files
from sir_convert_a_lot.intake.watch import scan
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.versions import build_id, package_version

RECENT_FAILURES = 10


def gather_status(config: Config) -> dict[str, Any]:
    spool = Spool(config.paths, instance="status")
    instances, blocked = _instances(spool, config.instances.lease_seconds)
    stopped = _stopped(spool, {inst["instance"] for inst in instances})
    claimed_by = {owner.name: len(_folders(owner)) for owner in _folders(spool.claimed_root)}
    recent = _recent_failures(spool)
    return {
        "missing": _missing_folders(config),
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
        "installed": {"version": package_version(), "build": build_id()},
    }


def _missing_folders(config: Config) -> dict[str, str]:
    """``paths.KEY`` -> path for each configured folder that is not there (or not a folder):
    its counts read 0, which would hide an unmounted share or a folder never created."""
    missing = {}
    for key, path in config.paths.named().items():
        try:
            is_folder = stat.S_ISDIR(os.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_folder = False
        except OSError:  # not this user's to look at: the counts say so in their own words
            is_folder = True
        if not is_folder:
            missing[f"paths.{key}"] = str(path)
    return missing


def _instances(
    spool: Spool, lease_seconds: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every instance with a lease, and the blocked files the live ones report."""
    instances = []
    blocked: list[dict[str, Any]] = []
    for lease in sorted(spool.instances.leases(), key=lambda lease: lease.instance):
        data = dict(lease.data)
        live = lease.age_seconds <= lease_seconds
        if live:
            blocked += [{**entry, "instance": lease.instance} for entry in _blocked_of(data)]
        instances.append(_instance(lease.instance, live, lease.age_seconds, data))
    return instances, blocked


def _instance(name: str, live: bool, age_seconds: float, data: dict[str, Any]) -> dict[str, Any]:
    instance: dict[str, Any] = {
        "instance": name,
        "live": live,
        "heartbeat_age_seconds": round(age_seconds, 1),
        "host": data.get("host"),
        "pid": data.get("pid"),
        "state": data.get("state"),
        "activity": data.get("activity"),
        "source": data.get("source"),
        "page": data.get("page"),
        "pages": data.get("pages"),
        "jobs": [_with_running_time(job) for job in _jobs_of(data)],
        "queued": data.get("queued"),
        "arriving": data.get("arriving") or [],
        "arriving_count": data.get("arriving_count") or 0,
        "blocked": data.get("blocked_count") or 0,
        "deferred": data.get("deferred") or [],
        "lock": data.get("lock"),
        "cpu_stages": data.get("cpu_stages") or [],
        "gpu": data.get("gpu"),
        "version": data.get("version"),
        "build": data.get("build"),
        "worker": data.get("worker") if isinstance(data.get("worker"), dict) else None,
    }
    if data.get("engine") == "ray":  # a local engine's instance reads as it always did
        instance["engine"] = "ray"
        instance["actors"] = _actors_of(data, instance["jobs"])
    return instance


def _actors_of(lease: dict[str, Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Ray actors a lease lists, each job in them with how long it has run (from the
    instance's own list of jobs, which says since when)."""
    entries = lease.get("actors")
    if not isinstance(entries, list):
        return []
    by_id = {job.get("job_id"): job for job in jobs}
    actors = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        held = [j for j in entry.get("jobs") or [] if isinstance(j, dict)]
        actors.append({**entry, "jobs": [{**j, **by_id.get(j.get("job_id"), {})} for j in held]})
    return actors


def _stopped(spool: Spool, with_lease: set[str]) -> list[dict[str, Any]]:
    """Instances that said they stopped and hold no lease now."""
    return [
        {
            "instance": note.get("instance"),
            "host": note.get("host"),
            "version": note.get("version"),
            "build": note.get("build"),
            "stopped_at": note.get("stopped_at"),
        }
        for note in spool.instances.stops()
        if note.get("instance") not in with_lease
    ]


def _recent_failures(spool: Spool) -> list[dict[str, Any]]:
    failures = spool.disposal.failure_records()
    return [
        {
            "job_id": record.get("job_id"),
            "source": record.get("relative_path"),
            "code": record.get("code"),
            "message": record.get("message"),
            "failed_at": record.get("failed_at"),
        }
        for record in reversed(failures[-RECENT_FAILURES:])
    ]


def _jobs_of(lease: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job the instance converts; a lease written before several could run names one."""
    entries = lease.get("jobs")
    if isinstance(entries, list):
        return [entry for entry in entries if isinstance(entry, dict) and "source" in entry]
    if lease.get("activity") != "converting":
        return []
    return [{key: lease.get(key) for key in ("job_id", "source", "page", "pages")}]


def _with_running_time(job: dict[str, Any]) -> dict[str, Any]:
    """The job with ``seconds`` it has run, as of now: from its ``started_at`` (wall clock),
    else as the lease's last heartbeat said (a lease from before ``started_at`` has neither)."""
    started_at = job.get("started_at")
    if isinstance(started_at, int | float) and not isinstance(started_at, bool) and started_at:
        return {**job, "seconds": round(max(0.0, time.time() - started_at), 1)}
    return job


def _job_text(job: dict[str, Any]) -> str:
    """``name (page 3/12, 1 min 05 s)``: the page once the worker has said, and how long the
    job has run where the lease says."""
    shown = []
    if job.get("pages"):
        shown.append(f"page {job.get('page')}/{job.get('pages')}")
    seconds = job.get("seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        shown.append(_running(seconds))
    return f"{job.get('source')} ({', '.join(shown)})" if shown else str(job.get("source"))


def _running(seconds: float) -> str:
    """How long a job has run: ``42 s``, ``3 min 07 s``, ``2 h 05 min``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


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
    "zip_end_not_arrived": "its end has not arrived",
    "zip_directory_not_arrived": "its table of contents has not arrived",
    "png_end_not_arrived": "its end has not arrived",
    "jpeg_end_not_arrived": "its end has not arrived",
    "tiff_ifd_not_arrived": "one of its pages has not arrived",
    "tiff_data_not_arrived": "the pixels of one of its pages have not arrived",
    "shorter_than_declared": "it is shorter than its header says",
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


def _converting_lines(inst: dict[str, Any], jobs: list[dict[str, Any]]) -> list[str]:
    """Under the instance: its Ray actors and the jobs in each, or each job of several."""
    if "actors" not in inst:
        return [f"    converting: {_job_text(job)}" for job in jobs] if len(jobs) > 1 else []
    held = {job.get("job_id") for actor in inst["actors"] for job in actor["jobs"]}
    return _actor_lines(inst["actors"]) + [
        f"    converting: {_job_text(job)}, no actor yet"
        for job in jobs
        if job.get("job_id") not in held
    ]


def _actor_lines(actors: list[dict[str, Any]]) -> list[str]:
    """``engine ray``, then each actor: where it runs, its GPUs, and what it converts."""
    lines = [f"    engine ray: {len(actors)} actor{'s' if len(actors) != 1 else ''}"]
    for actor in actors:
        gpus = actor.get("gpus") or []
        device = "GPU " + ",".join(str(g) for g in gpus) if gpus else "CPU"
        node = str(actor.get("node_id") or "")[:8] or "?"
        restarts = int(actor.get("restarts") or 0)
        memory = actor.get("memory_bytes")
        held = f", {gib(memory)} resident" if isinstance(memory, int) else ""
        jobs = actor.get("jobs") or []
        named = [{**job, "source": job.get("source") or job.get("job_id")} for job in jobs]
        doing = "converting " + ", ".join(_job_text(job) for job in named) if jobs else "idle"
        lines.append(
            f"    actor {actor.get('actor')}: {actor.get('host') or '?'} (node {node}), "
            f"{device}, pid {actor.get('pid')}, {'alive' if actor.get('alive') else 'down'}, "
            f"{restarts} restart{'s' if restarts != 1 else ''}{held}, {doing}"
        )
    return lines


def render_status(status: dict[str, Any]) -> str:
    queue = status["queue"]
    missing = status.get("missing") or {}
    inbox = "MISSING" if "paths.inbox" in missing else f"{queue['inbox']} waiting"
    failed = "MISSING" if "paths.failed" in missing else queue["failed"]
    lines = [f"inbox: {inbox}   claimed: {queue['claimed']}   failed: {failed}"]
    lines += [f"missing: {key} {path}" for key, path in missing.items()]
    lines += ["", "instances:"]
    if not any(inst["live"] for inst in status["instances"]):
        lines.append(f"  {_nothing_running(status.get('stopped_instances') or [])}")
    lines.append(f"  installed here: {_release(status.get('installed') or {})}")
    for inst in status["instances"]:
        liveness = "live" if inst["live"] else f"stale ({inst['heartbeat_age_seconds']} s)"
        jobs = inst.get("jobs") or []
        if len(jobs) == 1:
            doing = f"converting {_job_text(jobs[0])}"
        elif jobs:
            doing = f"converting {len(jobs)} files"
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
            f"{blocked}, {gpu_text}, lock {inst.get('lock')}{_exempt(inst)}, "
            f"{_release(inst)}, pid {inst.get('pid')} on "
            f"{inst.get('host')}"
        )
        lines += _worker_lines(inst.get("worker"))
        lines += _converting_lines(inst, jobs)
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


def gib(size: int) -> str:
    """``3.6 GiB``, ``512 MiB``: a memory figure as an operator reads it."""
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GiB"
    return f"{size / (1 << 20):.0f} MiB"


def worker_memory_text(worker: dict[str, Any]) -> str:
    """The worker's memory next to the limits that act on it: its limit (a conversion past it
    fails), its recycling thresholds (past them it is replaced between jobs), and on a GPU what
    torch holds after the last job."""
    rss, limit = worker.get("memory_bytes"), worker.get("max_worker_memory_bytes")
    parts = [f"{gib(rss)} resident" if isinstance(rss, int) else "memory not known"]
    parts.append(f"limit {gib(limit)}" if limit else "no limit")
    above, after = worker.get("recycle_above_bytes"), worker.get("recycle_after_jobs")
    recycling = [f"above {gib(above)}"] if above else []
    recycling += [f"after {after} jobs"] if after else []
    jobs = worker.get("jobs_since_start") or 0
    if recycling:
        parts.append(f"recycled {' or '.join(recycling)} ({jobs} since its start)")
    else:
        parts.append(f"never recycled ({jobs} jobs since its start)")
    recycles = worker.get("recycles") or {}
    if recycles:
        parts.append(", ".join(f"{n} recycled for {why}" for why, n in sorted(recycles.items())))
    allocated, reserved = worker.get("gpu_allocated_bytes"), worker.get("gpu_reserved_bytes")
    if isinstance(allocated, int) and isinstance(reserved, int):
        parts.append(f"GPU {gib(allocated)} allocated, {gib(reserved)} reserved")
    return ", ".join(parts)


def _worker_lines(worker: object) -> list[str]:
    return [f"    worker: {worker_memory_text(worker)}"] if isinstance(worker, dict) else []


def _release(record: dict[str, Any]) -> str:
    """``version 0.1.0, build 1a2b3c4d5e6f``: the build tells two installs of one version
    apart (a git pull that did not bump it); a record from before builds were kept has none."""
    build = record.get("build") or "unknown"
    return f"version {record.get('version') or 'unknown'}, build {build}"


def _nothing_running(stopped: list[dict[str, Any]]) -> str:
    """What to say when no instance is live: when the last one stopped, if any note says so."""
    if not stopped:
        return "no instance is running"
    last = stopped[0]
    when = datetime.fromtimestamp(float(last["stopped_at"]), tz=UTC)
    ago = max(0.0, time.time() - float(last["stopped_at"]))
    return (
        f"no instance is running; the last, {last['instance']} on {last.get('host')} "
        f"({_release(last)}), stopped at "
        f"{when:%Y-%m-%d %H:%M:%S} UTC ({_duration(ago)} ago)"
    )


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _exempt(instance: dict[str, Any]) -> str:
    """The stages a decision record lets run on the CPU under the lock, if any."""
    stages = instance.get("cpu_stages") or []
    return f" (on the CPU by decision: {', '.join(stages)})" if stages else ""
