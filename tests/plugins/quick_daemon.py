"""Run the daemon with its local workers converting PDFs through the text-layer stand-in
(``text_layer``), for the tests whose subject is the files and not their conversion.

Usage: python -m tests.plugins.quick_daemon [tests.MODULE MODULE-ARGUMENTS...] SIR-CONVERT-ARGUMENTS

With a tests module first (``tests.crash_harness after_claim ...``), that harness runs as its own
``__main__`` would, on the quick workers. Ray engines are left as they are: a test of Ray is a
test of the worker it carries.
"""

from __future__ import annotations

import functools
import runpy
import sys

from sir_convert_a_lot.engine.interface import ConversionEngine, ProgressSink
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.local import LocalProcessTransport
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.service.daemon import Service
from tests.plugins.text_layer import QuickWorker


def install() -> None:
    """Every ``Service`` this process builds gets quick local workers."""
    supervised = Service._supervised

    def quick(self: Service, on_progress: ProgressSink) -> ConversionEngine:
        if self.config.engine.kind != "local":
            return supervised(self, on_progress)
        return Engine(
            self.config,
            self.governance,
            instance=self.instance,
            on_progress=on_progress,
            transport=functools.partial(LocalProcessTransport, serve=QuickWorker()),
        )

    Service._supervised = quick  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    if len(sys.argv) > 1 and sys.argv[1].startswith("tests."):
        module = sys.argv[1]
        sys.argv = [module, *sys.argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.exit(main(sys.argv[1:]))
