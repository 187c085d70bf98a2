"""docling alone against the daemon: the same files, models and options, side by side in one run.

Usage:
    .venv/bin/python tools/side_by_side.py --config CFG --corpus DIR --output OUT.json [--rounds 1]

docling alone: docling's own DocumentConverter and pipeline, with the options the daemon's
docling backend maps CFG to (``docling_pipeline.pipeline_options``: the same models, table mode,
OCR and batch sizes, which are docling's batching knobs; with ``ocr_mode = "auto"`` docling alone
has no page-by-page choice and reads every page), warmed on the first file (untimed),
then every file converted one after another in this process, as a user of docling would.
The daemon: ``tools/benchmark.py``'s run (drop every file at once, wait for every sidecar), its
wall time minus one stability window (a deliberate wait for writers, not work). The sides take
turns, ``rounds`` times each; medians are compared. ``daemon_over_docling`` is the daemon's time
over docling's: under 1.0 the daemon drains the files faster.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchmark
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.config import Config, load
from sir_convert_a_lot.engine.gpu import probe
from toolkit import write_report


def docling_converter(config: Config, device: str) -> Any:
    """docling's own converter for CFG's default options, on ``device``."""
    from docling.datamodel.base_models import InputFormat
    from docling.document_converter import DocumentConverter, PdfFormatOption

    from sir_convert_a_lot.backends.docling_pipeline import pipeline_options

    context = BackendContext(
        device="cuda" if device == "cuda" else "cpu",
        device_index=config.gpu.device_index,
        model_thread=ThreadPoolExecutor(max_workers=1),  # unused: docling runs its own threads
        models_path=config.gpu.models_path,
        batch_sizes=config.gpu.batch_sizes,
        ocr_backend=config.gpu.ocr_backend,
    )
    options = config.defaults
    formats = {
        InputFormat.PDF: PdfFormatOption(
            pipeline_options=pipeline_options(context, options.table_mode, options.ocr_mode)
        )
    }
    return DocumentConverter(format_options=formats)


def docling_alone(config: Config, pdfs: list[Path], device: str) -> dict[str, Any]:
    """One round: every file, one after another, in one warm docling process."""
    converter = docling_converter(config, device)
    converter.convert(pdfs[0])  # loads and warms the models; not timed
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    pages = 0
    for pdf in pdfs:
        result = converter.convert(pdf, raises_on_error=False)
        pages += len(result.pages)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": round(seconds, 3), "pages": pages, "cpu_seconds": round(cpu, 3)}


def daemon(config_path: Path, corpus: Path) -> dict[str, Any]:
    """One round of the daemon draining the files, from tools/benchmark.py."""
    args = argparse.Namespace(
        config=config_path, corpus=corpus, repeat=1, timeout=3600, ready_timeout=900
    )
    result = benchmark.run(args)
    window = float(result["runtime_config"]["watch"].get("stability_seconds", 5))
    return {
        "seconds": round(result["summary"]["wall_seconds"] - window, 3),
        "wall_seconds": result["summary"]["wall_seconds"],
        "stability_seconds": window,
        "pages": result["summary"]["pages"],
        "succeeded_jobs": result["summary"]["succeeded_jobs"],
        "batching": result["batching"],
        "cpu_seconds": result["resource_profile"]["cpu_seconds"],  # daemon and worker, whole run
        "gpu_busy_fraction": result["resource_profile"].get("gpu_busy_fraction"),
    }


def side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in rounds)
    pages = rounds[-1]["pages"]
    return {
        "rounds": rounds,
        "median_seconds": round(seconds, 3),
        "pages_per_second": round(pages / seconds, 3) if seconds else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    config = load(args.config)
    pdfs = benchmark.find_pdfs(args.corpus)
    if not pdfs:
        raise SystemExit(f"no PDFs under {args.corpus}")
    device = "cuda" if probe(config.gpu.device_index).cuda_available else "cpu"
    alone, daemon_rounds = [], []
    for _round in range(args.rounds):
        daemon_rounds.append(daemon(args.config, args.corpus))
        alone.append(docling_alone(config, pdfs, device))
    docling_side, daemon_side = side(alone), side(daemon_rounds)
    ratio = daemon_side["median_seconds"] / docling_side["median_seconds"]
    report = {
        "command": " ".join(["tools/side_by_side.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "files": len(pdfs),
        "docling_alone": docling_side,
        "daemon": daemon_side,
        "daemon_over_docling": round(ratio, 3),
        "batching": daemon_rounds[-1]["batching"],
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
