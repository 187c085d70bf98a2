"""The faithful stand-ins keep the published architectures: a drift from the values the reference
documents (``faithful_models.HERON_PUBLISHED``/``TABLEFORMER_PUBLISHED``) fails here. Nothing is
written to disk for them: the layout model is built on the meta device, TableFormer in memory.
The tiny set built without OCR (as gpu-check builds it) leaves RapidOCR out and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import faithful_models as fm
from harness.stand_in_models import (
    LAYOUT_DIR,
    LAYOUT_LABELS,
    RAPIDOCR_DIR,
    TABLEFORMER_DIR,
    TABLEFORMER_MODES,
    build_stand_in_models,
    main,
)


def test_the_layout_config_is_heron_as_published() -> None:
    config = fm.heron_config()
    p = fm.HERON_PUBLISHED
    backbone = config.backbone_config
    assert (backbone.depths, backbone.embedding_size) == (
        p["backbone_depths"],
        p["backbone_embedding_size"],
    )
    assert backbone.hidden_sizes == p["backbone_hidden_sizes"]
    assert (backbone.layer_type, backbone.out_features) == (
        p["backbone_layer_type"],
        p["backbone_out_features"],
    )
    for key in (
        "d_model",
        "encoder_hidden_dim",
        "encoder_in_channels",
        "encoder_layers",
        "encoder_ffn_dim",
        "encoder_attention_heads",
        "decoder_layers",
        "decoder_ffn_dim",
        "decoder_attention_heads",
        "decoder_n_points",
        "num_queries",
        "num_labels",
    ):
        assert getattr(config, key) == p[key], key
    assert [config.id2label[i] for i in range(config.num_labels)] == list(LAYOUT_LABELS)


def test_the_layout_model_has_the_published_size() -> None:
    import torch
    from transformers import RTDetrV2ForObjectDetection

    with torch.device("meta"):
        model: Any = RTDetrV2ForObjectDetection(fm.heron_config())
    # Hugging Face counts every stored tensor, BatchNorm statistics included (tied heads once).
    stored = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    assert stored / 1e6 == pytest.approx(fm.HERON_PUBLISHED["parameters_millions"], rel=0.005)
    assert stored * 4 / 1e6 == pytest.approx(fm.HERON_PUBLISHED["weights_mb"], rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "accurate"])
def test_tableformer_is_as_published(mode: str) -> None:
    from docling_ibm_models.tableformer.models.table04_rs.tablemodel04_rs import TableModel04_rs

    p = fm.TABLEFORMER_PUBLISHED[mode]
    config = fm.tableformer_config(mode)
    for key, value in config["model"].items():
        if key in p:
            assert value == p[key], key
    assert config["dataset"]["resized_image"] == p["resized_image"]
    model_class: Any = TableModel04_rs
    model = model_class(config, {"word_map": config["dataset_wordmap"]}, "cpu")
    stored_mb = sum(t.numel() * 4 for t in model.state_dict().values()) / 1e6
    assert stored_mb == pytest.approx(p["weights_mb"], rel=0.01)


def test_the_cli_refuses_a_wrong_call() -> None:
    assert main(["stand_in_models", "--faithful"]) == 2
    assert main(["stand_in_models", "--big", "out"]) == 2


@pytest.mark.slow
def test_without_ocr_no_rapidocr_folder_is_written(tmp_path: Path) -> None:
    # gpu-check on the device runs with OCR off and without rapidocr installed (tools/gpu-bundle
    # leaves it out); the layout and TableFormer stand-ins must still be all there.
    models = build_stand_in_models(tmp_path / "models", ocr=False)
    assert not (models / RAPIDOCR_DIR).exists()
    assert any((models / LAYOUT_DIR).iterdir())
    for mode in TABLEFORMER_MODES:
        assert any((models / TABLEFORMER_DIR / mode).iterdir())
