"""The README's run command, as a new user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from sir_convert_a_lot.engine.gpu import probe
from tests.helpers import REPO, copy_sample, wait_for

pytestmark = pytest.mark.slow


def test_tools_run_local_starts_the_daemon_on_a_default_local_config(tmp_path: Path) -> None:
    local = tmp_path / "var"
    log = (tmp_path / "run-local.log").open("wb")
    process = subprocess.Popen(
        [str(REPO / "tools" / "run-local")],
        cwd=REPO,
        env={**os.environ, "SIR_CONVERT_LOCAL_DIR": str(local)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        lease = local / "state" / "instances"
        wait_for(lambda: any(lease.glob("*.lease")), timeout=600, interval=0.5)
        config = (local / "config.toml").read_text()
        assert f'inbox = "{local}/inbox"' in config
        copy_sample("multi_page.pdf", local / "inbox")
        if probe(0).cuda_available:
            wait_for(lambda: (local / "outbox" / "multi_page.json").exists(), timeout=300)
        else:
            wait_for(lambda: (local / "outbox" / "multi_page.error.json").exists(), timeout=60)
            envelope = json.loads((local / "outbox" / "multi_page.error.json").read_text())
            assert envelope["error"]["code"] == "gpu_not_available"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log.close()
