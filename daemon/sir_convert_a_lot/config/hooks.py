"""``[hooks]``: an executable run after each published result (off by default).

A hook runs as the service user with the config's authority, so its path is checked as strictly
as the config file itself: an absolute path to an executable regular file that neither group
nor others may change, nor replace through a folder on its way (a share's folder would let its
users plant code). The check runs wherever the config is read, so a bad hook refuses the start
(exit 2, naming the key) and a reload that names one keeps the old config.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Annotated, Any

from sir_convert_a_lot.setting import Setting, at_least, between


def hook_problem(value: Any) -> str | None:
    """Why ``value`` cannot name a hook (None when it can, or when it is empty: no hook)."""
    if value == "":
        return None
    if not value.startswith("/"):
        return "must be an absolute path to an executable file (empty: no hook)"
    try:
        info = os.stat(value)
    except OSError as exc:
        return f"cannot be found or read ({exc.strerror}); name an executable file, or empty it"
    if not stat.S_ISREG(info.st_mode) or not os.access(value, os.X_OK):
        return f"is not an executable file; fix with: chmod 755 {value} (or empty the key)"
    writable = _writable_by_others(value)
    if writable is not None:
        return (
            f"{writable} is writable by group or others, who could then run their own code as "
            f"the service user; fix with: chmod go-w {writable} (or keep hooks in a folder only "
            "root may write, e.g. /etc/sir-convert/hooks/)"
        )
    return None


def _writable_by_others(path: str) -> str | None:
    """The hook, or the first folder above it (as named, and once links are resolved), that
    group or others may write; a sticky folder (``/tmp``) lets nobody replace another's entry."""
    for named in dict.fromkeys((path, os.path.realpath(path))):
        part = named
        while True:
            mode = os.stat(part).st_mode
            sticky = stat.S_ISDIR(mode) and mode & stat.S_ISVTX
            if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
                return part
            parent = os.path.dirname(part)
            if parent == part:
                break
            part = parent
    return None


@dataclass(frozen=True)
class HooksSection:
    """What runs after a sidecar or an error envelope is published (``service.hooks``)."""

    on_success: Annotated[
        str,
        Setting(
            hook_problem,
            doc="an executable run after a sidecar is published, with its path as the one "
            "argument; empty: none",
            live=True,
        ),
    ] = ""
    on_failure: Annotated[
        str,
        Setting(
            hook_problem,
            doc="an executable run after an error envelope is published, with its path as the "
            "one argument; empty: none",
            live=True,
        ),
    ] = ""
    timeout_seconds: Annotated[
        float,
        Setting(
            at_least(1),
            doc="a hook still running after this long is killed, with its process group",
            live=True,
        ),
    ] = 60
    max_running: Annotated[
        int,
        Setting(
            between(1, 64),
            doc="hooks that run at once; more wait in a queue (never the conversions)",
            live=True,
        ),
    ] = 4
