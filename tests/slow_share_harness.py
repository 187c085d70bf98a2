"""Run the real daemon as if its share were slow to write: each job's Markdown waits SECONDS
before it is written.

Usage: python -m tests.slow_share_harness SECONDS [sir-convert arguments...]

On a fast local disk a job chooses its output stem and places it within a millisecond, so two
instances almost never choose at once and a broken name reservation would go unseen. The pause
holds that window open, as a slow network share does. The hook lives here in the tests,
wrapping the daemon's own write; the product has no such switch.
"""

from __future__ import annotations

import sys
import time

from sir_convert_a_lot.jobs import publish
from sir_convert_a_lot.ops.cli import main


def _pause_before_markdown(seconds: float) -> None:
    original = publish._write_new

    def wrapped(dir_fd: int, name: str, content: bytes) -> None:
        if name.startswith(publish.TMP_PREFIX) and name.endswith(publish.MARKDOWN):
            time.sleep(seconds)
        original(dir_fd, name, content)

    publish._write_new = wrapped


if __name__ == "__main__":
    _pause_before_markdown(float(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
