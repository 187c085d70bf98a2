"""What a page costs the layout model at each batch size, on this machine's device.

Usage:
    .venv/bin/python tools/layout_batch_cost.py --models DIR --corpus DIR --output OUT.json \
        [--pages 16] [--sizes 1 4 16]

Loads docling's layout model from DIR (the stand-ins' ``artifacts_path`` layout) the way the
daemon's docling backend does, renders the first page of ``pages`` PDFs of the corpus at the
scale docling uses for layout (1.0), warms the model on one page, then runs all of them through
the model's own batch prediction in batches of each size and reports seconds per page. This is
what cross-document batching trades on: on a GPU a fuller batch costs less per page; on a CPU
it may cost more.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchmark
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.engine.gpu import probe
from sir_convert_a_lot.options import ConversionOptions
from toolkit import write_report


def layout_engine(models: Path, device: str, model_thread: ThreadPoolExecutor) -> Any:
    backend = DoclingBackend(
        BackendContext(
            device="cuda" if device == "cuda" else "cpu",
            device_index=0,
            model_thread=model_thread,
            models_path=str(models),
        )
    )
    backend.load((ConversionOptions(backend_strategy="docling", ocr_mode="off"),))
    (converter,) = backend._converters.values()
    (pipeline,) = converter.initialized_pipelines.values()
    return pipeline.layout_model.model.engine


def page_inputs(pdfs: list[Path]) -> list[Any]:
    import pymupdf
    from docling.models.inference_engines.object_detection.base import (
        ObjectDetectionEngineInput,
    )
    from PIL import Image

    inputs = []
    for pdf in pdfs:
        with pymupdf.open(pdf) as document:
            png = document[0].get_pixmap().tobytes("png")
        image = Image.open(io.BytesIO(png)).convert("RGB")
        inputs.append(ObjectDetectionEngineInput(image=image, metadata={"page_no": 1}))
    return inputs


def seconds_per_page(engine: Any, inputs: list[Any], size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(inputs), size):
        engine.predict_batch(inputs[start : start + size])
    return (time.perf_counter() - started) / len(inputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    device = "cuda" if probe(0).cuda_available else "cpu"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda") as model_thread:
        engine = layout_engine(args.models, device, model_thread)
        inputs = page_inputs(benchmark.find_pdfs(args.corpus)[: args.pages])

        def measure() -> dict[str, Any]:
            engine.predict_batch(inputs[:1])  # warm
            return {
                str(size): round(seconds_per_page(engine, inputs, size), 4) for size in args.sizes
            }

        per_page = model_thread.submit(measure).result()
    report = {
        "command": " ".join(["tools/layout_batch_cost.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "models": str(args.models),
        "pages": len(inputs),
        "seconds_per_page_by_batch_size": per_page,
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
