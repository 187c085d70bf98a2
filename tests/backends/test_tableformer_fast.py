"""The fast TableFormer prediction gives what docling's own gives: the same tags, the same cell
boxes to float tolerance, the same tables out of docling's predictor, with the library's
structure corrections and span rules forced through both."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sir_convert_a_lot.backends import tableformer_fast
from sir_convert_a_lot.backends.table_fast_path import FastPath, accelerate

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

TABLEFORMER = "docling-project--docling-models/model_artifacts/tableformer/fast"


@pytest.fixture(scope="module")
def predictor(stand_in_models: Path) -> Any:
    return load_predictor(stand_in_models)


def load_predictor(stand_in_models: Path) -> Any:
    """docling-ibm-models' table predictor on the stand-in TableFormer, as docling builds it."""
    import docling_ibm_models.tableformer.common as common
    from docling_ibm_models.tableformer.data_management.tf_predictor import TFPredictor

    folder = stand_in_models / TABLEFORMER
    config = common.read_config(  # type: ignore[no-untyped-call]
        str(folder / "tm_config.json")
    )
    config["model"]["save_dir"] = str(folder)
    return TFPredictor(config, "cpu", 2)


def table_images(predictor: Any, count: int) -> Iterator[Tensor]:
    rng = np.random.default_rng(7)
    for index in range(count):
        pixels = rng.integers(0, 255, (120 + 40 * index, 300, 3)).astype(np.uint8)
        yield predictor._prepare_image(pixels)


def assert_same(
    expected: tuple[Any, Tensor, Tensor], got: tuple[Any, Tensor, Tensor], atol: float = 2e-6
) -> None:
    assert got[0] == expected[0]
    assert got[1].shape == expected[1].shape and got[2].shape == expected[2].shape
    if len(expected[2]):
        torch.testing.assert_close(got[1], expected[1], atol=atol, rtol=0)
        torch.testing.assert_close(got[2], expected[2], atol=atol, rtol=0)


def test_same_tags_and_boxes_as_the_library(predictor: Any) -> None:
    model = predictor._model
    steps = model._max_pred_len
    for image in table_images(predictor, 4):
        with torch.no_grad():
            expected = model.predict(image, steps, 1)
        assert_same(expected, tableformer_fast.predict(model, image, steps, 1))


def test_tables_predicted_together_are_as_each_alone(predictor: Any) -> None:
    model = predictor._model
    images = list(table_images(predictor, 4))
    together = tableformer_fast.predict_many(model, images)
    for image, prediction in zip(images, together, strict=True):
        with torch.no_grad():
            assert_same(model.predict(image, model._max_pred_len, 1), prediction)


class ScriptedTags(nn.Module):  # type: ignore[misc]
    """Stands in for the tag head: picks the scripted tags in turn, whatever the decoder says,
    so that rare tags (spans, ucel, xcel) go through both predictions."""

    def __init__(self, head: nn.Linear, script: list[int]) -> None:
        super().__init__()
        self.head = head
        self.script = script
        self.step = 0

    def forward(self, state: Tensor) -> Tensor:
        logits = self.head(state)
        forced = torch.full_like(logits, -1e9)
        forced[:, self.script[min(self.step, len(self.script) - 1)]] = 0.0
        self.step += 1
        return logits + forced


SCRIPTS = {
    # an ecel first, a span of three closed by a cell, a new line, a row of ucel with an lcel
    # after the ucel (corrected to fcel), an xcel (corrected to lcel), the end
    "spans and corrections": "ecel fcel lcel lcel fcel nl ucel lcel fcel xcel ched rhed srow nl",
    # a span never closed: its first box merges with the last box the table has
    "open span at the end": "fcel nl fcel lcel lcel lcel",
    "empty table": "",
    "no end tag": "fcel " * 300,
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_the_library_rules_hold_on_forced_tags(predictor: Any, script: str) -> None:
    model = copy.deepcopy(predictor._model)
    with torch.no_grad():  # boxes far apart, so a box merged with the wrong one shows
        for parameter in model._bbox_decoder._bbox_embed.parameters():
            parameter.mul_(30.0)
    words = model._init_data["word_map"]["word_map_tag"]
    tags = [words[name] for name in script.split()] + [words["<end>"]]
    head = model._tag_transformer._fc
    image = next(table_images(predictor, 1))
    results = []
    for run in (model.predict, lambda *a: tableformer_fast.predict(model, *a)):
        model._tag_transformer._fc = ScriptedTags(head, tags)
        with torch.no_grad():
            results.append(run(image, model._max_pred_len, 1))
    assert_same(results[0], results[1], atol=5e-4)  # the amplified head amplifies float noise
    assert len(results[0][0]) >= 2  # the start tag and at least one more went through both


def test_docling_predictor_gives_the_same_tables(predictor: Any) -> None:
    """Through the predictor's own table pipeline (cropping, matching to the page's words)."""
    rng = np.random.default_rng(3)
    page = {
        "width": 600.0,
        "height": 800.0,
        "image": rng.integers(0, 255, (800, 600, 3)).astype(np.uint8),
        "tokens": [_word(i) for i in range(60)],
    }
    box = [50.0, 90.0, 500.0, 240.0]
    fast = copy.deepcopy(predictor)
    assert accelerate(fast, FastPath(check_every=0))
    for matching in (True, False):
        expected = predictor.multi_table_predict(copy.deepcopy(page), [list(box)], matching)
        got = fast.multi_table_predict(copy.deepcopy(page), [list(box)], matching)
        assert _structure(got) == _structure(expected)


def _word(index: int) -> dict[str, Any]:
    """One of a grid of words, ten to a line, inside the table's box."""
    left, top = 60.0 + 40 * (index % 10), 100.0 + 20 * (index // 10)
    box = {"l": left, "t": top, "r": left + 30, "b": top + 15}
    return {"id": index, "text": f"w{index}", "bbox": box}


def _structure(output: list[dict[str, Any]]) -> list[Any]:
    details = output[0]["predict_details"]
    cells = [
        (c.get("row_id"), c.get("column_id"), c.get("row_span"), c.get("col_span"))
        for c in output[0]["tf_responses"]
    ]
    return [details["prediction"]["rs_seq"], details["num_rows"], details["num_cols"], cells]


def test_only_the_model_it_was_written_for_is_changed(predictor: Any) -> None:
    class OtherModel:
        def predict(self) -> str:
            return "own"

    other = type("Predictor", (), {"_model": OtherModel()})()
    assert not accelerate(other, FastPath(check_every=0))
    assert other._model.predict() == "own"
    assert not accelerate(None, FastPath(check_every=0))
