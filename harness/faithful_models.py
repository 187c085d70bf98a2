"""Compute-faithful stand-ins: docling's real layout and TableFormer architectures at their
published sizes, with seeded random weights, so pages/s measured with them reflects real compute.

The published values live here once (``HERON_PUBLISHED``, ``TABLEFORMER_PUBLISHED``); the builder
and the drift test both read them, and docs/reference/stand-in-models.md gives their sources.
Written in the same ``artifacts_path`` layout as the tiny stand-ins (see ``stand_in_models``),
as float32 like the released files, so loading costs what it really costs.

Untrained weights are steered so the pipeline does realistic work:

* layout: BatchNorm scales reset to 1 (as in the tiny build). The queries of an untrained
  RT-DETRv2 differ little, so the ``text`` and ``table`` class-head rows are replaced by
  directions of largest spread of the decoder output, measured on seeded synthetic pages at build
  time, with biases put at quantiles of that spread (``TEXT_SHARE``, ``TABLE_SHARE`` of the
  synthetic queries) and then raised by offsets measured on real fixture pages, so every page
  gets text boxes and some pages a table. Every other class is pushed under docling's thresholds.
* TableFormer: the tag head never chooses ``<end>`` and otherwise prefers ``fcel`` (a cell, which
  also runs the bbox decoder), so every table decodes exactly ``TABLE_TAG_STEPS`` tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.stand_in_models import (
    LAYOUT_LABELS,
    TABLEFORMER_MODES,
    _save_layout,
    _tableformer_config,
    _write_bytes,
    _write_json,
)

# docling-project/docling-layout-heron: RT-DETRv2, ResNet-50-vd, 17 labels (see the doc for the
# source of each value; the ones not stated anywhere we found are transformers' rt_detr_v2
# defaults, which these equal).
HERON_PUBLISHED: dict[str, Any] = {
    "backbone_depths": [3, 4, 6, 3],
    "backbone_embedding_size": 64,
    "backbone_hidden_sizes": [256, 512, 1024, 2048],
    "backbone_layer_type": "bottleneck",
    "backbone_out_features": ["stage2", "stage3", "stage4"],
    "d_model": 256,
    "encoder_hidden_dim": 256,
    "encoder_in_channels": [512, 1024, 2048],
    "encoder_layers": 1,
    "encoder_ffn_dim": 1024,
    "encoder_attention_heads": 8,
    "decoder_layers": 6,
    "decoder_ffn_dim": 1024,
    "decoder_attention_heads": 8,
    "decoder_n_points": 4,
    "num_queries": 300,
    "num_labels": 17,
    "image_size": 640,
    "parameters_millions": 42.9,  # Hugging Face's count of the safetensors tensors
    "weights_mb": 172,
}

# docling-project/docling-models model_artifacts/tableformer/{fast,accurate}/tm_config.json
TABLEFORMER_SHARED: dict[str, Any] = {
    "backbone": "resnet18",
    "resized_image": 448,
    "enc_image_size": 28,
    "hidden_dim": 512,
    "tag_decoder_dim": 512,
    "tag_embed_dim": 16,
    "tag_attention_dim": 256,
    "bbox_embed_dim": 256,
    "bbox_attention_dim": 512,
    "nheads": 8,
    "bbox_classes": 2,
    "max_steps": 1024,
    "beam_size": 5,
}
TABLEFORMER_PUBLISHED: dict[str, dict[str, Any]] = {
    "fast": {**TABLEFORMER_SHARED, "enc_layers": 4, "dec_layers": 2, "weights_mb": 145},
    "accurate": {**TABLEFORMER_SHARED, "enc_layers": 6, "dec_layers": 6, "weights_mb": 213},
}

SEED = 4321
TEXT_SHARE = 0.08  # ~24 of 300 queries score as text before docling merges overlapping boxes
TABLE_SHARE = 0.004  # ~1 table query per page on average, clustered on some pages
TABLE_TAG_STEPS = 200  # tags decoded per table; an assumption, see the doc
CALIBRATION_PAGES = 4
HEAD_SCALE = 4.0  # logit units per standard deviation of the chosen direction
OTHER_CLASS_BIAS = -12.0
# Real page renders score lower on both directions than the synthetic calibration pages; these
# logit offsets were measured on the fixture pages (2305.03393v1-pg9, multi_page, mathfuncs) so
# that every page gets some text boxes and about half get a table.
TEXT_BIAS_OFFSET = 3.0
TABLE_BIAS_OFFSET = 3.0


def heron_config() -> Any:
    """The RTDetrV2Config of docling-layout-heron, with docling's label names."""
    from transformers import RTDetrResNetConfig, RTDetrV2Config

    p = HERON_PUBLISHED
    resnet: Any = RTDetrResNetConfig  # its stubs miss the backbone mixin's out_features
    backbone = resnet(
        embedding_size=p["backbone_embedding_size"],
        hidden_sizes=p["backbone_hidden_sizes"],
        depths=p["backbone_depths"],
        layer_type=p["backbone_layer_type"],
        out_features=p["backbone_out_features"],
    )
    return RTDetrV2Config(
        backbone_config=backbone,
        d_model=p["d_model"],
        encoder_hidden_dim=p["encoder_hidden_dim"],
        encoder_in_channels=p["encoder_in_channels"],
        encoder_layers=p["encoder_layers"],
        encoder_ffn_dim=p["encoder_ffn_dim"],
        encoder_attention_heads=p["encoder_attention_heads"],
        decoder_layers=p["decoder_layers"],
        decoder_ffn_dim=p["decoder_ffn_dim"],
        decoder_attention_heads=p["decoder_attention_heads"],
        decoder_n_points=p["decoder_n_points"],
        num_queries=p["num_queries"],
        id2label=dict(enumerate(LAYOUT_LABELS)),
        label2id={label: i for i, label in enumerate(LAYOUT_LABELS)},
    )


def tableformer_config(mode: str) -> dict[str, Any]:
    """A tm_config.json for ``mode`` at the published sizes (decoding capped, see the doc)."""
    p = TABLEFORMER_PUBLISHED[mode]
    config = _tableformer_config()
    config["dataset"]["resized_image"] = p["resized_image"]
    model_keys = (
        "backbone",
        "enc_image_size",
        "hidden_dim",
        "tag_decoder_dim",
        "tag_embed_dim",
        "tag_attention_dim",
        "bbox_embed_dim",
        "bbox_attention_dim",
        "enc_layers",
        "dec_layers",
        "nheads",
        "bbox_classes",
    )
    config["model"].update({key: p[key] for key in model_keys})
    config["model"]["name"] = f"faithful_{mode}"
    config["preparation"]["max_tag_len"] = p["max_steps"]
    config["predict"].update({"max_steps": TABLE_TAG_STEPS, "beam_size": p["beam_size"]})
    return config


def _synthetic_pages(count: int) -> Any:
    """Seeded page-like images in [0, 1]: white, with dark text lines and sometimes a grid."""
    import torch

    size = HERON_PUBLISHED["image_size"]
    gen = torch.Generator().manual_seed(SEED)
    pages = torch.ones(count, 3, size, size)
    for page in pages:
        for _ in range(int(torch.randint(15, 40, (1,), generator=gen))):
            x, y = (int(v) for v in torch.randint(40, size - 200, (2,), generator=gen))
            width = int(torch.randint(60, 160, (1,), generator=gen))
            page[:, y : y + 6, x : x + width] = 0.1
        if int(torch.randint(0, 2, (1,), generator=gen)):
            top = int(torch.randint(100, 300, (1,), generator=gen))
            page[:, top : top + 200 : 25, 80:560] = 0.0
            page[:, top : top + 200, 80:560:80] = 0.0
    return pages


def _steer_layout(model: Any) -> None:
    """Point the text/table heads at real spread of the untrained decoder output (see above)."""
    import torch

    label_ids = {label: i for i, label in enumerate(LAYOUT_LABELS)}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
        model.eval()
        hidden = model(pixel_values=_synthetic_pages(CALIBRATION_PAGES)).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1])
        centre = flat.mean(0)
        _, _, directions = torch.pca_lowrank(flat - centre, q=6, center=False)
        # The first two directions separate whole blocks of near-identical queries; later ones
        # vary query by query, which is what a page of distinct regions looks like.
        steer = {
            "text": (directions[:, 2], TEXT_SHARE, TEXT_BIAS_OFFSET),
            "table": (directions[:, 3], TABLE_SHARE, TABLE_BIAS_OFFSET),
        }
        heads = [*model.class_embed, *model.model.decoder.class_embed]
        for head in heads:
            head.bias.fill_(OTHER_CLASS_BIAS)
        for label, (direction, share, offset) in steer.items():
            scores = (flat - centre) @ direction
            spread = float(scores.std())
            cut = float(torch.quantile(scores, 1.0 - share))
            row = direction * (HEAD_SCALE / spread)
            bias = -float(row @ centre) - cut * HEAD_SCALE / spread + offset
            for head in heads:
                head.weight[label_ids[label]] = row
                head.bias[label_ids[label]] = bias


def build_faithful_layout(folder: Path) -> None:
    import torch
    from transformers import RTDetrImageProcessor, RTDetrV2ForObjectDetection

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = RTDetrV2ForObjectDetection(heron_config())
    _steer_layout(model)
    _save_layout(model, folder)
    size = HERON_PUBLISHED["image_size"]
    RTDetrImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)


def _steer_tableformer(model: Any) -> None:
    """Never end early, prefer cells: every table decodes TABLE_TAG_STEPS tags."""
    import torch

    from harness.stand_in_models import TABLEFORMER_WORD_MAP_TAG as tags

    fc = model._tag_transformer._fc
    with torch.no_grad():
        fc.weight.mul_(0.01)
        fc.bias.zero_()
        fc.bias[tags["fcel"]] = 4.0
        fc.bias[tags["<end>"]] = -1e4


def build_faithful_tableformer(folder: Path) -> None:
    import torch
    from docling_ibm_models.tableformer.models.table04_rs.tablemodel04_rs import (
        TableModel04_rs,
    )
    from safetensors.torch import save

    model_class: Any = TableModel04_rs  # unannotated
    for mode in TABLEFORMER_MODES:
        torch.manual_seed(SEED)
        config = tableformer_config(mode)
        model = model_class(config, {"word_map": config["dataset_wordmap"]}, "cpu")
        _steer_tableformer(model)
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        mode_dir = folder / mode
        mode_dir.mkdir(parents=True, exist_ok=True)
        _write_json(mode_dir / "tm_config.json", config)
        target = mode_dir / f"tableformer_{mode}.safetensors"
        _write_bytes(target, save(state, metadata={"format": "pt"}))
