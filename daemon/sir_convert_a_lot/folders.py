"""Start-up checks on the configured folders: they exist (or are created), none lies inside
another in a way that makes a watch loop, and the state folder shares the inbox's filesystem so
a claim is one rename."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.fsutil import PRIVATE_DIR_MODE

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_CLAIMED_ORIGINAL = "source"  # spool.SOURCE: the user's file inside a job folder


# Folders the daemon makes whatever the umask (the unit's is 0002, for the share): the state is
# the service user's alone; failed/, archive/ and outbox/ are readable by the share, never
# writable by it (security.md). The inbox is the share's own and keeps the umask's mode.
RESULT_FOLDER_MODE = 0o755
_MODES = {
    "state": PRIVATE_DIR_MODE,
    "failed": RESULT_FOLDER_MODE,
    "archive": RESULT_FOLDER_MODE,
    "outbox": RESULT_FOLDER_MODE,
}


def _make(path: Path, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (kept as it is when it exists: the operator's)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    os.chmod(path, mode | (os.stat(path).st_mode & stat.S_ISGID))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def prepare(paths: Paths) -> list[Path]:
    """Create missing folders and refuse unusable layouts. Raises ConfigError (exit 2).
    Returns the state folders whose group/world write permission was removed."""
    resolved: dict[str, Path] = {}
    for key, path in paths.named().items():
        try:
            if key in _MODES:  # the parents may be the share's; these folders are ours
                path.parent.mkdir(parents=True, exist_ok=True)
                _make(path, _MODES[key])
            else:
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"paths.{key}: cannot create {path} ({exc.strerror})") from None
        if not path.is_dir():
            raise ConfigError(f"paths.{key}: {path} is not a folder")
        resolved[key] = path.resolve()
    check_overlaps(resolved)
    check_same_filesystem(resolved["inbox"], resolved["state"])
    check_code_zone(resolved)
    return secure_state(resolved["state"])


def state_folders(state: Path) -> list[Path]:
    """``state`` and every real folder below it (symlinks are neither listed nor followed)."""
    found = [state]
    for top, folders, _files in os.walk(state, followlinks=False):
        found += [Path(top) / name for name in folders if not os.path.islink(Path(top) / name)]
    return found


def state_problem(folder: Path, owner: int | None) -> str | None:
    """Why ``folder`` cannot be trusted as part of paths.state: it is writable by group or
    others, or (when ``owner`` is given) owned by someone else. None when it can."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{folder}: {exc.strerror}"
    if owner is not None and info.st_uid != owner:
        return _foreign_owner(folder, info.st_uid, owner)
    if info.st_mode & _WRITABLE_BY_OTHERS:
        return (
            f"{folder} is writable by group or others, who could then forge the records the "
            f"daemon and retry act on; fix with: chmod -R go-w {folder}"
        )
    return None


def state_records(state: Path) -> list[Path]:
    """Every non-folder entry below ``state`` that the daemon wrote (records, leases,
    reservations); a claimed original (``source``) is the user's file and keeps its owner."""
    found = []
    for top, _folders, files in os.walk(state, followlinks=False):
        found += [Path(top) / name for name in files if name != _CLAIMED_ORIGINAL]
    return found


def _foreign_owner(path: Path, uid: int, owner: int) -> str:
    return (
        f"{path} is owned by uid {uid}, not by the service user (uid {owner}); "
        f"only the daemon may write its state: chown -R {owner} {path}"
    )


def secure_state(state: Path) -> list[Path]:
    """Make paths.state writable by the service user alone, whatever the umask it was created
    under: remove group/world write from what we own, refuse any folder or record owned by
    another user (exit 2: it was planted, or made by root by hand). Returns what was fixed."""
    me = os.geteuid()
    fixed: list[Path] = []
    for entry in state_folders(state) + state_records(state):
        try:
            info = os.lstat(entry)
        except FileNotFoundError:
            continue  # another live instance finished a job meanwhile
        if info.st_uid != me:
            raise ConfigError(f"paths.state: {_foreign_owner(entry, info.st_uid, me)}")
        if info.st_mode & _WRITABLE_BY_OTHERS and not stat.S_ISLNK(info.st_mode):
            try:
                os.chmod(entry, stat.S_IMODE(info.st_mode) & ~_WRITABLE_BY_OTHERS)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"paths.state: {entry} is writable by group or others and cannot be fixed "
                    f"({exc.strerror}); fix with: chmod -R go-w {state}"
                ) from None
            fixed.append(entry)
    return fixed


def code_zone() -> dict[str, list[Path]]:
    """Folders whose contents this process may import or execute. ``inside``: no data folder
    may lie in them (the virtual environment, the interpreter, the package); ``exact``: no data
    folder may be them or hold them ($PATH entries, the working folder, which Python searches
    for modules)."""
    package = Path(__file__).resolve().parent
    inside = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), package.parent}
    exact = {Path(sys.executable).resolve().parent, Path.cwd().resolve()}
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            with contextlib.suppress(OSError):
                exact.add(Path(entry).resolve())
    return {"inside": sorted(inside), "exact": sorted(exact)}


def check_code_zone(resolved: dict[str, Path]) -> None:
    """A file dropped into a folder Python imports from or $PATH runs from could become code."""
    zone = code_zone()
    for key, path in resolved.items():
        for code in zone["inside"] + zone["exact"]:
            if _inside(code, path):
                raise ConfigError(
                    f"paths.{key}: {path} holds {code}, which this daemon runs code from; "
                    "keep data folders apart from programs"
                )
        for code in zone["inside"]:
            if _inside(path, code):
                raise ConfigError(
                    f"paths.{key}: {path} lies inside {code}, which this daemon runs code from; "
                    "keep data folders apart from programs"
                )


def check_config_permissions(config_file: Path) -> None:
    """Whoever can write the config can lift the GPU-first lock or point the daemon anywhere."""
    try:
        info = os.stat(config_file)
    except OSError:
        return
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{config_file}: writable by group or others, who could then unlock the CPU path "
            f"or redirect the daemon; fix with: chmod go-w {config_file}"
        )


def check_overlaps(resolved: dict[str, Path]) -> None:
    inbox = resolved["inbox"]
    for key, path in resolved.items():
        if key == "inbox":
            continue
        if _inside(path, inbox):
            raise ConfigError(
                f"paths.{key}: {path} lies inside the inbox {inbox}; the daemon would watch its "
                "own files"
            )
        if _inside(inbox, path):
            raise ConfigError(f"paths.inbox: {inbox} lies inside paths.{key} ({path})")
    keys = [k for k in resolved if k != "inbox"]
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if resolved[first] == resolved[second]:
                raise ConfigError(
                    f"paths.{second}: the same folder as paths.{first} ({resolved[first]})"
                )


def check_same_filesystem(inbox: Path, state: Path) -> None:
    if os.stat(inbox).st_dev != os.stat(state).st_dev:
        raise ConfigError(
            f"paths.state: {state} is on another filesystem than the inbox {inbox}; a claim must "
            "be a single rename, so put the state folder on the inbox's filesystem"
        )
