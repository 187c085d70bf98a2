"""Which engine the config asks for (``engine.kind``): workers as child processes of this daemon
(``supervisor.Engine``), or as actors of a Ray cluster (``pool.EnginePool``). Both are a
``ConversionEngine`` to the jobs; the service also asks them how many pages it may claim."""

from __future__ import annotations

from sir_convert_a_lot.config import Config, Governance
from sir_convert_a_lot.engine.interface import ProgressSink
from sir_convert_a_lot.engine.pool import EnginePool
from sir_convert_a_lot.engine.supervisor import Engine

AnyEngine = Engine | EnginePool


def build_engine(
    config: Config,
    governance: Governance,
    *,
    instance: str,
    on_progress: ProgressSink | None = None,
    device_wait_seconds: float | None = None,
) -> AnyEngine:
    if config.engine.kind == "ray":
        return EnginePool(config, governance, instance=instance, on_progress=on_progress)
    return Engine(
        config,
        governance,
        instance=instance,
        on_progress=on_progress,
        device_wait_seconds=device_wait_seconds,
    )
