"""What several tools share: where the repository is, how a report is written, the daemon's
memory, a daemon started until it is ready and stopped whatever happens.

Tools are scripts in a flat folder (no ``__init__.py``): ``python tools/<name>.py`` puts
``tools/`` first on ``sys.path``, so ``import toolkit`` (or ``import benchmark``) finds the
sibling module, and mypy, which checks ``tools/`` as a folder of top-level modules, resolves
it the same way. The package itself (``sir_convert_a_lot``, with ``harness``)
comes from the installed environment: no tool edits ``sys.path`` or imports ``tests``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Every tool's last step: the JSON report on disk (stable key order, for diffs) and on
    stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, sort_keys=True))


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    return _tree_sum(pid, lambda fields: int(fields[21]) * os.sysconf("SC_PAGE_SIZE"))


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process and its live descendants have used, from /proc."""
    ticks = _tree_sum(pid, lambda fields: int(fields[11]) + int(fields[12]))
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_sum(pid: int, value: Callable[[list[str]], int]) -> int:
    """``value`` of the /proc stat fields (those after the command's name) of ``pid`` and each
    of its descendants, summed."""
    children: dict[int, list[int]] = {}
    values: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        values[int(entry)] = value(fields)
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += values.get(current, 0)
        stack.extend(children.get(current, []))
    return total


# A daemon's models load and warm before it is ready: minutes for the faithful stand-ins on a
# busy CPU.
READY_TIMEOUT = 1800.0


def exit_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C, through the clean-up (only the main thread may ask)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
