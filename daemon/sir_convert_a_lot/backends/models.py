"""Which docling models a configuration needs, whether they are on disk, and fetching them.

docling reads its models from an ``artifacts_path`` (``gpu.models_path``) in a fixed layout, or
from the Hugging Face cache when no path is set. A host that cannot reach the hub needs them
fetched ahead of time with ``sir-convert models download``; a daemon that finds one missing says
which, and that command, instead of reporting ready. Only a worker that loads docling looks:
where no docling job can run (no usable GPU under the GPU-first lock) the daemon starts, says
that the models are missing, and every job fails ``gpu_not_available`` as it would anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot.backends import capabilities_of
from sir_convert_a_lot.options import ConversionOptions

LAYOUT = "docling-project--docling-layout-heron"
TABLEFORMER = "docling-project--docling-models/model_artifacts/tableformer"
RAPIDOCR = "RapidOcr"


@dataclass(frozen=True)
class ModelNeed:
    name: str
    folder: str  # relative to the models path
    needed_for: str

    def present_in(self, models_path: Path) -> bool:
        folder = models_path / self.folder
        return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def needed(option_sets: Iterable[ConversionOptions]) -> list[ModelNeed]:
    """The model folders the option sets of a config will load: each asks its backend which
    model families it loads."""
    loading = [(o, capabilities_of(o.backend).models) for o in option_sets]
    loading = [(o, families) for o, families in loading if families]
    if not loading:
        return []
    needs = []
    if any("layout" in families for _, families in loading):
        needs.append(ModelNeed("docling layout model (Heron)", LAYOUT, "page layout"))
    for mode in sorted({o.table_mode for o, families in loading if "tableformer" in families}):
        needs.append(
            ModelNeed(f"TableFormer ({mode})", f"{TABLEFORMER}/{mode}", f"table_mode = {mode!r}")
        )
    if any(o.ocr_mode != "off" and "rapidocr" in families for o, families in loading):
        needs.append(ModelNeed("RapidOCR models", RAPIDOCR, "ocr_mode auto or force"))
    return needs


def missing(models_path: Path, option_sets: Iterable[ConversionOptions]) -> list[ModelNeed]:
    return [need for need in needed(option_sets) if not need.present_in(models_path)]


# What missing models mean, said the same by doctor's models row and the start's warning.
REFUSED_AT_START = (
    "the docling backend cannot load, so the daemon refuses to start "
    "(engine_start_failed, models_missing, exit 2)"
)
UNUSED_ON_THIS_HOST = (
    "no docling job can run on this host now (no usable GPU while the GPU-first lock holds: "
    "every job fails gpu_not_available), so the daemon starts without them; once docling can "
    "run (a usable GPU) it refuses to start (exit 2, models_missing)"
)


def load_models(plan: Iterable[tuple[str, str]]) -> bool:
    """Whether a worker loading these (backend, device) pairs loads any model (docling)."""
    return any(capabilities_of(backend).models for backend, _device in plan)


def download(models_path: Path | None) -> Path:
    """Fetch the layout, TableFormer and RapidOCR models docling's PDF pipeline uses.
    Needs the Hugging Face hub (and RapidOCR's model host); raises when they cannot be reached."""
    from docling.utils.model_downloader import download_models

    target: Path = download_models(
        output_dir=models_path,
        progress=True,
        with_layout=True,
        with_tableformer=True,
        with_rapidocr=True,
        with_code_formula=False,
        with_picture_classifier=False,
    )
    return target
