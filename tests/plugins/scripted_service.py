"""The daemon and its engines as production builds them from a config, but with the tests'
scripted worker (``scripted_worker``) in every worker process or Ray actor: the one seam the
engine has (the worker's entry point) set, and nothing else changed."""

from __future__ import annotations

import functools
from pathlib import Path

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.interface import ConversionEngine, ProgressSink
from sir_convert_a_lot.engine.pool import EnginePool
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.base import TransportFactory
from sir_convert_a_lot.engine.transports.local import LocalProcessTransport
from sir_convert_a_lot.service.daemon import Service
from tests.plugins.scripted_worker import ScriptedWorker


def scripted_transport(script: ScriptedWorker) -> TransportFactory:
    """For ``Engine(transport=...)``: a local worker process that runs ``script``."""
    return functools.partial(LocalProcessTransport, serve=script)


def scripted_service(
    config: Config, script: ScriptedWorker, *, lock_folder: Path | None = None
) -> Service:
    """``Service(config)`` whose engine (the one ``engine.kind`` names) runs ``script`` as its
    worker; ``lock_folder`` is where a local engine takes its GPU lock (None: the host's)."""

    def engine(on_progress: ProgressSink) -> ConversionEngine:
        instance = config.instances.name
        if config.engine.kind == "ray":
            return EnginePool(
                config, config.governance, instance=instance, on_progress=on_progress, serve=script
            )
        return Engine(
            config,
            config.governance,
            instance=instance,
            on_progress=on_progress,
            lock_folder=lock_folder,
            transport=scripted_transport(script),
        )

    return Service(config, engine_factory=engine)
