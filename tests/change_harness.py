"""Run the real daemon, but let a "remote writer" rewrite a file while it is being converted.

Usage: python -m tests.change_harness NAME REPLACEMENT [sir-convert arguments...]

The first conversion of the inbox file called NAME is followed, before the engine answers, by
rewriting the claimed file in place (same inode, as a writer on another host of a CIFS/NFS mount
would) with the bytes of REPLACEMENT. The hook lives here in the tests, wrapping the engine; the
product has no such switch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sir_convert_a_lot.engine import supervisor as engine
from sir_convert_a_lot.ops.cli import main


def _rewrite_during_first_conversion(name: str, replacement: Path) -> None:
    original = engine.Engine.convert
    done: list[bool] = []

    def wrapped(self: engine.Engine, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        source_path, source_name = args[1], kwargs.get("source_name", "")
        if Path(source_name).name == name and not done:
            done.append(True)
            with open(source_path, "r+b") as handle:  # the same inode, in place
                handle.truncate(0)
                handle.write(replacement.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
        return answer

    engine.Engine.convert = wrapped  # type: ignore[method-assign]


if __name__ == "__main__":
    _rewrite_during_first_conversion(sys.argv[1], Path(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
