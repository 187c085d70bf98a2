"""The docling models: present under gpu.models_path, or in the Hugging Face cache when that
is empty (and fetched at start only where the hub is reachable). What missing models do depends
on the host: a worker that loads docling refuses to start without them, and on a host where no
docling job can run under the lock (no usable GPU) none loads, so the daemon starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sir_convert_a_lot.backends import models
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.startup import load_plan
from sir_convert_a_lot.ops.doctor.gpu import GpuSeen
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, WARN, Check


def models_present(config: Config, environ: dict[str, str], seen: GpuSeen) -> Iterator[Check]:
    option_sets = [config.defaults, *config.profiles.values()]
    # The worker loads what the lock lets this host run (engine.startup's plan); Ray's actors
    # load on their own hosts, whatever this one has.
    plan = load_plan(option_sets, seen.as_probe(), config.governance)
    loads = config.engine.kind == "ray" or models.load_models(plan)
    engines = models.ocr_engines(config.gpu.ocr_backend, _docling_devices(plan, config))
    needs = models.needed(option_sets, engines)
    if not needs:
        yield Check(OK, "models", "no docling backend in use")
        return
    if not config.gpu.models_path:
        yield _hub_cache(environ)
        return
    absent = models.missing(Path(config.gpu.models_path), option_sets, engines)
    if absent:
        where = Path(config.gpu.models_path)
        yield Check(
            FAIL,
            "models",
            "missing under gpu.models_path "
            + config.gpu.models_path
            + ": "
            + ", ".join(models.describe_absent(need, where) for need in absent)
            + "; "
            + (models.REFUSED_AT_START if loads else models.UNUSED_ON_THIS_HOST),
            "sir-convert models download",
        )
    else:
        yield Check(OK, "models", f"{len(needs)} models present in {config.gpu.models_path}")


def _docling_devices(plan: tuple[tuple[str, str], ...], config: Config) -> set[str]:
    """The devices docling loads on here; the GPU where it loads nowhere now (no usable GPU
    under the lock: once one is, it loads there) and for Ray's actors on their GPU hosts."""
    devices = models.loading_devices(plan)
    if config.engine.kind == "ray" or not devices:
        devices.add("cuda")
    return devices


_HUB_REPOS = ("docling-project--docling-layout-heron", "docling-project--docling-models")


def _hub_cache(environ: dict[str, str]) -> Check:
    """With gpu.models_path empty docling takes its models from the Hugging Face cache, and
    fetches what is not there at start: impossible on a host without hub access."""
    cache = _hub_cache_folder(environ)
    absent = [r for r in _HUB_REPOS if not _cached(cache / f"models--{r}")]
    offline = environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    fix = (
        "set gpu.models_path and run sir-convert models download (on a host with hub access), "
        'or use backend_strategy = "pymupdf" (see docs/operations.md)'
    )
    if not absent:
        return Check(OK, "models", f"gpu.models_path is empty; found in the hub cache {cache}")
    detail = f"gpu.models_path is empty and the Hugging Face cache {cache} lacks " + ", ".join(
        r.replace("--", "/") for r in absent
    )
    if offline:
        return Check(FAIL, "models", detail + " (HF_HUB_OFFLINE is set): docling cannot load", fix)
    return Check(WARN, "models", detail + ": the daemon downloads them at start", fix)


def _hub_cache_folder(environ: dict[str, str]) -> Path:
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]) / "hub"
    cache = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else None
    return (cache or Path.home() / ".cache") / "huggingface" / "hub"


def _cached(repo_folder: Path) -> bool:
    snapshots = repo_folder / "snapshots"
    try:
        return any(p.is_dir() for p in snapshots.iterdir())
    except OSError:
        return False
