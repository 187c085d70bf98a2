"""Which docling models a configuration needs, whether they are on disk, and fetching them.

docling reads its models from an ``artifacts_path`` (``gpu.models_path``) in a fixed layout, or
from the Hugging Face cache when no path is set. A host that cannot reach the hub needs them
fetched ahead of time with ``sir-convert models download``; a daemon that finds one missing says
which, and that command, instead of reporting ready. Only a worker that loads docling looks:
where no docling job can run (no usable GPU under the GPU-first lock) the daemon starts, says
that the models are missing, and every job fails ``gpu_not_available`` as it would anyway.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot.capabilities import capabilities_of
from sir_convert_a_lot.options import ConversionOptions

LAYOUT = "docling-project--docling-layout-heron"
TABLEFORMER = "docling-project--docling-models/model_artifacts/tableformer"
RAPIDOCR = "RapidOcr"

# The files docling (2.143) asks RapidOCR's registry for with its defaults (language "ch", size
# "small": PP-OCRv6), per engine; tests/backends/test_ocr_engine.py pins them against
# docling's resolver.
# Both engines share the folder, so their needs are told apart by file.
RAPIDOCR_FILES: dict[str, tuple[str, ...]] = {
    "onnxruntime": (
        "PP-OCRv6_det_small.onnx",
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "PP-OCRv6_rec_small.onnx",
    ),
    "torch": (
        "PP-OCRv6_det_small.pth",
        "ch_ppocr_mobile_v2.0_cls_mobile.pth",
        "PP-OCRv6_rec_small.pth",
        "ppocrv6_dict.txt",  # the torch recognizer's characters (the ONNX one carries its own)
    ),
}
OCR_ENGINES = tuple(RAPIDOCR_FILES)


def ocr_engine(choice: str, device: str) -> str:
    """RapidOCR's engine for ``gpu.ocr_backend`` on ``device``: ``auto`` is torch on a GPU (the
    plain onnxruntime wheel has no CUDA provider, so its sessions would run on the CPU) and
    onnxruntime on the CPU (the ONNX models are the ones RapidOCR publishes as its default)."""
    if choice == "auto":
        return "torch" if device == "cuda" else "onnxruntime"
    return choice


def ocr_engines(choice: str, devices: Iterable[str]) -> frozenset[str]:
    return frozenset(ocr_engine(choice, device) for device in devices)


@dataclass(frozen=True)
class ModelNeed:
    name: str
    folder: str  # relative to the models path
    needed_for: str
    files: tuple[str, ...] = ()  # in the folder; none named: any file will do

    def present_in(self, models_path: Path) -> bool:
        return not self.absent_files(models_path)

    def absent_files(self, models_path: Path) -> list[str]:
        """The named files not in the folder; for a need naming none, the folder when empty."""
        folder = models_path / self.folder
        if self.files:
            return [name for name in self.files if not (folder / name).is_file()]
        if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
            return []
        return [self.folder]


def needed(
    option_sets: Iterable[ConversionOptions], ocr_engines: Collection[str]
) -> list[ModelNeed]:
    """The models the option sets of a config will load: each asks its backend which model
    families it loads; OCR's files are those of ``ocr_engines`` (``ocr_engines`` above: the
    engine ``gpu.ocr_backend`` picks on each device the worker may load docling on)."""
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
        for engine in sorted(ocr_engines):
            needs.append(
                ModelNeed(
                    f"RapidOCR models ({engine} engine)",
                    RAPIDOCR,
                    "ocr_mode auto or force",
                    RAPIDOCR_FILES[engine],
                )
            )
    return needs


def missing(
    models_path: Path, option_sets: Iterable[ConversionOptions], ocr_engines: Collection[str]
) -> list[ModelNeed]:
    return [need for need in needed(option_sets, ocr_engines) if not need.present_in(models_path)]


def describe_absent(need: ModelNeed, models_path: Path) -> str:
    """A missing need, as messages name it: its folder, and for a need of named files the
    files not there (``RapidOcr/{a, b}``)."""
    absent = need.absent_files(models_path)
    if not need.files:
        return need.folder
    return f"{need.folder}/{{{', '.join(absent)}}}" if absent else need.folder


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
    return bool(loading_devices(plan))


def loading_devices(plan: Iterable[tuple[str, str]]) -> set[str]:
    """The devices on which a worker loading these (backend, device) pairs loads models."""
    return {device for backend, device in plan if capabilities_of(backend).models}


def download(models_path: Path | None) -> Path:
    """Fetch the layout, TableFormer and RapidOCR models docling's PDF pipeline uses, RapidOCR's
    for both engines (torch for a GPU, onnxruntime for the CPU). Needs the Hugging Face hub (and
    RapidOCR's model host); raises when they cannot be reached."""
    from docling.utils.model_downloader import download_models

    target: Path = download_models(
        output_dir=models_path,
        progress=True,
        with_layout=True,
        with_tableformer=True,
        with_rapidocr=True,
        rapidocr_models=[f"{engine}:ch" for engine in OCR_ENGINES],
        with_code_formula=False,
        with_picture_classifier=False,
    )
    return target
