"""A worker of the tests' own: the real worker, scripted to misbehave on a named file as a hostile
PDF would make it, or to report a GPU this host does not have. It reaches the engine through the
engine's one seam, the worker's entry point (``worker.WorkerEntry``), so the product carries no
fault switch; OCRmyPDF keeps its test plugins in ``tests/plugins`` the same way.

Each fault plays on the file of that name (the last part of its inbox name), after preflight,
where the converter would take the file:

- ``crash``: the worker process is killed (SIGKILL), as a segfault in native code would kill it;
- ``hang``: the conversion never ends, and only the supervisor's deadline ends it;
- ``slow``: the conversion takes five seconds more, then goes on;
- ``raise``: the converter raises ``RuntimeError``, a bug and not the file's fault;
- ``bloat``: the worker grows by 64 MiB every 50 ms, as a runaway conversion would, until killed.

And at its start: ``load_seconds`` more to load its models (a slow model load), and a load that
fails (``StartupFailed``) while the file ``fail_load_if`` names exists.

Its PDFs convert through the text-layer stand-in for pymupdf-layout (``text_layer``): the subject
of a scripted test is what the engine does around a conversion, not what the conversion says.
``text_layer=False`` keeps the real backend.

This module runs inside the worker process or Ray actor, so it imports only the worker's side.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sir_convert_a_lot.backends import Backend
from sir_convert_a_lot.engine import worker
from sir_convert_a_lot.engine.gpu import GpuProbe
from sir_convert_a_lot.engine.protocol import Converted, ConvertRequest, Failed, WorkerSettings
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from tests.plugins.text_layer import TextLayerWorker

Fault = Literal["crash", "hang", "slow", "raise", "bloat"]

SLOW_SECONDS = 5.0


@dataclass(frozen=True)
class ScriptedWorker:
    """A ``worker.WorkerEntry``: picklable, so that it travels into a spawned worker process or
    a Ray actor. ``faults`` maps a file name to its fault; ``probe`` is what the worker says the
    GPU probe saw (None: the real probe)."""

    faults: dict[str, Fault] = field(default_factory=dict)
    probe: GpuProbe | None = None
    load_seconds: float = 0.0
    fail_load_if: str = ""  # a path: while it exists, the load fails
    text_layer: bool = True  # False: the real pymupdf backend and its layout model

    def __call__(self, channel: worker.Channel, settings: WorkerSettings) -> None:
        _Scripted(channel, settings, self).serve()


class _Scripted(TextLayerWorker):
    """The real worker with the script played where the converter would be reached."""

    def __init__(
        self, channel: worker.Channel, settings: WorkerSettings, script: ScriptedWorker
    ) -> None:
        super().__init__(channel, settings)
        self.script = script
        self.text_layer = script.text_layer
        self._document = threading.local()  # each document converts on a thread of its own

    def _probe(self) -> GpuProbe:
        return self.script.probe if self.script.probe is not None else super()._probe()

    def _load(self, plan: tuple[tuple[str, str], ...]) -> tuple[float, float]:
        if self.script.fail_load_if and Path(self.script.fail_load_if).exists():
            raise JobFailure(
                ErrorCode.CONVERSION_INTERNAL_ERROR, "a scripted load failure", reason="scripted"
            )
        time.sleep(self.script.load_seconds)
        load_seconds, warm_seconds = super()._load(plan)
        return load_seconds + self.script.load_seconds, warm_seconds

    def _convert(self, request: ConvertRequest) -> Converted | Failed:
        self._document.name = Path(request.source_name).name
        return super()._convert(request)

    def _backend(self, name: str, device: str) -> Backend:
        """Called for each document once it passed preflight, inside the worker's handling of
        the converter's errors (and at load time, outside any document: no fault then)."""
        fault = self.script.faults.get(getattr(self._document, "name", ""))
        if fault is not None:
            _play(fault)
        return super()._backend(name, device)


def _play(fault: Fault) -> None:
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        threading.Event().wait()
    elif fault == "slow":
        time.sleep(SLOW_SECONDS)
    elif fault == "raise":
        raise RuntimeError("a scripted converter bug")
    elif fault == "bloat":
        held = []
        while True:
            held.append(bytearray(64 * 1024 * 1024))
            time.sleep(0.05)
