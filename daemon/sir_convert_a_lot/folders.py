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


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def prepare(paths: Paths) -> None:
    """Create missing folders and refuse unusable layouts. Raises ConfigError (exit 2)."""
    resolved: dict[str, Path] = {}
    for key, path in paths.named().items():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"paths.{key}: cannot create {path} ({exc.strerror})") from None
        if not path.is_dir():
            raise ConfigError(f"paths.{key}: {path} is not a folder")
        resolved[key] = path.resolve()
    check_overlaps(resolved)
    check_same_filesystem(resolved["inbox"], resolved["state"])
    check_code_zone(resolved)


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
