"""Model-load amortisation: the daemon per file against a naive watch script that runs the
``docling`` command once per file, both with the same stand-in models on the CPU.

Usage:
    .venv/bin/python tools/naive_watch.py --models DIR --corpus DIR --output OUT.json

The naive side is what a shell loop over an inbox would do:
``docling convert --no-ocr --table-mode accurate --artifacts-path DIR --output OUT file.pdf``
per file, each run importing docling and loading the models again. The daemon side is
tools/benchmark.py with tools/bench-configs/docling-standin-cpu.toml pointed at the same models:
models loaded once, files converted as they arrive. Reported per file: mean seconds, and the
ratio naive / daemon.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

import benchmark
from harness.stand_in_models import build_stand_in_models
from toolkit import REPO, write_report

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def naive(models: Path, pdfs: list[Path]) -> tuple[list[float], list[int]]:
    """Seconds and exit code per file (docling's CLI exits 1 for an empty result, e.g. a scan
    without OCR; the time was spent all the same)."""
    seconds, codes = [], []
    with tempfile.TemporaryDirectory() as out:
        for pdf in pdfs:
            started = time.monotonic()
            completed = subprocess.run(
                [
                    str(REPO / ".venv" / "bin" / "docling"),
                    "convert",
                    "--no-ocr",
                    "--table-mode",
                    "accurate",
                    "--artifacts-path",
                    str(models),
                    "--output",
                    out,
                    str(pdf),
                ],
                check=False,
                capture_output=True,
                env={**os.environ, **OFFLINE},
            )
            seconds.append(time.monotonic() - started)
            codes.append(completed.returncode)
    return seconds, codes


def daemon(models: Path, corpus: Path) -> dict[str, float]:
    template = REPO / "tools" / "bench-configs" / "docling-standin-cpu.toml"
    document = tomllib.loads(template.read_text(encoding="utf-8"))
    document["gpu"]["models_path"] = str(models)
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "config.toml"
        config.write_text(tomli_w.dumps(document), encoding="utf-8")
        result = benchmark.run(
            argparse.Namespace(
                config=config, corpus=corpus, repeat=1, timeout=3600, ready_timeout=900
            )
        )
    summary = result["summary"]
    window = float(document["watch"]["stability_seconds"])
    return {
        "files": summary["total_jobs"],
        "wall_seconds": summary["wall_seconds"],
        "seconds_per_file": round((summary["wall_seconds"] - window) / summary["total_jobs"], 3),
        "model_load_seconds": result["runtime_config"]["model_load_seconds"],
        "latency_mean_seconds": summary["latency_seconds"]["mean"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "sca-models")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    models = build_stand_in_models(args.models)
    pdfs = benchmark.find_pdfs(args.corpus)
    naive_seconds, naive_codes = naive(models, pdfs)
    daemon_side = daemon(models, args.corpus)
    naive_per_file = sum(naive_seconds) / len(naive_seconds)
    report = {
        "command": " ".join(["tools/naive_watch.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": [str(p.relative_to(args.corpus)) for p in pdfs],
        "naive_docling_cli": {
            "seconds_per_file": [round(s, 3) for s in naive_seconds],
            "mean_seconds_per_file": round(naive_per_file, 3),
            "exit_codes": naive_codes,
        },
        "daemon": daemon_side,
        "ratio_naive_over_daemon_per_file": round(
            naive_per_file / daemon_side["seconds_per_file"], 2
        ),
        "note": "stand-in random-weight models on the CPU: load and pipeline costs are real, "
        "the model compute is far smaller than docling's real models",
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
