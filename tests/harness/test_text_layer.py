"""The text-layer stand-in: the real worker process and everything around the model, with each
page's Markdown read from the PDF's text layer. The tests that run on it rely on both halves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.configs import write_config
from harness.pdfs import make_pdf
from harness.waiting import wait_for
from tests.daemon import Daemon

pytestmark = pytest.mark.slow


def test_a_quick_daemon_converts_each_page_from_its_text_in_a_worker_process_of_its_own(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start() as daemon:
        make_pdf(tmp_path / "inbox" / "two.pdf", pages=2, text="Text of the page.")
        wait_for(lambda: (tmp_path / "outbox" / "two.json").exists(), timeout=60)
        assert daemon.terminate() == 0
    markdown = (tmp_path / "outbox" / "two.md").read_text()
    assert markdown.index("Page 1.") < markdown.index("Page 2.")
    sidecar = json.loads((tmp_path / "outbox" / "two.json").read_text())
    assert sidecar["status"] == "succeeded" and sidecar["source"]["pages"] == 2
    metadata = sidecar["result"]["conversion_metadata"]
    assert (metadata["backend_used"], metadata["acceleration_used"]) == ("pymupdf", "cpu")
    worker = sidecar["execution"]["worker"]
    assert worker["pid"] not in (daemon.pid, os.getpid())  # its own worker process
    [ready] = [e for e in daemon.events() if e["event"] == "worker_ready"]
    assert ready["loaded"] == ["pymupdf@cpu"]
