"""A mixed backlog of scans and PDFs against the same pages as PDFs only, drained side by side.

Usage:
    .venv/bin/python tools/mixed_backlog.py --output docs/reference/mixed-backlog.json
        [--items 48] [--rounds 2] [--markdown OUT.md]

Issue 25 asks what images cost next to PDFs. Each item is one generated page (a heading, a
sentence and a ruled table). The ``pdf`` arm drops every item as a one-page PDF. The ``mixed``
arm drops the same items, every other one as a PNG scan of that page (rendered at 150 dpi), the
rest as the PDF: the scans go through layout, tables and OCR on every page, as an image always
does; the PDFs' born-digital pages need no OCR. Each drain is a fresh daemon on the docling
backend with the tiny stand-in models (OCR's included) and the CPU unlocked by its decision
record, all items moved into the inbox at once, timed from the drop to the last sidecar. The
arms take turns and the order swaps each round. The report gives each drain's seconds, the
pages each stage's model calls saw (from the sidecars' batching counters) and whether the scans
shared layout calls with PDF pages. Times with stand-ins measure the daemon's own work around
the models, not a GPU's compute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.configs import write_config
from harness.daemon import Daemon
from toolkit import READY_TIMEOUT, exit_on_sigterm, tree_cpu_seconds, write_report

ARMS = ("pdf", "mixed")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SCAN_DPI = 150


def page_pdf(number: int) -> bytes:
    """One page: a heading, a sentence and a 4 x 3 ruled table, numbered so no two are equal."""
    import pymupdf

    pdf = pymupdf.open()
    page = pdf.new_page(width=595, height=842)
    page.insert_text((72, 90), f"Quarterly note {number}", fontsize=20)
    page.insert_text((72, 130), f"Item {number} lists the figures below.", fontsize=12)
    for row in range(4):
        for col in range(3):
            x0, y0 = 72 + col * 150, 170 + row * 30
            page.draw_rect(pymupdf.Rect(x0, y0, x0 + 150, y0 + 30), color=(0, 0, 0))
            text = f"head {col}" if row == 0 else f"{number * 10 + row * 3 + col}"
            page.insert_text((x0 + 8, y0 + 20), text, fontsize=12)
    data: bytes = pdf.tobytes()
    pdf.close()
    return data


def scan_of(pdf: bytes) -> bytes:
    """The page as a scanner hands it over: a PNG at ``SCAN_DPI``, no text layer."""
    import pymupdf

    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        png: bytes = document[0].get_pixmap(dpi=SCAN_DPI).tobytes("png")
    return png


def stage(folder: Path, items: int, arm: str) -> list[str]:
    """The arm's files written into ``folder``, ready to move; returns their names."""
    folder.mkdir(parents=True)
    names = []
    for number in range(items):
        pdf = page_pdf(number)
        scan = arm == "mixed" and number % 2 == 0
        name = f"item-{number:03d}.png" if scan else f"item-{number:03d}.pdf"
        (folder / name).write_bytes(scan_of(pdf) if scan else pdf)
        names.append(name)
    return names


def drain(arm: str, items: int, models: Path, scratch: Path) -> dict[str, Any]:
    """One fresh daemon, the arm's items dropped at once, timed to the last sidecar."""
    root = Path(tempfile.mkdtemp(prefix=f"sca-mixed-{arm}-", dir=scratch))
    config = write_config(
        root,
        conversion={"backend_strategy": "docling", "acceleration_policy": "gpu_prefer"},
        governance={"allow_cpu_only": False, "allow_cpu_fallback": True},
        gpu={"models_path": str(models)},
        watch={"stability_seconds": 1.0},
        instances={"lease_seconds": 60},
        logging={"level": "warning"},
    )
    names = stage(root / "staging", items, arm)
    daemon = Daemon(config, env={**os.environ, **OFFLINE}, log_path=root / "daemon.log")
    daemon.start(timeout=READY_TIMEOUT, by_lease=True)
    try:
        cpu_before = tree_cpu_seconds(daemon.pid)
        dropped = time.monotonic()
        for name in names:
            os.rename(root / "staging" / name, root / "inbox" / name)
        sidecars = _wait_for_all(daemon, root / "outbox", names)
        seconds = time.monotonic() - dropped
        cpu = tree_cpu_seconds(daemon.pid) - cpu_before
    finally:
        daemon.stop()
    report = {"arm": arm, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2)}
    report.update(_summary(sidecars))
    shutil.rmtree(root, ignore_errors=True)
    return report


def _wait_for_all(daemon: Daemon, outbox: Path, names: list[str]) -> list[dict[str, Any]]:
    stems = [Path(name).stem for name in names]
    while True:
        done = [s for s in stems if (outbox / f"{s}.json").exists()]
        failed = [s for s in stems if (outbox / f"{s}.error.json").exists()]
        if failed:
            envelope = json.loads((outbox / f"{failed[0]}.error.json").read_text())
            raise SystemExit(f"{failed[0]} failed: {envelope['error']}")
        if len(done) == len(stems):
            return [json.loads((outbox / f"{s}.json").read_text()) for s in stems]
        if (code := daemon.poll()) is not None:
            raise SystemExit(f"daemon exited early: {code}")
        time.sleep(0.2)


def _summary(sidecars: list[dict[str, Any]]) -> dict[str, Any]:
    """What the sidecars say about the drain: pages, the stages that ran, and whether any
    layout call held pages of more than one document (batching across documents)."""
    pages = sum(int(s["source"]["pages"] or 0) for s in sidecars)
    stages: dict[str, int] = {}
    shared_layout = 0
    for sidecar in sidecars:
        metadata = sidecar["result"]["conversion_metadata"]
        for stage_name in metadata.get("stage_devices", {}):
            stages[stage_name] = stages.get(stage_name, 0) + 1
        layout = sidecar["execution"].get("batching", {}).get("layout", {})
        # share_of_calls sums own/call pages: below the number of calls, a call held others
        shared_layout += int(layout.get("share_of_calls", 0) < layout.get("calls", 0))
    return {
        "documents": len(sidecars),
        "pages": pages,
        "documents_per_stage": stages,
        "documents_sharing_a_layout_call": shared_layout,
        "acceleration_used": sorted(
            {s["result"]["conversion_metadata"]["acceleration_used"] for s in sidecars}
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", type=Path, help="stand-in models (default: built now)")
    args = parser.parse_args()
    if args.items < 2 or args.rounds < 1:
        parser.error("give --items 2 or more and --rounds 1 or more")
    exit_on_sigterm()
    scratch = Path(tempfile.mkdtemp(prefix="sca-mixed-"))
    try:
        models = args.models or _stand_ins(scratch)
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for round_number in range(args.rounds):
            order = ARMS if round_number % 2 == 0 else tuple(reversed(ARMS))
            for arm in order:
                runs[arm].append(drain(arm, args.items, models, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(args, runs)
    write_report(args.output, report)
    table = markdown(report)
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    return 0


def _report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    medians = {arm: statistics.median(r["seconds"] for r in runs[arm]) for arm in ARMS}
    return {
        "command": " ".join(["tools/mixed_backlog.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "items": args.items,
        "rounds": args.rounds,
        "scan_dpi": SCAN_DPI,
        "arms": runs,
        "median_seconds": medians,
        "mixed_over_pdf": round(medians["mixed"] / medians["pdf"], 3),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| arm | drain seconds (each round) | median | CPU seconds | documents sharing a "
        "layout call |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm in ARMS:
        runs = report["arms"][arm]
        lines.append(
            f"| {arm} | {', '.join(str(r['seconds']) for r in runs)} | "
            f"{report['median_seconds'][arm]} | {', '.join(str(r['cpu_seconds']) for r in runs)}"
            f" | {', '.join(str(r['documents_sharing_a_layout_call']) for r in runs)} |"
        )
    lines.append(f"\nmixed over pdf (median drain time): {report['mixed_over_pdf']}")
    return "\n".join(lines)


def _stand_ins(scratch: Path) -> Path:
    from harness.stand_in_models import build_stand_in_models

    return build_stand_in_models(scratch / "models", ocr=True)


if __name__ == "__main__":
    raise SystemExit(main())
