"""The table cost runner: docling's own TableFormer prediction against the worker's, alone and
together, and its verdict on whether they wrote the same tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot.backends import tableformer_fast
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import table_cost

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test


def test_each_way_is_timed_and_gives_docling_s_tags(stand_in_models: Path) -> None:
    predictor = table_cost.table_predictor(stand_in_models, "cpu")
    images = table_cost.table_images(predictor, 3)
    report = table_cost.measure(predictor, images, [1, 3], lanes=[1, 2])
    assert report["same_tags_as_docling"] is True
    assert report["bitwise_as_alone"] is True
    assert set(report["by_lanes"]) == {"1", "2"}
    assert all(way["bitwise_as_alone"] for way in report["by_lanes"].values())
    assert set(report["by_lanes"]["2"]["together"]) == {"1", "3"}
    assert set(report["seconds_per_table"]) == {"docling_predict", "fast_alone"}
    assert set(report["seconds_per_table_together_by_batch_size"]) == {"1", "3"}
    assert all(s > 0 for s in report["seconds_per_table"].values())
    assert report["tags_per_table"] >= 2  # at least the start tag and one more


def test_a_prediction_that_differs_from_docling_s_is_reported(
    stand_in_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    predictor = table_cost.table_predictor(stand_in_models, "cpu")
    images = table_cost.table_images(predictor, 2)
    real = tableformer_fast.predict_many

    def one_tag_off(model: Any, group: list[Any]) -> list[Any]:
        predictions = real(model, group)
        tags, classes, boxes = predictions[0]
        predictions[0] = ([*tags[:-1], tags[-1] + 1], classes, boxes)
        return predictions

    monkeypatch.setattr(tableformer_fast, "predict_many", one_tag_off)
    report = table_cost.measure(predictor, images, [2])
    assert report["same_tags_as_docling"] is False
    assert report["bitwise_as_alone"] is False  # and the table together is not as it was alone


def test_a_models_folder_without_tableformer_says_how_to_build_it(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            str(REPO / "tools" / "table_cost.py"),
            "--models",
            str(tmp_path),
            "--output",
            str(tmp_path / "cost.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "no TableFormer fast under it" in completed.stderr
    assert "stand_in_models --faithful" in completed.stderr
    assert "Traceback" not in completed.stderr
