"""What a table costs TableFormer: docling's own prediction, the worker's, and tables together.

Usage:
    .venv/bin/python tools/table_cost.py --models DIR --output OUT.json \
        [--tables 8] [--sizes 1 4 8]

Loads TableFormer fast from DIR (the stand-ins' ``artifacts_path`` layout) as docling does, on
this machine's GPU when it has one, and predicts ``tables`` table images on one thread three
ways: docling-ibm-models' own ``TableModel04_rs.predict``, one table at a time; the worker's
``tableformer_fast.predict``, one at a time; and ``tableformer_fast.predict_many``, in batches
of each size. Reports seconds per table and whether every way gave docling's own tags. The
images are random pixels cut to table shapes: random weights write the same number of tags
whatever the picture, so only the model's size and the tags written set the cost.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sir_convert_a_lot.backends import tableformer_fast
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


def measure(predictor: Any, images: list[Any], sizes: list[int]) -> dict[str, Any]:
    """Seconds per table each way, on the calling thread (the caller's one model thread)."""
    import torch

    model = predictor._model
    steps = model._max_pred_len
    with torch.no_grad():
        model.predict(images[0], steps, 1)  # warm
        library, expected = timed(lambda: [model.predict(i, steps, 1) for i in images], len(images))
        alone, fast = timed(
            lambda: [tableformer_fast.predict(model, i, steps, 1) for i in images], len(images)
        )
        together: dict[str, float] = {}
        same = [p[0] for p in fast] == [p[0] for p in expected]
        for size in sizes:
            seconds, predicted = timed(
                functools.partial(_together, model, images, size), len(images)
            )
            together[str(size)] = seconds
            same = same and [p[0] for p in predicted] == [p[0] for p in expected]
    return {
        "seconds_per_table": {"docling_predict": library, "fast_alone": alone},
        "seconds_per_table_together_by_batch_size": together,
        "tags_per_table": round(sum(len(p[0]) for p in expected) / len(expected), 1),
        "same_tags_as_docling": same,
    }


def _together(model: Any, images: list[Any], size: int) -> list[Any]:
    groups = [images[n : n + size] for n in range(0, len(images), size)]
    return [p for group in groups for p in tableformer_fast.predict_many(model, group)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if not (args.models / FAST_MODEL / "tm_config.json").is_file():
        parser.error(
            f"--models {args.models}: no TableFormer fast under it ({FAST_MODEL}); build the "
            "stand-ins with: .venv/bin/python -m sir_convert_a_lot.testing.stand_in_models "
            "--faithful DIR"
        )
    if args.tables < 1 or min(args.sizes) < 1:
        parser.error("--tables and --sizes take whole numbers of at least 1")
    device = "cuda" if probe(0).cuda_available else "cpu"
    predictor = table_predictor(args.models, "cuda:0" if device == "cuda" else "cpu")
    report = {
        "command": " ".join(["tools/table_cost.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "models": str(args.models),
        "tables": args.tables,
        **measure(predictor, table_images(predictor, args.tables), args.sizes),
    }
    write_report(args.output, report)
    return 0 if report["same_tags_as_docling"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
