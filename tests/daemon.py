"""The daemon as the tests run it: ``harness.daemon`` from the repository's
own environment, plus ``crash_at``, which runs it under ``tests.crash_harness``, and ``quick``,
which runs its local workers on the text-layer stand-in (``tests.plugins.quick_daemon``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from harness import daemon as harness
from harness.daemon import (
    CAP_LEASE,
    can_obey_permissions,
    drop_permission_override,
    dropping,
)
from tests.helpers import REPO, VENV_BIN

__all__ = [
    "CAP_LEASE",
    "Daemon",
    "can_obey_permissions",
    "drop_permission_override",
    "dropping",
    "run_cli",
]


class Daemon(harness.Daemon):
    """``sir-convert --config CFG run`` in a subprocess with its log in a file; ``crash_at``
    names the point where ``tests.crash_harness`` makes it crash; ``quick`` is for a test whose
    subject is the files, not their conversion: its PDFs convert through the text layer."""

    def __init__(
        self,
        config: Path,
        *,
        crash_at: str | None = None,
        harness: tuple[str, ...] = (),
        quick: bool = False,
        **options: Any,
    ) -> None:
        if crash_at:
            harness = ("tests.crash_harness", crash_at)
        if quick:
            harness = ("tests.plugins.quick_daemon", *harness)
        super().__init__(config, harness=harness, cwd=REPO, bin_dir=VENV_BIN, **options)


def run_cli(
    *args: str, config: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return harness.run_cli(*args, config=config, timeout=timeout, cwd=REPO, bin_dir=VENV_BIN)
