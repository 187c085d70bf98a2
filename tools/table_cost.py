"""What a table costs TableFormer: docling's own prediction, the worker's, and tables together.

Usage:
    .venv/bin/python tools/table_cost.py --models DIR --output OUT.json \
        [--tables 8] [--sizes 1 4 8] [--lanes 1 8]

Loads TableFormer fast from DIR (the stand-ins' ``artifacts_path`` layout) as docling does, on
this machine's GPU when it has one, and predicts ``tables`` table images on one thread three
ways: docling-ibm-models' own ``TableModel04_rs.predict``, one table at a time; the worker's
``tableformer_fast.predict``, one at a time; and ``tableformer_fast.predict_many``, in batches
of each size. Reports seconds per table, whether every way gave docling's own tags, and whether
every table predicted together came out bitwise as it did alone (``bitwise_as_alone``: a
document's tables must not depend on the documents beside it). ``--lanes`` also times the fast
prediction with each slab width (``tableformer_lanes.LANES``: tables decoded in lockstep), each
against its own alone, to show what lockstep would buy on this machine. The images are random
pixels cut to table shapes: random weights write the same number of tags whatever the picture,
so only the model's size and the tags written set the cost.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sir_convert_a_lot.backends import tableformer_fast, tableformer_lanes
from sir_convert_a_lot.engine.gpu import probe
from toolkit import write_report

FAST_MODEL = "docling-project--docling-models/model_artifacts/tableformer/fast"


def table_predictor(models: Path, device: str) -> Any:
    import docling_ibm_models.tableformer.common as common
    from docling_ibm_models.tableformer.data_management.tf_predictor import TFPredictor

    folder = models / FAST_MODEL
    config = common.read_config(str(folder / "tm_config.json"))  # type: ignore[no-untyped-call]
    config["model"]["save_dir"] = str(folder)
    return TFPredictor(config, device, 4)


def table_images(predictor: Any, count: int) -> list[Any]:
    import numpy

    rng = numpy.random.default_rng(0)
    shapes = [(160 + 60 * (n % 5), 300 + 80 * (n % 3), 3) for n in range(count)]
    return [
        predictor._prepare_image(rng.integers(0, 255, shape).astype("uint8")) for shape in shapes
    ]


def timed(run: Callable[[], list[Any]], count: int) -> tuple[float, list[Any]]:
    import torch

    started = time.perf_counter()
    predictions = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return round((time.perf_counter() - started) / count, 4), predictions


def measure(
    predictor: Any, images: list[Any], sizes: list[int], lanes: list[int] | None = None
) -> dict[str, Any]:
    """Seconds per table each way, on the calling thread (the caller's one model thread)."""
    import torch

    model = predictor._model
    steps = model._max_pred_len
    with torch.no_grad():
        model.predict(images[0], steps, 1)  # warm
        library, expected = timed(lambda: [model.predict(i, steps, 1) for i in images], len(images))
        fast = _fast(model, images, sizes)
    report: dict[str, Any] = {
        "seconds_per_table": {"docling_predict": library, "fast_alone": fast["alone"]},
        "seconds_per_table_together_by_batch_size": fast["together"],
        "lanes": fast["lanes"],
        "tags_per_table": round(sum(len(p[0]) for p in expected) / len(expected), 1),
        "same_tags_as_docling": all(t == [p[0] for p in expected] for t in fast["tags"]),
        "bitwise_as_alone": fast["bitwise_as_alone"],
    }
    if lanes:
        device = images[0].device.type
        report["by_lanes"] = {}
        for count in lanes:
            saved = tableformer_lanes.LANES.get(device)
            tableformer_lanes.LANES[device] = count
            try:
                way = _fast(model, images, sizes)
            finally:
                tableformer_lanes.LANES[device] = saved if saved is not None else 1
            del way["tags"]
            report["by_lanes"][str(count)] = way
    return report


def _fast(model: Any, images: list[Any], sizes: list[int]) -> dict[str, Any]:
    """The fast prediction alone and together by batch size, with the slab width in force."""
    lanes = tableformer_lanes.lanes_for(model._tag_transformer, images[0].device)
    alone_seconds, alone = timed(
        lambda: [tableformer_fast.predict(model, i, 0, 1) for i in images], len(images)
    )
    together: dict[str, float] = {}
    tags, bitwise = [[p[0] for p in alone]], True
    for size in sizes:
        seconds, predicted = timed(functools.partial(_together, model, images, size), len(images))
        together[str(size)] = seconds
        tags.append([p[0] for p in predicted])
        bitwise = bitwise and all(map(_identical, alone, predicted))
    return {
        "lanes": lanes,
        "alone": alone_seconds,
        "together": together,
        "tags": tags,
        "bitwise_as_alone": bitwise,
    }


def _identical(one: Any, other: Any) -> bool:
    import torch

    return bool(
        one[0] == other[0] and torch.equal(one[1], other[1]) and torch.equal(one[2], other[2])
    )


def _together(model: Any, images: list[Any], size: int) -> list[Any]:
    groups = [images[n : n + size] for n in range(0, len(images), size)]
    return [p for group in groups for p in tableformer_fast.predict_many(model, group)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--lanes", type=int, nargs="+", help="also time these slab widths")
    args = parser.parse_args()
    if not (args.models / FAST_MODEL / "tm_config.json").is_file():
        parser.error(
            f"--models {args.models}: no TableFormer fast under it ({FAST_MODEL}); build the "
            "stand-ins with: .venv/bin/python -m harness.stand_in_models "
            "--faithful DIR"
        )
    if args.tables < 1 or min(args.sizes + (args.lanes or [1])) < 1:
        parser.error("--tables, --sizes and --lanes take whole numbers of at least 1")
    device = "cuda" if probe(0).cuda_available else "cpu"
    predictor = table_predictor(args.models, "cuda:0" if device == "cuda" else "cpu")
    report = {
        "command": " ".join(["tools/table_cost.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "models": str(args.models),
        "tables": args.tables,
        **measure(predictor, table_images(predictor, args.tables), args.sizes, args.lanes),
    }
    write_report(args.output, report)
    return 0 if report["same_tags_as_docling"] and report["bitwise_as_alone"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
