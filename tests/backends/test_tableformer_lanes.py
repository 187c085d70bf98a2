"""A table's prediction never depends on the tables predicted with it: bitwise the same tags,
classes and boxes alone, among any neighbours, in any order and batch size, with its
neighbours ending at other steps; and still docling's own prediction for that table."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from harness.scripted_tables import CELL_TAGS, History, RowScripts
from sir_convert_a_lot.backends import tableformer_fast, tableformer_lanes
from tests.backends.test_tableformer_fast import assert_same, load_predictor

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

Prediction = tuple[list[int], Tensor, Tensor]
ENDS = [1, 5, 37, 90, 2, 12, 20, 3, 9, 30, 7, 15]  # steps at which each table writes <end>


@pytest.fixture(scope="module")
def predictor(stand_in_models: Path) -> Iterator[Any]:
    """The stand-in's predictor, on one thread: its steps are too small to share, and on a
    busy machine threads waiting for each other make these tests minutes slower."""
    loaded = load_predictor(stand_in_models)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield loaded
    torch.set_num_threads(threads)


def images(predictor: Any, count: int) -> list[Tensor]:
    """Distinct table images: random pixels, each table a different shape and brightness."""
    rng = np.random.default_rng(11)
    out = []
    for index in range(count):
        shape = (80 + 23 * index, 300 - 9 * index, 3)
        pixels = rng.integers(0, 255, shape) * (0.3 + 0.7 * index / count)
        out.append(predictor._prepare_image(pixels.astype(np.uint8)))
    return out


def assert_identical(expected: Prediction, got: Prediction) -> None:
    assert got[0] == expected[0]
    assert torch.equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


class Scripted:
    """A copy of the stand-in TableFormer whose tables end at the steps of ``ENDS``, and the
    images they were scripted for."""

    def __init__(self, model: Any, tables: list[Tensor]) -> None:
        self.model = model
        self.tables = tables
        self._alone: dict[int, list[Prediction]] = {}

    def alone(self) -> list[Prediction]:
        """Each table's fast prediction alone, with the slab width now in force."""
        lanes = tableformer_lanes.LANES["cpu"]
        if lanes not in self._alone:
            self._alone[lanes] = [
                tableformer_fast.predict(self.model, t, 0, 1) for t in self.tables
            ]
        return self._alone[lanes]


@pytest.fixture(scope="module")
def scripted(predictor: Any) -> Scripted:
    model = copy.deepcopy(predictor._model)
    model._max_pred_len = max(ENDS) + 10
    words = model._init_data["word_map"]["word_map_tag"]
    rng = random.Random(5)
    scripts = [
        [words[rng.choice(CELL_TAGS)] for _ in range(end - 1)] + [words["<end>"]] for end in ENDS
    ]
    transformer = model._tag_transformer
    with pytest.MonkeyPatch.context() as patch:  # the lanes are checked on the real head
        independent_lanes(patch)
        assert tableformer_lanes.lanes_for(transformer, torch.device("cpu")) == 8
    history = History(transformer._embedding, words["<start>"])
    head = RowScripts(transformer._fc, history, scripts)
    transformer._embedding, transformer._fc = history, head
    tables = images(predictor, len(ENDS))
    head.recording = True
    with torch.no_grad():
        for image in tables:
            model.predict(image, model._max_pred_len, 1)
    head.recording = False
    return Scripted(model, tables)


def independent_lanes(patch: pytest.MonkeyPatch) -> None:
    """Eight lanes on the CPU, attending one lane at a time. On this CPU the batched attention
    of the tiny stand-in gives a lane's result by its position (the lane check sees it and
    falls back to one lane, as it should), so lockstep is tested here with an attention that
    is lane-independent by construction; the GPU test runs the batched one."""
    attend = tableformer_lanes._attend

    def by_lane(query: Tensor, keys_t: Tensor, values: Tensor) -> Tensor:
        lanes = range(query.size(0))
        parts = [attend(query[j : j + 1], keys_t[j : j + 1], values[j : j + 1]) for j in lanes]
        return torch.cat(parts)

    patch.setitem(tableformer_lanes.LANES, "cpu", 8)
    patch.setattr(tableformer_lanes, "_attend", by_lane)


@pytest.fixture(params=[1, 8], ids=["one lane", "eight lanes"])
def lanes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The slab width on this CPU: one table at a time, or eight in lockstep."""
    if request.param == 8:
        independent_lanes(monkeypatch)
    else:
        monkeypatch.setitem(tableformer_lanes.LANES, "cpu", 1)
    return int(request.param)


def test_tables_ending_at_different_steps_in_lockstep_are_each_as_docling_alone(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tableformer_fast, "lanes_for", lambda *_: 8)  # lockstep, unchecked
    model = scripted.model
    together = tableformer_fast.predict_many(model, scripted.tables)
    for index, (image, got) in enumerate(zip(scripted.tables, together, strict=True)):
        with torch.no_grad():
            expected = model.predict(image, model._max_pred_len, 1)
        assert len(expected[0]) == ENDS[index] + 1  # the script held: <start>, tags, <end>
        assert_same(expected, got)


def test_a_table_is_bitwise_the_same_whatever_its_neighbours(
    scripted: Scripted, lanes: int
) -> None:
    alone = scripted.alone()
    rng = random.Random(lanes)
    for size in (1, 3, 8, 12):
        chosen = rng.sample(range(len(scripted.tables)), size)  # other neighbours, shuffled
        together = tableformer_fast.predict_many(
            scripted.model, [scripted.tables[i] for i in chosen]
        )
        for index, got in zip(chosen, together, strict=True):
            assert_identical(alone[index], got)


def test_unscripted_tables_are_bitwise_the_same_in_any_order(predictor: Any, lanes: int) -> None:
    model = predictor._model
    tables = images(predictor, 10)
    alone = [tableformer_fast.predict(model, image, 0, 1) for image in tables]
    order = list(range(10))
    random.Random(2).shuffle(order)
    together = tableformer_fast.predict_many(model, [tables[i] for i in order])
    for index, got in zip(order, together, strict=True):
        assert_identical(alone[index], got)


def test_beam_size_is_ignored_as_docling_ignores_it(predictor: Any) -> None:
    """docling passes the config's beam_size (5 in the released configs) as ``k``; the library's
    ``TableModel04_rs.predict`` decodes greedily whatever it is, and so does the fast one."""
    model = predictor._model
    image = images(predictor, 1)[0]
    with torch.no_grad():
        greedy = model.predict(image, model._max_pred_len, 1)
        assert_identical(greedy, model.predict(image, model._max_pred_len, 5))
    fast = tableformer_fast.predict(model, image, model._max_pred_len, 1)
    assert_identical(fast, tableformer_fast.predict(model, image, model._max_pred_len, 5))
    assert_same(greedy, fast)


def test_the_lane_check_passes_where_lanes_are_independent(
    predictor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where lanes are independent, the check must let them be used: a check that always
    failed would quietly turn lockstep off on every GPU."""
    independent_lanes(monkeypatch)
    model = copy.deepcopy(predictor._model)
    assert tableformer_lanes.lanes_for(model._tag_transformer, torch.device("cpu")) == 8


def test_a_kernel_that_treats_rows_by_position_means_one_table_at_a_time(
    predictor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a lane's result would depend on its position, tables are decoded one by one, each
    in a slab of one lane, still bitwise the same alone and together."""
    linear = torch.nn.functional.linear

    def by_position(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        out = linear(x, weight, bias)
        if x.dim() == 2:
            out = out + 1e-3 * torch.arange(x.size(0), dtype=x.dtype).unsqueeze(1)
        return out

    model = copy.deepcopy(predictor._model)
    monkeypatch.setitem(tableformer_lanes.LANES, "cpu", 8)
    monkeypatch.setattr(torch.nn.functional, "linear", by_position)
    assert tableformer_lanes.lanes_for(model._tag_transformer, torch.device("cpu")) == 1
    tables = images(predictor, 3)
    together = tableformer_fast.predict_many(model, tables)
    for image, got in zip(tables, together, strict=True):
        assert_identical(tableformer_fast.predict(model, image, 0, 1), got)


def test_the_kernel_switches_are_put_back(predictor: Any) -> None:
    cudnn = torch.backends.cudnn
    before = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cudnn.benchmark = True
    try:
        tableformer_fast.predict(predictor._model, images(predictor, 1)[0], 0, 1)
        assert cudnn.benchmark and not cudnn.deterministic
    finally:
        torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = before


@pytest.mark.gpu
def test_a_table_is_bitwise_the_same_whatever_its_neighbours_on_the_gpu(
    predictor: Any,
) -> None:
    model = copy.deepcopy(predictor._model).to("cuda")
    tables = [image.to("cuda") for image in images(predictor, 12)]
    assert tableformer_lanes.lanes_for(model._tag_transformer, torch.device("cuda")) > 1
    alone = [tableformer_fast.predict(model, image, 0, 1) for image in tables]
    for size in (3, 8, 12):
        chosen = random.Random(size).sample(range(12), size)
        together = tableformer_fast.predict_many(model, [tables[i] for i in chosen])
        for index, got in zip(chosen, together, strict=True):
            assert_identical(alone[index], got)
