"""The fast TableFormer against docling-ibm-models' own ``predict``, on the device in use.

Part of ``tools/gpu-check`` (and runnable alone:
``python3 tools/gpu_tables.py --models DIR [--device cuda]``). On the stand-in TableFormer with
a scripted tag head (``testing.scripted_tables``: 32 tables writing ``<end>`` at steps from 1 to
90; on the CPU six, up to 16), for TF32 on and off (both torch switches, as a user's process
may leave them) and batch sizes 1, 8 and 32, it reports per setting:
- against docling's own ``predict`` of each table alone: tables with the same tags, the same
  cell classes, and the largest box difference;
- against the fast prediction of the same table alone: tables bitwise identical (a document's
  tables must not depend on its neighbours);
- seconds for the whole set.
The fast path switches TF32 off inside itself, so its numbers should not move with the switch;
docling's own may.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BATCH_SIZES = (1, 8, 32)
ENDS = [1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 14, 15, 17, 20, 22, 25]
ENDS += [28, 30, 33, 37, 40, 44, 48, 52, 57, 62, 67, 72, 77, 82, 86, 90]
ENDS_ON_CPU = [1, 2, 4, 7, 11, 16]  # --allow-cpu in CI: the library's predict is slow there
TABLEFORMER = "docling-project--docling-models/model_artifacts/tableformer/fast"
BOX_TOLERANCE = 5e-4  # backends.table_check's tolerance: under a pixel on the page image


def load_predictor(models: Path, device: str) -> Any:
    """docling-ibm-models' table predictor on the stand-in TableFormer, as docling builds it."""
    import docling_ibm_models.tableformer.common as common
    from docling_ibm_models.tableformer.data_management.tf_predictor import TFPredictor

    folder = models / TABLEFORMER
    config = common.read_config(str(folder / "tm_config.json"))  # type: ignore[no-untyped-call]
    config["model"]["save_dir"] = str(folder)
    return TFPredictor(config, device, 2)


def table_images(predictor: Any, count: int, device: str) -> list[Any]:
    """Distinct table images: random pixels, each a different shape and brightness."""
    import numpy as np

    rng = np.random.default_rng(11)
    out = []
    for index in range(count):
        shape = (80 + 13 * index, 300 - 5 * index, 3)
        pixels = rng.integers(0, 255, shape) * (0.3 + 0.7 * index / count)
        out.append(predictor._prepare_image(pixels.astype(np.uint8)).to(device))
    return out


@contextmanager
def tf32(on: bool) -> Iterator[None]:
    """Both of torch's TF32 switches set as a process might leave them, then put back."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = on
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def compare(models: Path, device: str) -> dict[str, Any]:
    """On the CPU, fewer and shorter tables and TF32 off only (it is a GPU switch)."""
    import torch

    from harness.scripted_tables import scripted_model
    from sir_convert_a_lot.backends import tableformer_fast

    predictor = load_predictor(models, device)
    ends, switches = (ENDS, (True, False)) if device == "cuda" else (ENDS_ON_CPU, (False,))
    images = table_images(predictor, len(ends), device)
    model = scripted_model(predictor._model, images, ends)
    settings = []
    for on in switches:
        with tf32(on), torch.no_grad():
            library = [model.predict(image, model._max_pred_len, 1) for image in images]
            alone = [tableformer_fast.predict(model, image, 0, 1) for image in images]
            for batch in BATCH_SIZES:
                started = time.monotonic()
                got = []
                for first in range(0, len(images), batch):
                    got += tableformer_fast.predict_many(model, images[first : first + batch])
                seconds = time.monotonic() - started
                settings.append(
                    {"tf32": on, "batch_size": batch, "seconds": round(seconds, 3)}
                    | _agreement(library, alone, got)
                )
    lengths = [len(tags) - 1 for tags, _classes, _boxes in library]
    return {"device": device, "tables": len(images), "tag_steps": lengths, "settings": settings}


def _agreement(library: list[Any], alone: list[Any], got: list[Any]) -> dict[str, Any]:
    import torch

    same_tags = same_classes = bitwise = 0
    largest = 0.0
    for expected, own, prediction in zip(library, alone, got, strict=True):
        tags, classes, boxes = prediction
        if tags == expected[0]:
            same_tags += 1
        if classes.shape == expected[1].shape and torch.equal(
            classes.argmax(-1) if classes.numel() else classes,
            expected[1].argmax(-1) if expected[1].numel() else expected[1],
        ):
            same_classes += 1
        if boxes.shape == expected[2].shape and boxes.numel():
            largest = max(largest, float((boxes - expected[2]).abs().max()))
        if tags == own[0] and torch.equal(classes, own[1]) and torch.equal(boxes, own[2]):
            bitwise += 1
    return {
        "same_tags_as_docling": same_tags,
        "same_classes_as_docling": same_classes,
        "largest_box_difference": largest,
        "bitwise_as_alone": bitwise,
    }


def problems(report: dict[str, Any]) -> list[str]:
    """What fails the check: a table that depends on its neighbours, or (TF32 off, the fast
    path's own setting) a table unlike docling's."""
    found = []
    total = report["tables"]
    for setting in report["settings"]:
        label = f"tables, batch {setting['batch_size']}, TF32 {'on' if setting['tf32'] else 'off'}"
        if setting["bitwise_as_alone"] != total:
            found.append(f"{label}: {total - setting['bitwise_as_alone']} differ from alone")
        if not setting["tf32"] and (
            setting["same_tags_as_docling"] != total
            or setting["same_classes_as_docling"] != total
            or setting["largest_box_difference"] > BOX_TOLERANCE
        ):
            found.append(f"{label}: unlike docling's own prediction {setting}")
    return found


def render(report: dict[str, Any]) -> list[str]:
    total = report["tables"]
    lines = [
        f"Tables ({total} on {report['device']}, scripted to end after "
        f"{min(report['tag_steps'])} to {max(report['tag_steps'])} tags), fast against "
        "docling-ibm-models' own predict:",
        "",
        "| TF32 | batch | same tags | same classes | largest box diff | bitwise as alone | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["settings"]:
        lines.append(
            f"| {'on' if s['tf32'] else 'off'} | {s['batch_size']} "
            f"| {s['same_tags_as_docling']}/{total} | {s['same_classes_as_docling']}/{total} "
            f"| {s['largest_box_difference']:.2e} | {s['bitwise_as_alone']}/{total} "
            f"| {s['seconds']} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    report = compare(args.models, args.device)
    print(json.dumps(report, indent=2))
    print("\n".join(render(report)))
    return 1 if problems(report) else 0


if __name__ == "__main__":
    raise SystemExit(main())
