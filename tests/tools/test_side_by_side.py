"""The side-by-side runner's docling-alone half: docling's own converter, with the options the
daemon's docling backend maps the same config to, converting files one after another."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fixtures.stand_in_models import build_stand_in_models
from harness.pdfs import make_pdf
from tests.helpers import REPO, load_config

sys.path.insert(0, str(REPO / "tools"))
import side_by_side


@pytest.mark.slow
def test_docling_alone_uses_docling_s_own_pipeline_with_the_configured_batching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = build_stand_in_models(tmp_path / "models")
    config = load_config(
        tmp_path,
        conversion={"backend_strategy": "docling", "ocr_mode": "off", "table_mode": "fast"},
        gpu={"models_path": str(models), "layout_batch_size": 16, "table_batch_size": 8},
    )
    from docling.datamodel.base_models import InputFormat

    converter = side_by_side.docling_converter(config, "cpu")
    option = converter.format_to_options[InputFormat.PDF]
    assert option.pipeline_cls.__name__ == "StandardPdfPipeline"  # docling's, not ours
    assert option.pipeline_options.layout_batch_size == 16
    assert option.pipeline_options.table_batch_size == 8
    assert option.pipeline_options.do_ocr is False
    pdfs = [make_pdf(tmp_path / f"doc{n}.pdf", pages=n + 1) for n in range(2)]
    result = side_by_side.docling_alone(config, pdfs, "cpu")
    assert result["pages"] == 3 and result["seconds"] > 0 and result["cpu_seconds"] > 0


def test_each_side_is_summed_up_by_its_median_round() -> None:
    rounds = [
        {"seconds": 10.0, "pages": 20},
        {"seconds": 30.0, "pages": 20},
        {"seconds": 20.0, "pages": 20},
    ]
    summed = side_by_side.side(rounds)
    assert summed["median_seconds"] == 20.0
    assert summed["pages_per_second"] == 1.0
