"""The daemon's outputs against docling's own DocumentConverter's, byte for byte, per PDF.

Usage:
    .venv/bin/python tools/parity.py --config CFG --corpus DIR --output OUT.json
        [--stand-ins tiny|faithful|none] [--table-mode accurate|fast] [--batch-size N]
        [--file-timeout SECONDS]

Both sides get the same models, options and batch sizes. ``--stand-ins`` (default ``tiny``)
builds that set of random-weight stand-in models into a scratch folder and points CFG's
``gpu.models_path`` there; ``none`` keeps CFG's models. CFG must set ``normalize = "none"``
(the daemon's clean-up changes docling's Markdown on purpose), ``ocr_mode = "off"``,
``output.images = "placeholder"`` (other modes rewrite picture links) and ``output.formats``
with ``docling_json``: the lossless JSON is compared too.

- The daemon: ``tools/benchmark.py``'s run (the real ``sir-convert run``, every PDF of DIR,
  recursively, dropped at once, so documents share model calls), its outbox kept.
- docling alone: docling's own ``DocumentConverter`` and ``StandardPdfPipeline`` with the
  options the daemon's backend maps CFG to (``tools/side_by_side.py``), each file converted in
  turn and exported as the backend exports (``export_to_markdown()``,
  ``docling_export.docling_json``). It runs in a child process, so that a file that crashes
  docling or hangs it (``--file-timeout``) is recorded and the rest still run.

Each PDF gets a verdict: ``identical`` or ``different`` (both converted; for each output that
differs, its first differing line (Markdown) or byte (JSON), and for the JSON the largest
difference between its numbers when nothing else differs); ``float_noise`` (the Markdown
identical, the JSON too but for numbers at most ``FLOAT_NOISE`` apart: a deliberate choice of
the contract, section 6); ``refused_by_contract`` (the daemon failed it with a code the contract
says is the file's, e.g. ``pdf_encrypted``, whatever docling did); ``docling_failed`` (docling
made no document); ``daemon_failed`` (docling converted it; the daemon failed with a retryable
code). ``different`` and ``daemon_failed`` are the differences; the exit status is 1 when any
exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from itertools import zip_longest
from pathlib import Path
from typing import Any

import tomli_w

import benchmark
import side_by_side
from sir_convert_a_lot.config import Config, load
from sir_convert_a_lot.errors import ErrorCode
from toolkit import exit_on_sigterm, write_report

DIFFERENCES = ("different", "daemon_failed")
# Coordinates (points) that differ by no more than this are float noise: a batched model call's
# arithmetic depends on the batch (docs/contract.md, section 6).
FLOAT_NOISE = 1e-3
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # no model hub
LINE_CHARACTERS = 200  # of a differing line, in the report


# -- the two sides ------------------------------------------------------------------------------


def daemon_side(config: Path, corpus: Path, into: Path, timeout: float) -> dict[str, Any]:
    """The real daemon over the corpus (tools/benchmark.py); its outbox copied to ``into``.
    Returns benchmark's report."""
    args = argparse.Namespace(
        config=config, corpus=corpus, repeat=1, timeout=timeout, ready_timeout=900, keep_outbox=into
    )
    return benchmark.run(args)


def daemon_outcome(outbox: Path, relative: Path) -> dict[str, Any]:
    """What the daemon made of one file: its Markdown's place, or its error code and reason."""
    output = benchmark.terminal_output(outbox, relative)
    if output is None:
        return {"status": "timeout"}
    document = json.loads(output.read_text(encoding="utf-8"))
    if document["status"] == "failed":
        error = document["error"]
        return {
            "status": "failed",
            "error_code": error["code"],
            "reason": error["details"].get("reason"),
            "message": error["message"],
        }
    result = document["result"]
    lossless = [a["name"] for a in result["artifacts"] if a["name"].endswith(".docling.json")]
    return {
        "status": "converted",
        "pages": document["source"]["pages"],
        "markdown": str(output.with_name(result["artifact"]["markdown_filename"])),
        "docling_json": str(output.with_name(lossless[0])),
        "warnings": result["warnings"],
    }


def docling_side(
    config: Path, corpus: Path, relatives: list[str], scratch: Path, file_timeout: float
) -> dict[str, dict[str, Any]]:
    """docling alone over ``relatives``, in child processes: one, or a new one for the rest
    after a file crashed or hung it."""
    outcomes: dict[str, dict[str, Any]] = {}
    events = scratch / "events.jsonl"
    while todo := [r for r in relatives if r not in outcomes]:
        command = [sys.executable, __file__, "--docling-child", str(scratch)]
        command += ["--config", str(config), "--corpus", str(corpus), "--output", "-", *todo]
        with (scratch / "docling.log").open("ab") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=OFFLINE)
        seen: dict[str, float] = {}  # files started, when the parent first saw it
        try:
            while child.poll() is None:
                running = _read_events(events, outcomes, seen)
                if running and time.monotonic() - seen[running] > file_timeout:
                    child.kill()
                    child.wait()
                    outcomes[running] = {"status": "timeout", "seconds": file_timeout}
                time.sleep(0.5)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        running = _read_events(events, outcomes, seen)
        if running:
            outcomes[running] = {"status": "crashed", "returncode": child.returncode}
        elif child.returncode != 0 and not seen:
            log_tail = (scratch / "docling.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"docling alone could not start ({child.returncode}):\n{log_tail}")
    return outcomes


def _read_events(
    events: Path, outcomes: dict[str, dict[str, Any]], seen: dict[str, float]
) -> str | None:
    """Take in the child's finished files; the file it is converting now, if any."""
    if not events.exists():
        return None
    running = None
    for line in events.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            seen.setdefault(event["file"], time.monotonic())
            running = event["file"]
        elif event["event"] == "end":
            outcomes[event["file"]] = event["outcome"]
            running = None
    return running if running not in outcomes else None


def docling_child(config: Config, corpus: Path, relatives: list[str], scratch: Path) -> None:
    """docling's own converter, warm once, each file in turn; its events and Markdown under
    ``scratch``."""
    from docling.datamodel.base_models import ConversionStatus

    from sir_convert_a_lot.backends.docling_export import docling_json
    from sir_convert_a_lot.engine.gpu import probe

    device = "cuda" if probe(config.gpu.device_index).cuda_available else "cpu"
    converter = side_by_side.docling_converter(config, device)
    with (scratch / "events.jsonl").open("a", encoding="utf-8") as events:

        def emit(**event: Any) -> None:
            events.write(json.dumps(event) + "\n")
            events.flush()

        for relative in relatives:
            emit(event="start", file=relative)
            outcome: dict[str, Any]
            try:
                result = converter.convert(corpus / relative, raises_on_error=False)
                outcome = {
                    "status": str(result.status.value),
                    "errors": [str(getattr(e, "error_message", e))[:300] for e in result.errors],
                }
                done = (ConversionStatus.SUCCESS, ConversionStatus.PARTIAL_SUCCESS)
                if result.status in done and result.document is not None:
                    markdown = result.document.export_to_markdown().encode("utf-8")
                    outcome.update(
                        pages=len(result.pages),
                        markdown=_keep(scratch / "markdown" / f"{relative}.md", markdown),
                        docling_json=_keep(
                            scratch / "json" / f"{relative}.json", docling_json(result.document)
                        ),
                    )
            except Exception as exc:  # what docling raises is the finding
                outcome = {"status": "exception", "exception": type(exc).__name__}
                outcome["message"] = str(exc)[:300]
            emit(event="end", file=relative, outcome=outcome)


def _keep(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


# -- comparing ----------------------------------------------------------------------------------


def first_difference(daemon: bytes, docling: bytes) -> dict[str, Any] | None:
    """The first line (1-based) where the two Markdown files differ, with both versions of it
    (None where one file has ended); None when they are byte-identical."""
    if daemon == docling:
        return None
    ours = daemon.decode("utf-8", errors="replace").split("\n")
    theirs = docling.decode("utf-8", errors="replace").split("\n")
    for number, (a, b) in enumerate(zip_longest(ours, theirs), start=1):
        if a != b:
            return {"line": number, "daemon": _cut(a), "docling": _cut(b)}
    return {"line": None, "daemon": "(bytes differ, lines equal)", "docling": None}


def first_byte_difference(daemon: bytes, docling: bytes) -> dict[str, Any] | None:
    """Where two one-line files (the compact lossless JSON) first differ: the byte offset and
    what follows it on each side; None when they are byte-identical."""
    if daemon == docling:
        return None
    offset = next(
        (i for i, (a, b) in enumerate(zip(daemon, docling, strict=False)) if a != b),
        min(len(daemon), len(docling)),
    )
    start = max(0, offset - 40)
    return {
        "offset": offset,
        "daemon": daemon[start : offset + 80].decode("utf-8", errors="replace"),
        "docling": docling[start : offset + 80].decode("utf-8", errors="replace"),
    }


def _cut(line: str | None) -> str | None:
    return None if line is None else line[:LINE_CHARACTERS]


COMPARED = (("markdown", first_difference), ("docling_json", first_byte_difference))


def verdict(daemon: dict[str, Any], docling: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One file's verdict (module docstring) and, for ``different``, where each output that
    differs (``markdown``, ``docling_json``) first does."""
    if daemon["status"] == "failed" and not ErrorCode(daemon["error_code"]).retryable:
        return "refused_by_contract", {}
    if "markdown" not in docling:
        return "docling_failed", {}
    if daemon["status"] != "converted":
        return "daemon_failed", {}
    differences = {}
    for output, find in COMPARED:
        ours, theirs = Path(daemon[output]).read_bytes(), Path(docling[output]).read_bytes()
        found = find(ours, theirs)
        if found is not None and output == "docling_json":
            found["max_drift"] = _json_drift(ours, theirs)
        if found is not None:
            differences[output] = found
    if not differences:
        return "identical", differences
    drift = differences.get("docling_json", {}).get("max_drift")
    noise = list(differences) == ["docling_json"] and drift is not None and drift <= FLOAT_NOISE
    return ("float_noise" if noise else "different"), differences


def _json_drift(ours: bytes, theirs: bytes) -> float | None:
    try:
        return numeric_drift(json.loads(ours), json.loads(theirs))
    except ValueError:  # not JSON: nothing to compare number by number
        return None


def numeric_drift(ours: Any, theirs: Any) -> float | None:
    """The largest difference between corresponding numbers of two parsed JSON documents that
    are otherwise equal (the same keys, items, strings); None when anything else differs."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return 0.0 if ours is theirs else None
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return abs(float(ours) - float(theirs))
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if ours.keys() != theirs.keys():
            return None
        pairs = [(ours[key], theirs[key]) for key in ours]
    elif isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return None
        pairs = list(zip(ours, theirs, strict=True))
    else:
        return 0.0 if ours == theirs else None
    worst = 0.0
    for pair in pairs:
        drift = numeric_drift(*pair)
        if drift is None:
            return None
        worst = max(worst, drift)
    return worst


def compare(
    relatives: list[str], outbox: Path, docling: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for relative in relatives:
        ours = daemon_outcome(outbox, Path(relative))
        theirs = docling[relative]
        found, differences = verdict(ours, theirs)
        row = {"file": relative, "verdict": found, "daemon": ours, "docling": theirs}
        if differences:
            row["first_difference"] = differences
        for side in (ours, theirs):
            for output, _find in COMPARED:
                side.pop(output, None)  # scratch paths: gone with the run
        rows.append(row)
    return rows


# -- the run ------------------------------------------------------------------------------------


def parity_config(args: argparse.Namespace, scratch: Path) -> Path:
    """CFG, with ``gpu.models_path`` at freshly built stand-in models unless ``--stand-ins
    none``, and ``--table-mode`` and ``--batch-size`` when given; refused unless its outputs
    can be docling's own (module docstring)."""
    source: Path = args.config
    document = tomllib.loads(source.read_text(encoding="utf-8"))
    conversion = document.setdefault("conversion", {})
    if args.table_mode:
        conversion["table_mode"] = args.table_mode
    if args.batch_size:
        for stage in ("layout", "table", "ocr"):
            document.setdefault("gpu", {})[f"{stage}_batch_size"] = args.batch_size
    output = document.get("output", {})
    if (
        conversion.get("normalize") != "none"
        or conversion.get("ocr_mode") != "off"
        or output.get("images", "placeholder") != "placeholder"
        or "docling_json" not in output.get("formats", ())
    ):
        raise SystemExit(f"{source}: parity needs the settings its module docstring names")
    if args.stand_ins != "none":
        from harness.stand_in_models import build_stand_in_models

        built = build_stand_in_models(scratch / "models", size=args.stand_ins)
        document.setdefault("gpu", {})["models_path"] = str(built)
    path = scratch / "parity.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"files": len(rows), "compared": 0, "differences": 0}
    counts.update({f"{output}_different": 0 for output, _find in COMPARED})
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        counts["compared"] += row["verdict"] in ("identical", "float_noise", "different")
        counts["differences"] += row["verdict"] in DIFFERENCES
        for output in row.get("first_difference", {}):
            counts[f"{output}_different"] += 1
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="sca-parity-"))
    exit_on_sigterm()
    try:
        config_path = parity_config(args, scratch)
        config = load(config_path)
        relatives = [str(p.relative_to(args.corpus)) for p in benchmark.find_pdfs(args.corpus)]
        if not relatives:
            raise SystemExit(f"no PDFs under {args.corpus}")
        started = time.monotonic()
        daemon = daemon_side(config_path, args.corpus, scratch / "outbox", args.timeout)
        daemon_seconds = time.monotonic() - started
        docling = docling_side(config_path, args.corpus, relatives, scratch, args.file_timeout)
        docling_seconds = time.monotonic() - started - daemon_seconds
        rows = compare(relatives, scratch / "outbox", docling)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    options = config.defaults
    return {
        "command": " ".join(["tools/parity.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": daemon["resource_profile"]["acceleration_observed"],
        "stand_ins": args.stand_ins,
        "options": {
            "table_mode": options.table_mode,
            "ocr_mode": options.ocr_mode,
            "normalize": options.normalize,
            "images": options.images,
            "batch_sizes": dict(config.gpu.batch_sizes),
        },
        "seconds": {"daemon": round(daemon_seconds, 1), "docling": round(docling_seconds, 1)},
        "daemon_batching": daemon["batching"],
        "summary": summary(rows),
        "files": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--output", required=True, help="the JSON report")
    parser.add_argument("--stand-ins", choices=("tiny", "faithful", "none"), default="tiny")
    parser.add_argument("--table-mode", choices=("accurate", "fast"), help="instead of CFG's")
    parser.add_argument("--batch-size", type=int, help="every stage's, instead of CFG's")
    parser.add_argument("--file-timeout", type=float, default=600, help="docling, per file")
    parser.add_argument("--timeout", type=float, default=3600, help="the daemon, all files")
    parser.add_argument("--docling-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.docling_child is not None:
        docling_child(load(args.config), args.corpus, args.files, args.docling_child)
        return 0
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus}: no such folder")
    report = run(args)
    write_report(Path(args.output), report)
    return 1 if report["summary"]["differences"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
