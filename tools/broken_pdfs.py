"""Reliability on broken PDFs: every file of a corpus through ``sir-convert convert``, one process
per file and backend, and what each run ended as.

Usage:
    .venv/bin/python tools/broken_pdfs.py --extract-from PDFJS_GIT_DIR --corpus DIR
    .venv/bin/python tools/broken_pdfs.py --corpus DIR --out REPORT.json [--markdown TABLE.md]
    .venv/bin/python tools/broken_pdfs.py --from-report NEW.json --before OLD.json --markdown T.md

The files and what is wrong with each are listed in tools/broken_pdfs_corpus.json, with the
repository and commit they come from; ``--extract-from`` writes them out of a git directory of
that repository (``git show COMMIT:test/pdfs/NAME``). Backends:

- ``pymupdf``: the CPU backend unlocked by a decision record (tools/bench-configs/pymupdf-cpu.toml).
- ``docling``: docling's real pipeline on the CPU (the governed ``gpu_prefer`` fallback,
  tools/bench-configs/docling-standin-cpu.toml) with the random-weight stand-in models of
  harness.stand_in_models, built under ``--models`` when absent. Its text is
  meaningless; parsing, preflight and error handling are real.

Per file and backend the report says: the terminal outcome (``succeeded``, or the error code,
``details.reason`` and ``retryable``), whether the original is still there unchanged (``convert``
reads in place and must never move or alter it), whether the run hung (killed at
``--timeout``) and whether a Python traceback reached its output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

from sir_convert_a_lot.config import PATH_KEYS
from toolkit import REPO

CORPUS_LIST = REPO / "tools" / "broken_pdfs_corpus.json"
TEMPLATES = {
    "pymupdf": REPO / "tools" / "bench-configs" / "pymupdf-cpu.toml",
    "docling": REPO / "tools" / "bench-configs" / "docling-standin-cpu.toml",
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
DOCUMENT_TIMEOUT_SECONDS = 120  # the engine's own limit; --timeout is the backstop above it


@dataclass(frozen=True)
class Run:
    """One file through one backend."""

    file: str
    backend: str
    outcome: str  # "succeeded", "failed", "hung", "no_output"
    code: str | None
    reason: str | None
    retryable: bool | None
    message: str | None
    detail: str | None  # the parser's or converter's own words, from the error's details
    exit_code: int | None
    seconds: float
    original_intact: bool
    traceback: bool
    warnings: tuple[str, ...]


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def corpus_list() -> dict[str, Any]:
    listed: dict[str, Any] = json.loads(CORPUS_LIST.read_text(encoding="utf-8"))
    return listed


def extract(git_dir: Path, corpus: Path) -> None:
    """Write the listed files out of a git directory of the source repository, at the commit
    the list names, so that a rerun sees the same bytes."""
    listed = corpus_list()
    source = listed["source"]
    corpus.mkdir(parents=True, exist_ok=True)
    for name in listed["files"]:
        blob = f"{source['commit']}:{source['folder']}/{name}"
        data = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", blob], check=True, capture_output=True
        ).stdout
        (corpus / name).write_bytes(data)


def write_config(backend: str, root: Path, models: Path) -> Path:
    """The backend's benchmark config with scratch folders, a bounded conversion time and JSON
    logs (read for tracebacks)."""
    document = tomllib.loads(TEMPLATES[backend].read_text(encoding="utf-8"))
    document.setdefault("paths", {}).update({key: str(root / key) for key in PATH_KEYS})
    document.setdefault("conversion", {})["document_timeout_seconds"] = DOCUMENT_TIMEOUT_SECONDS
    document.setdefault("instances", {})["name"] = f"broken-pdfs-{backend}"
    if backend == "docling":
        document["gpu"]["models_path"] = str(models)
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def convert_one(pdf: Path, backend: str, config: Path, out: Path, timeout: float) -> Run:
    """Run ``sir-convert convert`` on one file in its own process and read what it left."""
    before = sha256(pdf)
    command = [
        "nice",
        "-n",
        "10",
        str(REPO / ".venv" / "bin" / "sir-convert"),
        "convert",
        str(pdf),
        "--out",
        str(out),
        "--config",
        str(config),
    ]
    env = {**os.environ, **OFFLINE}
    started = time.monotonic()
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout, env=env)
        exit_code: int | None = completed.returncode
        text = (completed.stdout + completed.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as expired:
        exit_code = None
        text = ((expired.stdout or b"") + (expired.stderr or b"")).decode("utf-8", "replace")
    seconds = round(time.monotonic() - started, 2)
    intact = before is not None and sha256(pdf) == before
    fields = _terminal(out, pdf.stem) if exit_code is not None else {"outcome": "hung"}
    return Run(
        file=pdf.name,
        backend=backend,
        exit_code=exit_code,
        seconds=seconds,
        original_intact=intact,
        traceback="Traceback (most recent call last)" in text,
        **fields,
    )


def _terminal(out: Path, stem: str) -> dict[str, Any]:
    """The outcome fields from the sidecar or the error envelope ``convert`` wrote."""
    empty: dict[str, Any] = {
        "code": None,
        "reason": None,
        "retryable": None,
        "message": None,
        "detail": None,
        "warnings": (),
    }
    sidecar, error = out / f"{stem}.json", out / f"{stem}.error.json"
    if sidecar.exists():
        result = json.loads(sidecar.read_text(encoding="utf-8"))["result"]
        return {**empty, "outcome": "succeeded", "warnings": tuple(result.get("warnings", ()))}
    if error.exists():
        envelope = json.loads(error.read_text(encoding="utf-8"))["error"]
        return {
            **empty,
            "outcome": "failed",
            "code": envelope["code"],
            "reason": envelope.get("details", {}).get("reason"),
            "retryable": envelope["retryable"],
            "message": envelope["message"],
            "detail": _detail(envelope.get("details", {})),
        }
    return {**empty, "outcome": "no_output"}


def _detail(details: dict[str, Any]) -> str | None:
    """The most specific words a failure carries: the exception and its text, or the
    parser's message, or docling's first error."""
    parts = [str(details[k]) for k in ("exception", "error", "parser_message") if k in details]
    errors = details.get("errors")
    if isinstance(errors, list) and errors:
        parts.append(str(errors[0]))
    return ": ".join(parts)[:200] or None


def label(run: Run) -> str:
    """One table cell: ``succeeded`` (with ``pdf_repaired`` when MuPDF rebuilt the file) or the
    code with its reason; hangs, tracebacks and a changed original are called out."""
    if run.outcome == "succeeded":
        text = "succeeded, repaired" if "pdf_repaired" in run.warnings else "succeeded"
    elif run.outcome == "failed":
        text = f"`{run.code}`" + (f" ({run.reason})" if run.reason else "")
    else:
        text = f"**{run.outcome}**"
    if run.traceback:
        text += ", **traceback**"
    if not run.original_intact:
        text += ", **original changed or gone**"
    return text


def markdown_table(report: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The table for docs/reference/reliability.md: per file its source, what is wrong with it
    and the outcome per backend; where a ``before`` report ended differently, that too."""
    backends = sorted({r["backend"] for r in report["runs"]}, key=["pymupdf", "docling"].index)
    now, then = _labels(report), _labels(before) if before is not None else {}
    source = report["source"]
    where = f"{source['repository']} `{source['folder']}` @ {source['commit'][:8]}"
    rows = [
        "| file | source | what is wrong with it | " + " | ".join(backends) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in backends) + " |",
    ]
    for name, facts in report["files"].items():
        cells = []
        for backend in backends:
            cell = now.get((name, backend), "")
            earlier = then.get((name, backend))
            if earlier is not None and earlier != cell:
                cell += f" (was {earlier})"
            cells.append(cell)
        rows.append(f"| `{name}` | {where} | {facts['defect']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _labels(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    runs = (Run(**{"detail": None, **r, "warnings": tuple(r["warnings"])}) for r in report["runs"])
    return {(run.file, run.backend): label(run) for run in runs}


def summary(runs: list[Run], backends: list[str]) -> dict[str, Any]:
    """Counts per backend: outcomes by code, and the three things that must never happen."""
    result: dict[str, Any] = {}
    for backend in backends:
        mine = [r for r in runs if r.backend == backend]
        outcomes: dict[str, int] = {}
        for run in mine:
            key = run.code or run.outcome
            outcomes[key] = outcomes.get(key, 0) + 1
        result[backend] = {
            "files": len(mine),
            "outcomes": dict(sorted(outcomes.items())),
            "hung": sum(r.outcome == "hung" for r in mine),
            "no_output": sum(r.outcome == "no_output" for r in mine),
            "tracebacks": sum(r.traceback for r in mine),
            "originals_lost_or_changed": sum(not r.original_intact for r in mine),
            "retryable_failures": sum(bool(r.retryable) for r in mine),
        }
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    listed = corpus_list()
    names = [n for n in listed["files"] if (args.corpus / n).is_file()]
    backends: list[str] = args.backends
    if "docling" in backends:
        from harness.stand_in_models import build_stand_in_models

        build_stand_in_models(args.models)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="broken-pdfs-") as scratch:
        for backend in backends:
            root = Path(scratch) / backend
            root.mkdir()
            config = write_config(backend, root, args.models)
            for name in names:
                out = root / "out" / Path(name).stem
                found = convert_one(args.corpus / name, backend, config, out, args.timeout)
                print(f"{backend:8} {name}: {label(found)} ({found.seconds} s)", flush=True)
                runs.append(found)
    return {
        "command": " ".join(["tools/broken_pdfs.py", *args.argv]),
        "source": listed["source"],
        "files": {
            n: {"defect": listed["files"][n], "sha256": sha256(args.corpus / n)} for n in names
        },
        "missing_from_corpus": [n for n in listed["files"] if n not in names],
        "runs": [asdict(r) for r in runs],
        "summary": summary(runs, backends),
        "versions": _versions(),
        "timeout_seconds": args.timeout,
        "document_timeout_seconds": DOCUMENT_TIMEOUT_SECONDS,
    }


def _versions() -> dict[str, str]:
    from sir_convert_a_lot.versions import component_versions

    return {k: str(v) for k, v in component_versions().items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="folder holding the PDFs")
    parser.add_argument("--out", type=Path, help="the JSON report to write")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    parser.add_argument("--before", type=Path, help="an earlier report: show changed outcomes")
    parser.add_argument("--from-report", type=Path, help="write --markdown from this report")
    parser.add_argument("--extract-from", type=Path, help="git directory of the source repo")
    parser.add_argument("--backends", nargs="+", default=["pymupdf", "docling"])
    parser.add_argument("--models", type=Path, default=Path("/tmp/sca-models"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per file and run")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.corpus is None and (args.from_report is None or args.extract_from is not None):
        parser.error("--corpus is required to extract or to run")
    if args.extract_from is not None:
        extract(args.extract_from, args.corpus)
        if args.out is None and args.from_report is None:
            return 0
    if args.from_report is not None:
        report = json.loads(args.from_report.read_text(encoding="utf-8"))
    elif args.out is None:
        parser.error("--out is required unless only extracting or reading --from-report")
    else:
        report = run(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.markdown is not None:
        before = json.loads(args.before.read_text(encoding="utf-8")) if args.before else None
        args.markdown.write_text(markdown_table(report, before), encoding="utf-8")
    print(json.dumps(report["summary"], indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
