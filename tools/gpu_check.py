"""Evidence that the CUDA path works: one prepared run on a machine with a GPU.

Usage (on the GPU machine, from the repository root):

    python3 tools/gpu_check.py --output OUT_DIR [--batch-sizes 4,64] [--copies 3]

It builds the stand-in models (harness.stand_in_models), then for each batch
size runs the real daemon with ``gpu_required`` and the docling backend on a few sample PDFs and
reports:
the GPU probe, ``acceleration_used`` of every job, whether every job's model calls ran on the
same CUDA thread, model load and warm-up time against conversion time per page, the GPU memory
peak, pages per second, and GPU utilisation (NVML). It also starts a second instance for the
same GPU and records that it waits for the device lock, naming the holder.

``--ray`` adds a run of the first batch size on the Ray engine (a private Ray, one actor that
takes the GPU as ``gpus_per_worker = 1``): the same checks, and the sidecars must say ``ray``.
``--steady-jobs N`` (default 500; 5 with ``--allow-cpu``, where nothing is measured) ends with N
copies of the first PDF converted one at a time, to read torch's allocated memory after each
(``gpu_memory_check``; 0 skips it).
``--allow-cpu`` runs the same steps on a machine without a GPU (``gpu_prefer`` with a governed
CPU fallback), so the script itself is tested in CI; its report then says ``cpu``.
Writes OUT_DIR/gpu-check.json and OUT_DIR/gpu-check.md. Exit 0 when every check passed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tomli_w

import gpu_memory_check
import gpu_tables
from gpu_report import render
from gpu_verdict import SCAN_STEM, verdict
from harness.daemon import Daemon
from harness.pdfs import scanned_pdf_bytes
from harness.stand_in_models import build_stand_in_models
from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.engine.gpu import probe
from toolkit import REPO

SAMPLES = REPO / "fixtures" / "corpus_sample"
DEFAULT_PDFS = ("2305.03393v1-pg9.pdf", "multi_page.pdf", "r6-owner-password.pdf")
SCAN = f"{SCAN_STEM}.pdf"  # written at the start: a page whose text is only pixels, read by OCR
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
    # daemon/ and the repository (for harness/, the test harness the wheel leaves out) first,
    # then whatever the caller had: on the device the bundle's packages live in a --target folder
    # on PYTHONPATH (tools/gpu-bundle), and the daemon must see them too.
    "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO / "daemon"), str(REPO), os.environ.get("PYTHONPATH", "")) if p
    ),
}


def write_config(
    root: Path, models: Path, batch: int, allow_cpu: bool, engine: str = "local", in_flight: int = 0
) -> Path:
    document = config_module.default_document(root)
    document["watch"].update(stability_seconds=0.2)
    document["conversion"].update(
        backend_strategy="docling",
        ocr_mode="auto",
        table_mode="accurate",
        acceleration_policy="gpu_prefer" if allow_cpu else "gpu_required",
    )
    document["gpu"].update(
        models_path=str(models),
        layout_batch_size=batch,
        table_batch_size=batch,
        ocr_batch_size=batch,
        max_pages_in_flight=in_flight,
    )
    document["instances"].update(name="gpu-check", lease_seconds=30)
    # One worker for every job of a run: a recycle would reset the GPU memory the check reads.
    document["engine"].update(recycle_after_jobs=0, recycle_above_bytes=0)
    if engine == "ray":  # one actor on a private Ray, holding the GPU as an actor would
        document["engine"].update(
            kind="ray",
            ray_address="local",
            workers=1,
            gpus_per_worker=0 if allow_cpu else 1,
            cpus_per_worker=1,
        )
    document["logging"].update(format="json")
    document["output"].update(formats=["markdown", "docling_json"])  # alone against batched
    if allow_cpu:
        document["governance"].update(
            allow_cpu_fallback=True,
            decision_record="docs/decisions/0002-cpu-only-for-tests.md",
        )
    path = root / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def start_daemon(config: Path, instance: str) -> Daemon:
    """The harness's daemon, run as the module: the device's bundle installs no console script."""
    command = [sys.executable, "-m", "sir_convert_a_lot", "--config", str(config), "run"]
    daemon = Daemon(
        config,
        instance=instance,
        command=[*command, "--instance", instance],
        env=ENV,
        cwd=REPO,
        log_path=config.parent / f"{instance}.log",
    )
    return daemon.start(wait_ready=False)


class Utilisation:
    """NVML utilisation samples every half second, while a drain runs."""

    def __init__(self, index: int) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(index,), daemon=True)

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, index: int) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            return
        while not self._stop.wait(0.5):
            try:
                self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            except Exception:
                return


def run_batch_size(
    root: Path,
    models: Path,
    batch: int,
    pdfs: list[Path],
    copies: int,
    allow_cpu: bool,
    check_lock: bool,
    engine: str = "local",
    alone: bool = False,
    in_flight: int = 0,
) -> dict[str, Any]:
    config = write_config(root, models, batch, allow_cpu, engine, in_flight)
    daemon = start_daemon(config, "gpu-check")
    result: dict[str, Any] = {"batch_size": batch, "engine": engine, "in_flight": in_flight}
    try:
        ready = daemon.wait_event("worker_ready", timeout=900)[0]
        result.update(
            loaded=ready.get("loaded"),
            model_load_seconds=ready.get("load_seconds"),
            warm_seconds=ready.get("warm_seconds"),
        )
        daemon.wait_event("daemon_ready", timeout=120)
        if check_lock:
            result["device_lock"] = second_instance_waits(config)
        if alone:  # each PDF first on its own, to compare with its copies converted together
            for name in stage_copies(root / "staging", pdfs, 1, suffix="alone"):
                drain(root, [name])
                result.setdefault("alone", []).append(job_of(root / "outbox", name))
        names = stage_copies(root / "staging", pdfs, copies)
        wall, utilisation = drain(root, names)
        jobs = [job_of(root / "outbox", name) for name in names]
        result.update(figures(jobs, wall, utilisation))
    finally:
        result["exit_code"] = daemon.stop(timeout=120)
    return result


def stage_copies(staging: Path, pdfs: list[Path], copies: int, suffix: str = "") -> list[str]:
    """``copies`` copies of each PDF, written outside the inbox so each appears complete."""
    staging.mkdir(exist_ok=True)
    names = []
    for pdf in pdfs:
        for copy in range(copies):
            name = f"{pdf.stem}-{suffix or copy}.pdf"
            shutil.copyfile(pdf, staging / name)
            names.append(name)
    return names


def drain(root: Path, names: list[str]) -> tuple[float, list[int]]:
    """Drop the staged files at once and wait for each one's sidecar; returns the wall seconds
    and the GPU utilisation samples taken meanwhile."""
    started = time.monotonic()
    with Utilisation(0) as utilisation:
        for name in names:
            os.rename(root / "staging" / name, root / "inbox" / name)
        outbox = root / "outbox"
        deadline = started + 1800
        while time.monotonic() < deadline:
            done = [
                n
                for n in names
                if (outbox / n.replace(".pdf", ".json")).exists()
                or (outbox / n.replace(".pdf", ".error.json")).exists()
            ]
            if len(done) == len(names):
                break
            time.sleep(0.2)
    return time.monotonic() - started, utilisation.samples


def job_of(outbox: Path, name: str) -> dict[str, Any]:
    sidecar = outbox / name.replace(".pdf", ".json")
    if not sidecar.exists():
        error = json.loads((outbox / name.replace(".pdf", ".error.json")).read_text())
        code = error["error"]["code"]
        return {"source": name, "pdf": name.rsplit("-", 1)[0], "status": "failed", "code": code}
    document = json.loads(sidecar.read_text())
    execution = document["execution"]
    metadata = document["result"]["conversion_metadata"]
    return {
        "source": name,
        "pdf": name.rsplit("-", 1)[0],
        "status": "succeeded",
        "markdown_sha256": document["result"]["artifact"]["sha256"],
        "json_sha256": lossless_digest(outbox / name.replace(".pdf", ".docling.json")),
        "stage_devices": metadata["stage_devices"],
        "tables": execution.get("tables"),
        "pages": document["source"]["pages"],
        "acceleration_used": document["result"]["conversion_metadata"]["acceleration_used"],
        "conversion_thread": execution["worker"].get("conversion_thread"),
        "worker_pid": execution["worker"].get("pid"),
        "engine": execution.get("engine"),
        "convert_ms": execution["timings_ms"].get("convert_ms"),
        "finished_at": execution["finished_at"],
        "memory_peak_bytes": (execution["device"] or {}).get("memory_peak_bytes"),
        "device": execution["device"],
    }


def lossless_digest(path: Path) -> str | None:
    """The lossless JSON's sha256 without the two fields that name the file (copies differ
    there): what must not change with the company a document keeps."""
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    document.pop("name", None)
    document.get("origin", {}).pop("filename", None)
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def figures(jobs: list[dict[str, Any]], wall: float, utilisation: list[int]) -> dict[str, Any]:
    ok = [j for j in jobs if j["status"] == "succeeded"]
    pages = sum(j["pages"] for j in ok)
    convert_seconds = sum(j["convert_ms"] for j in ok) / 1000
    return {
        "jobs": jobs,
        "jobs_succeeded": len(ok),
        "jobs_total": len(jobs),
        "pages": pages,
        "acceleration_used": sorted({j["acceleration_used"] for j in ok}),
        "conversion_threads": sorted({j["conversion_thread"] for j in ok}),
        "worker_pids": sorted({j["worker_pid"] for j in ok}),
        "engines": sorted({j["engine"] for j in ok}),
        "seconds_per_page_convert": round(convert_seconds / pages, 4) if pages else None,
        "pages_per_second_convert": round(pages / convert_seconds, 2) if convert_seconds else None,
        "pages_per_second_wall": round(pages / wall, 2) if wall else None,
        "gpu_memory_peak_bytes": max((j["memory_peak_bytes"] or 0 for j in ok), default=None),
        "gpu_utilisation_mean_percent": (
            round(sum(utilisation) / len(utilisation), 1) if utilisation else None
        ),
    }


def second_instance_waits(config: Path) -> dict[str, Any]:
    """A second instance configured for the same GPU must wait for the device lock."""
    second = start_daemon(config, "gpu-check-second")
    try:
        waiting = second.wait_event("device_busy_waiting", timeout=300)[0]
        return {"second_instance_waited": True, "holder": waiting.get("holder")}
    except AssertionError as exc:  # it exited, or never waited within the time
        return {"second_instance_waited": False, "problem": str(exc)[-500:]}
    finally:
        second.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="4,64")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--pdfs", nargs="*", type=Path, default=[SAMPLES / n for n in DEFAULT_PDFS])
    parser.add_argument("--steady-jobs", type=int, default=None)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument(
        "--ray", action="store_true", help="also run the first batch size on the Ray engine"
    )
    args = parser.parse_args()
    missing = [str(pdf) for pdf in args.pdfs if not pdf.is_file()]
    if missing:  # before minutes of model building, not after
        parser.error(f"--pdfs: no such file: {', '.join(missing)}")
    if args.steady_jobs is not None and args.steady_jobs < 0:
        parser.error(f"--steady-jobs: {args.steady_jobs} is below 0 (0 skips the steady run)")

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        report = check(args, work)
    except BaseException:
        print(f"gpu-check: stopped; its models, daemons and logs stay in {work}", file=sys.stderr)
        raise
    report["work_folder"] = tidy(work, passed=not report["problems"])
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gpu-check.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (args.output / "gpu-check.md").write_text(render(report))
    print(render(report))
    return 0 if not report["problems"] else 1


def tidy(work: Path, passed: bool) -> dict[str, Any]:
    """Remove the run's folder (stand-in models and daemons, tens of MB) after a pass; keep it
    after a failure, whose daemons' logs say why."""
    if passed:
        shutil.rmtree(work, ignore_errors=True)
    return {"path": str(work), "kept": not passed}


def check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every run and comparison, in ``work``; the report with its problems."""
    built = time.monotonic()
    # OCR is off in every run here, so no RapidOCR stand-in: the device bundle leaves rapidocr
    # (26 MiB of wheel) out (tools/gpu-bundle).
    models = build_stand_in_models(work / "models")
    (work / SCAN).write_bytes(scanned_pdf_bytes("A scanned page for the OCR stage."))
    report: dict[str, Any] = {
        "command": " ".join(["tools/gpu_check.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "probe": probe(0).to_dict(),
        "stand_in_models_seconds": round(time.monotonic() - built, 2),
        "note": "stand-in random-weight models: figures measure the pipeline and the GPU "
        "path, not docling's real models or output quality",
        "runs": [],
    }
    for position, batch in enumerate(int(b) for b in args.batch_sizes.split(",")):
        report["runs"].append(
            run_batch_size(
                work / f"batch-{batch}",
                models,
                batch,
                [*args.pdfs, work / SCAN],
                args.copies,
                args.allow_cpu,
                check_lock=position == 0 and not args.allow_cpu,
                alone=position == 0,
            )
        )
    if args.ray:
        first = int(args.batch_sizes.split(",")[0])
        report["runs"].append(
            run_batch_size(
                work / "ray",
                models,
                first,
                [*args.pdfs, work / SCAN],
                args.copies,
                args.allow_cpu,
                check_lock=False,
                engine="ray",
            )
        )
    steady: list[dict[str, Any]] = []
    if args.steady_jobs is None:
        args.steady_jobs = 5 if args.allow_cpu else 500
    if args.steady_jobs:  # one page in flight: each job ends alone in the worker
        run = run_batch_size(
            work / "steady",
            models,
            1,
            args.pdfs[:1],
            args.steady_jobs,
            args.allow_cpu,
            check_lock=False,
            in_flight=1,
        )
        report["runs"].append(run)
        steady = run.get("jobs", [])
    report["memory"] = gpu_memory_check.summary(steady)
    device = "cuda" if report["probe"]["cuda_available"] else "cpu"
    report["tables"] = gpu_tables.compare(models, device)
    report["problems"] = verdict(report, args.allow_cpu)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
