"""The folders themselves: present and writable, laid out without a watch loop, the share's
sentinel, enough inotify watches and enough free disk."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import check_overlaps, check_same_filesystem
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, WARN, Check

GIB = 1024**3
DISK_FAIL_BYTES = 1 * GIB
DISK_WARN_BYTES = 5 * GIB


def folders(config: Config) -> Iterator[Check]:
    sentinel_note = _sentinel(config)
    for key, path in config.paths.named().items():
        yield _folder(f"paths.{key}", path, under_share=bool(config.watch.sentinel))
    if sentinel_note is not None:
        yield sentinel_note


# The modes the daemon itself gives the folders it creates: share users write the inbox
# (through the group, UMask=0002 under a setgid parent) and only read results; the state is
# the service's alone.
_FOLDER_MODES = {
    "paths.inbox": "2775",
    "paths.outbox": "0755",
    "paths.failed": "0755",
    "paths.archive": "0755",
    "paths.state": "0750",
}
# Folders whose contents retry and the daemon act on: nobody but the service user may write them.
_SERVICE_ONLY = ("paths.failed", "paths.state")


def _folder(name: str, path: Path, under_share: bool) -> Check:
    """One configured folder: it must exist, be a folder and be writable by this user."""
    if not os.path.lexists(path):
        where = "mount the share that holds it, or create it" if under_share else "create it"
        return Check(
            FAIL,
            name,
            f"{path} does not exist",
            f"{where}: install -d -o sir-convert -g sir-convert -m {_FOLDER_MODES[name]} {path}",
        )
    if not path.is_dir():
        return Check(FAIL, name, f"{path} is not a folder", f"move it away; mkdir {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        return Check(
            FAIL,
            name,
            f"{path} is not writable by this user ({os.getuid()})",
            f"chown -R sir-convert:sir-convert {path} (or run doctor as the service user)",
        )
    if name in _SERVICE_ONLY and os.stat(path).st_mode & 0o022:
        return Check(
            FAIL,
            name,
            f"{path} is writable by group or others: a share user could plant or replace what "
            "the daemon and retry act on",
            f"chmod go-w {path}",
        )
    return Check(OK, name, str(path))


def _sentinel(config: Config) -> Check | None:
    """The share guard: without its sentinel the daemon refuses to start (exit 1)."""
    if not config.watch.sentinel:
        return None
    sentinel = config.paths.inbox / config.watch.sentinel
    if os.path.lexists(sentinel):
        return Check(OK, "share sentinel", f"{sentinel} present")
    return Check(
        FAIL,
        "share sentinel",
        f"{sentinel} missing: is the share mounted? The daemon will not start without it",
        f"mount the share, or create the sentinel: touch {sentinel}",
    )


def layout(config: Config) -> Iterator[Check]:
    # resolve() without strict: folders that do not exist yet are still compared by name.
    resolved = {k: p.resolve() for k, p in config.paths.named().items()}
    try:
        check_overlaps(resolved)
    except ConfigError as exc:
        yield Check(FAIL, "no watch loop", str(exc), "change the paths in the config")
    else:
        yield Check(OK, "no watch loop", "yes")
    inbox, state = config.paths.inbox, config.paths.state
    if not (inbox.is_dir() and state.is_dir()):
        yield Check(
            WARN,
            "state on the inbox's filesystem",
            "cannot tell until paths.inbox and paths.state exist",
            "create the folders (see above), then run doctor again",
        )
        return
    try:
        check_same_filesystem(inbox, state)
    except ConfigError as exc:
        yield Check(
            FAIL, "state on the inbox's filesystem", str(exc), "change the paths in the config"
        )
    else:
        yield Check(OK, "state on the inbox's filesystem", "yes")


def inotify_limits(config: Config) -> Iterator[Check]:
    if config.watch.mode != "inotify":
        yield Check(OK, "inotify limits", "polling mode: not used")
        return
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        yield Check(WARN, "inotify limits", "cannot read /proc/sys/fs/inotify/max_user_watches")
        return
    folders = count_folders(config.paths.inbox)
    detail = f"{folders} folders to watch, limit {limit} per user"
    if folders >= limit:
        yield Check(
            FAIL,
            "inotify limits",
            detail,
            'sysctl fs.inotify.max_user_watches=524288, or watch.mode = "polling"',
        )
    elif folders >= limit // 2:
        yield Check(WARN, "inotify limits", detail, "sysctl fs.inotify.max_user_watches=524288")
    else:
        yield Check(OK, "inotify limits", detail)


def count_folders(root: Path) -> int:
    count = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return count


def free_disk(config: Config) -> Iterator[Check]:
    seen: set[int] = set()
    for key in ("outbox", "state", "archive", "failed"):
        path = getattr(config.paths, key)
        probe_path = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        device = os.stat(probe_path).st_dev
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(probe_path).free
        detail = f"{free // (1024**2)} MiB free for paths.{key} ({probe_path})"
        if free < DISK_FAIL_BYTES:
            yield Check(FAIL, "free disk", detail, "free space or move the folder")
        elif free < DISK_WARN_BYTES:
            yield Check(WARN, "free disk", detail, "free space soon")
        else:
            yield Check(OK, "free disk", detail)
