"""What several tools share: where the repository is, how a report is written, the daemon's
memory and a daemon started until it is ready.

Tools are scripts in a flat folder (no ``__init__.py``): ``python tools/<name>.py`` puts
``tools/`` first on ``sys.path``, so ``import toolkit`` (or ``import benchmark``) finds the
sibling module, and mypy, which checks ``tools/`` as a folder of top-level modules, resolves
it the same way. The package itself (``sir_convert_a_lot``, with ``sir_convert_a_lot.testing``)
comes from the installed environment: no tool edits ``sys.path`` or imports ``tests``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
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
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * page
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def start_ready_daemon(config: Path, log_path: Path, instance: str) -> subprocess.Popen[bytes]:
    """Start ``sir-convert run`` with its output in ``log_path``; return once its lease says
    ready (models warm, start-up scan done)."""
    log = log_path.open("wb")
    daemon = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "sir-convert"), "--config", str(config), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    lease = config.parent / "state" / "instances" / f"{instance}.lease"
    while not (lease.exists() and json.loads(lease.read_text()).get("state") == "ready"):
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}): see {log_path}")
        time.sleep(0.1)
    return daemon
