"""docling alone against the daemon: the same files, models and options, side by side in one run.

Usage:
    .venv/bin/python tools/side_by_side.py --config CFG --corpus DIR --output OUT.json [--rounds 1]
        [--before COMMIT]

docling alone: docling's own DocumentConverter and pipeline, with the options the daemon's
docling backend maps CFG to (``docling_pipeline.pipeline_options``: the same models, table mode,
OCR and batch sizes, which are docling's batching knobs; with ``ocr_mode = "auto"`` docling alone
has no page-by-page choice and reads every page), warmed on the first file (untimed),
then every file converted one after another in this process, as a user of docling would.
The daemon: ``tools/benchmark.py``'s run (drop every file at once, wait for every sidecar), its
wall time minus one stability window (a deliberate wait for writers, not work). The sides take
turns, ``rounds`` times each; medians are compared. ``daemon_over_docling`` is the daemon's time
over docling's: under 1.0 the daemon drains the files faster. With ``--before COMMIT`` a third
side takes its turn in every round: the daemon as that commit had it (its ``daemon/`` unpacked
from git into a scratch folder and put first on the daemon's PYTHONPATH), so a change's cost is
measured against docling and against the code before it in one run, under one load.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchmark
from backlog_cost import unpack
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


def daemon(config_path: Path, corpus: Path, tree: Path | None = None) -> dict[str, Any]:
    """One round of the daemon draining the files, from tools/benchmark.py; with ``tree``, the
    daemon runs the package under ``tree/daemon`` instead of this tree's."""
    args = argparse.Namespace(
        config=config_path, corpus=corpus, repeat=1, timeout=3600, ready_timeout=900
    )
    saved = os.environ.get("PYTHONPATH")
    if tree is not None:
        os.environ["PYTHONPATH"] = str(tree / "daemon")
        _check_imports_from(tree / "daemon")
    try:
        result = benchmark.run(args)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
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


def _commit(name: str) -> str:
    """The full id of the commit ``name`` names in this repository."""
    found = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).resolve().parent.parent),
            "rev-parse",
            "--verify",
            f"{name}^{{commit}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise SystemExit(f"--before {name}: no such commit (see git log --oneline)")
    return found.stdout.strip()


def _check_imports_from(folder: Path) -> None:
    """The daemon's python, with this environment, imports the package from ``folder``."""
    probe_import = "import sir_convert_a_lot; print(sir_convert_a_lot.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe_import], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(folder.resolve()):
        raise SystemExit(f"the daemon would import {found}, not the code under {folder}")


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
    parser.add_argument("--before", help="also run the daemon as this commit had it")
    args = parser.parse_args()
    config = load(args.config)
    pdfs = benchmark.find_pdfs(args.corpus)
    if not pdfs:
        raise SystemExit(f"no PDFs under {args.corpus}")
    device = "cuda" if probe(config.gpu.device_index).cuda_available else "cpu"
    scratch = Path(tempfile.mkdtemp(prefix="sca-side-by-side-"))
    try:
        before = unpack(_commit(args.before), scratch / "before") if args.before else None
        alone, daemon_rounds, before_rounds = [], [], []
        for _round in range(args.rounds):
            if before is not None:
                before_rounds.append(daemon(args.config, args.corpus, before))
            daemon_rounds.append(daemon(args.config, args.corpus))
            alone.append(docling_alone(config, pdfs, device))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
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
    if before_rounds:
        before_side = side(before_rounds)
        report["before"] = {
            "commit": _commit(args.before),
            "daemon": before_side,
            "daemon_over_docling": round(
                before_side["median_seconds"] / docling_side["median_seconds"], 3
            ),
        }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
