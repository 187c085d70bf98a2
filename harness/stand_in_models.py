"""Tiny random-weight stand-ins for the models docling's standard PDF pipeline loads.

The point is to run docling's *real* loading and inference code offline (no Hugging Face hub,
no GPU needed): the files below sit in the exact layout docling expects under a
``PdfPipelineOptions(artifacts_path=...)`` folder, are read from disk by docling's own loaders,
placed on the configured device and run end to end. Their predictions are meaningless.

Layout written under ``artifacts_path``::

    docling-project--docling-layout-heron/          layout model (transformers RT-DETRv2)
        config.json                                  RTDetrV2ForObjectDetection, tiny sizes,
                                                     id2label = docling's 17 layout labels
        preprocessor_config.json                     RTDetrImageProcessor, 640x640 like Heron
        model.safetensors                            ~0.35 MB
    docling-project--docling-models/model_artifacts/tableformer/
        fast/tm_config.json                          TableFormer V1 (TableModel04_rs) config
        fast/tableformer_fast.safetensors            float16 weights, ~52 MB (see below)
        accurate/tm_config.json                      same config
        accurate/tableformer_accurate.safetensors    hard link to the fast file where possible
    RapidOcr/                                        RapidOCR for both engines (``ocr_models``):
        PP-OCRv6_det_small.onnx                      onnxruntime: symlinks to the ONNX files
        PP-OCRv6_rec_small.onnx                      shipped in the installed rapidocr wheel (real
        ch_ppocr_mobile_v2.0_cls_mobile.onnx         models, so OCR text is real)
        PP-OCRv6_det_small.pth                       torch: rapidocr's own networks at their
        PP-OCRv6_rec_small.pth                       published sizes, random float16 weights
        ch_ppocr_mobile_v2.0_cls_mobile.pth          (~16 MB), and the recognizer's characters;
        ppocrv6_dict.txt                             docling's defaults (lang "ch", model_size
                                                     "small") resolve to exactly these names

Who reads what (docling 2.143, docling-ibm-models 4.0.4):

* layout: ``LayoutObjectDetectionModel`` -> ``TransformersObjectDetectionEngine.initialize``
  resolves ``artifacts_path / repo_id.replace("/", "--")``
  (``inference_engines/vlm/_utils.resolve_model_artifacts_path``), then
  ``AutoImageProcessor``/``AutoConfig``/``AutoModelForObjectDetection.from_pretrained`` on it.
  Label names must upper-case to ``DocItemLabel`` member names, hence ``list_item`` etc.
* tables: ``TableStructureModel`` uses ``artifacts_path / "docling-project--docling-models" /
  "model_artifacts/tableformer" / {"fast", "accurate"}``, reads ``tm_config.json`` and
  ``TFPredictor`` loads the first ``tableformer_*.safetensors`` there (strict: every key).
* OCR: ``RapidOcrModel`` with an ``artifacts_path`` looks only in ``artifacts_path / "RapidOcr"``
  for the file names rapidocr's registry gives (it never downloads in that mode).

Size: TableFormer V1 hard-codes a ResNet-18 trunk and two 256->512 ResNet blocks, and its
transformer width must be 512, so its smallest possible model has ~26 M parameters. They are
stored as float16 (docling upcasts them into the float32 modules while loading): ~52 MB, written
once and hard-linked into the second mode. The layout model is ~0.35 MB.

Random weights are steered just enough to exercise the whole pipeline: the layout model's
BatchNorm scales are reset to 1 (transformers' ~0 init collapses an untrained model to one
repeated box) and its class-head biases put ``text`` and ``table`` boxes above docling's 0.3
score threshold, so a few table regions per page reach TableFormer, whose tag decoding is capped
at 16 steps on a 112 px input (about 0.2 s per table on a CPU).

Usage: ``build_stand_in_models(path)``, or ``python -m harness.stand_in_models
OUTPUT_DIR`` (``python fixtures/stand_in_models.py OUTPUT_DIR`` runs the same). ``--faithful``
(``size="faithful"``) writes the real architectures at their published sizes instead, for
benchmarks (``faithful_models``; docs/reference/stand-in-models.md).
Deterministic (fixed seed, identical bytes on every build) and idempotent (unchanged files are
left alone). About 9 s once torch and transformers are imported (2 shared CPU cores, with
RapidOCR's torch stand-ins; 3 s when every file is already there). The RapidOcr links are
absolute paths into this environment, so build the folder on the machine that uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from harness import ocr_models

SEED = 1234

LAYOUT_DIR = "docling-project--docling-layout-heron"
TABLEFORMER_DIR = Path("docling-project--docling-models") / "model_artifacts" / "tableformer"
TABLEFORMER_MODES = ("fast", "accurate")
RAPIDOCR_DIR = "RapidOcr"
SIZES = ("tiny", "faithful")

# docling's layout label set (the Heron model's 17 classes), spelled so that
# ``label.upper()`` is a ``DocItemLabel`` member name, as LayoutObjectDetectionModel requires.
LAYOUT_LABELS: tuple[str, ...] = (
    "caption",
    "footnote",
    "formula",
    "list_item",
    "page_footer",
    "page_header",
    "picture",
    "section_header",
    "table",
    "text",
    "title",
    "document_index",
    "code",
    "checkbox_selected",
    "checkbox_unselected",
    "form",
    "key_value_region",
)
# Final-class-head biases (logits); everything else stays at the usual prior of about -2.8,
# far under docling's default score_threshold of 0.3.
LAYOUT_LABEL_BIASES: dict[str, float] = {"text": 1.5, "table": 1.1}

# The OTSL tag vocabulary of the released TableFormer checkpoints.
TABLEFORMER_WORD_MAP_TAG: dict[str, int] = {
    "<pad>": 0,
    "<unk>": 1,
    "<start>": 2,
    "<end>": 3,
    "ecel": 4,
    "fcel": 5,
    "lcel": 6,
    "ucel": 7,
    "xcel": 8,
    "nl": 9,
    "ched": 10,
    "rhed": 11,
    "srow": 12,
}


def _tableformer_config() -> dict[str, Any]:
    """A tm_config.json with every key docling_ibm_models reads, at the smallest sizes."""
    return {
        "dataset": {
            "name": "TF",
            "resized_image": 112,
            "image_normalization": {
                "state": True,
                "mean": [0.94247851, 0.94254675, 0.94292611],
                "std": [0.17910956, 0.17940403, 0.17931663],
            },
        },
        "dataset_wordmap": {"word_map_tag": TABLEFORMER_WORD_MAP_TAG},
        "model": {
            "type": "TableModel04_rs",
            "name": "stand_in",
            # Overwritten by docling with the folder it read tm_config.json from.
            "save_dir": ".",
            "backbone": "resnet18",
            "enc_image_size": 7,
            # Fixed by the architecture: the 256->512 input filter feeds the transformer.
            "hidden_dim": 512,
            "tag_decoder_dim": 512,
            "tag_embed_dim": 16,
            "tag_attention_dim": 16,
            "bbox_embed_dim": 16,
            "bbox_attention_dim": 16,
            "enc_layers": 1,
            "dec_layers": 1,
            "nheads": 2,
            "dropout": 0.1,
            "bbox_classes": 2,
        },
        "preparation": {"max_tag_len": 30},
        "train": {"bbox": True},
        "predict": {
            "max_steps": 16,
            "beam_size": 1,
            "bbox": True,
            "pdf_cell_iou_thres": 0.05,
            "padding": False,
            "padding_size": 50,
            "profiling": False,
        },
    }


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, leaving an identical file untouched."""
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    _write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _link_or_copy(src: Path, dst: Path, *, symbolic: bool) -> None:
    """Point ``dst`` at ``src`` (hard or symbolic link), copying if links are unavailable."""
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve() or (dst.exists() and dst.samefile(src)):
            return
        dst.unlink()
    try:
        if symbolic:
            dst.symlink_to(src.resolve())
        else:
            os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _build_layout(folder: Path) -> None:
    import torch
    from transformers import (
        RTDetrImageProcessor,
        RTDetrResNetConfig,
        RTDetrV2Config,
        RTDetrV2ForObjectDetection,
    )

    folder.mkdir(parents=True, exist_ok=True)
    width = 16
    label_ids = {label: i for i, label in enumerate(LAYOUT_LABELS)}
    backbone_kwargs: dict[str, Any] = {
        "embedding_size": 8,
        "hidden_sizes": [8, width, width, width],
        "depths": [1, 1, 1, 1],
        "layer_type": "basic",
        "out_indices": [2, 3, 4],  # the three stages the encoder reads (strides 8, 16, 32)
    }
    backbone = RTDetrResNetConfig(**backbone_kwargs)
    config = RTDetrV2Config(
        backbone_config=backbone,
        encoder_in_channels=[width, width, width],
        encoder_hidden_dim=width,
        encoder_ffn_dim=2 * width,
        encoder_attention_heads=2,
        d_model=width,
        decoder_in_channels=[width, width, width],
        decoder_ffn_dim=2 * width,
        # 2, not 1: transformers' weight tying of the per-layer heads needs a second layer.
        decoder_layers=2,
        decoder_attention_heads=2,
        num_queries=30,
        num_denoising=0,
        id2label=dict(enumerate(LAYOUT_LABELS)),
        label2id=label_ids,
    )
    model = RTDetrV2ForObjectDetection(config)
    with torch.no_grad():
        # transformers initialises BatchNorm scales to ~N(0, 0.01), which, untrained, collapses
        # every feature to zero and makes all queries identical; unit scales keep them varied.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
        heads = [*model.class_embed, *model.model.decoder.class_embed]
        for head in heads:
            for label, bias in LAYOUT_LABEL_BIASES.items():
                head.bias[label_ids[label]] = bias
    _save_layout(model, folder)
    RTDetrImageProcessor(size={"height": 640, "width": 640}).save_pretrained(folder)


def _save_layout(model: Any, folder: Path) -> None:
    """``save_pretrained`` without transformers' progress bar in the build's output."""
    from transformers.utils import logging as transformers_logging

    hf_logging: Any = transformers_logging  # its helpers are unannotated
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()


def _build_tableformer(folder: Path) -> None:
    from docling_ibm_models.tableformer.models.table04_rs.tablemodel04_rs import (
        TableModel04_rs,
    )
    from safetensors.torch import save

    model_class: Any = TableModel04_rs  # unannotated
    config = _tableformer_config()
    model = model_class(config, {"word_map": config["dataset_wordmap"]}, "cpu")
    state = {
        key: (value.half() if value.is_floating_point() else value).contiguous()
        for key, value in model.state_dict().items()
    }
    weights = save(state, metadata={"format": "pt"})

    first: Path | None = None
    for mode in TABLEFORMER_MODES:
        mode_dir = folder / mode
        mode_dir.mkdir(parents=True, exist_ok=True)
        _write_json(mode_dir / "tm_config.json", config)
        target = mode_dir / f"tableformer_{mode}.safetensors"
        if first is None:
            _write_bytes(target, weights)
            first = target
        else:
            _link_or_copy(first, target, symbolic=False)


def build_stand_in_models(artifacts_path: Path, size: str = "tiny", ocr: bool = True) -> Path:
    """Write the stand-in models under ``artifacts_path`` and return it.

    ``size="tiny"`` (tests: small, fast) or ``"faithful"`` (benchmarks: the real architectures at
    their published sizes, see ``faithful_models``). Pass the returned folder as
    ``PdfPipelineOptions(artifacts_path=...)``. ``ocr=False`` leaves the RapidOCR folder out,
    for runs with ``ocr_mode = "off"`` where rapidocr is not installed (tools/gpu-bundle).
    """
    import torch

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    artifacts_path = Path(artifacts_path)
    artifacts_path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        if size == "faithful":
            from harness import faithful_models

            faithful_models.build_faithful_layout(artifacts_path / LAYOUT_DIR)
            faithful_models.build_faithful_tableformer(artifacts_path / TABLEFORMER_DIR)
        else:
            torch.manual_seed(SEED)
            _build_layout(artifacts_path / LAYOUT_DIR)
            torch.manual_seed(SEED)
            _build_tableformer(artifacts_path / TABLEFORMER_DIR)
    if ocr:
        ocr_models.build_rapidocr(
            artifacts_path / RAPIDOCR_DIR,
            lambda src, dst: _link_or_copy(src, dst, symbolic=True),
            _write_bytes,
        )
    return artifacts_path


def main(argv: list[str]) -> int:
    args = argv[1:]
    size = "tiny"
    if args[:1] == ["--faithful"]:
        size, args = "faithful", args[1:]
    if len(args) != 1:
        sys.stderr.write(f"usage: {argv[0]} [--faithful] OUTPUT_DIR\n")
        return 2
    out = build_stand_in_models(Path(args[0]), size)
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
