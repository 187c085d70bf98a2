"""tools/gpu-check, the prepared evidence run for a GPU machine: its CPU-runnable parts here,
the real thing where a GPU is present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, SAMPLES

sys.path.insert(0, str(REPO / "tools"))
import gpu_check
import gpu_report

pytestmark = pytest.mark.slow


def _run(out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [str(REPO / "tools" / "gpu-check"), "--output", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    report = json.loads((out / "gpu-check.json").read_text())
    assert (out / "gpu-check.md").read_text().startswith("# gpu-check")
    return completed.returncode, report


def test_gpu_check_reports_every_figure_on_a_cpu_with_the_governed_fallback(
    tmp_path: Path,
) -> None:
    code, report = _run(
        tmp_path,
        "--allow-cpu",
        "--ray",
        "--batch-sizes",
        "2",  # one local run and one on Ray: each batch size is a model load of its own
        "--copies",
        "2",
        "--pdfs",
        str(SAMPLES / "2305.03393v1-pg9.pdf"),
        "--steady-jobs",
        "3",  # one job at a time, for the GPU memory after each
    )
    assert code == 0, report["problems"]
    runs = [(run["batch_size"], run["engine"], run["in_flight"]) for run in report["runs"]]
    assert runs == [(2, "local", 0), (2, "ray", 0), (1, "local", 1)]
    assert [run["jobs_total"] for run in report["runs"]] == [4, 4, 3]  # the PDF and scan twice
    for run in report["runs"]:
        assert run["engines"] == [run["engine"]]  # what the sidecars say
        assert run["jobs_succeeded"] == run["jobs_total"]
        assert run["acceleration_used"] == ["cpu"]
        assert len(run["conversion_threads"]) == 1
        assert run["loaded"] == ["docling@cpu"]
        assert run["model_load_seconds"] > 0
        assert run["pages_per_second_convert"] > 0
        assert run["exit_code"] == 0
    assert report["probe"]["cuda_available"] in (True, False)
    assert [job["pdf"] for job in report["runs"][0]["alone"]] == ["2305.03393v1-pg9", "scanned"]
    assert report["markdown_variants"] == {"2305.03393v1-pg9": 1, "scanned": 1}
    assert report["json_variants"] == {  # alone and among copies, per batch size
        "2305.03393v1-pg9 at batch 1": 1,  # the steady run's copies
        "2305.03393v1-pg9 at batch 2": 1,  # local and Ray
        "scanned at batch 2": 1,
    }
    assert report["memory"] == {"jobs": 3, "measured": 0}  # torch's allocator: only on a GPU
    [devices] = report["scan_stage_devices"]
    scan = json.loads(devices)
    assert {"layout", "ocr"} <= set(scan) and set(scan.values()) == {"cpu"}
    tables = report["tables"]["settings"]
    assert [(s["tf32"], s["batch_size"]) for s in tables] == [(False, 1), (False, 8), (False, 32)]
    assert all(s["bitwise_as_alone"] == report["tables"]["tables"] for s in tables)
    # A pass leaves nothing behind: each run's models and daemons are tens of MB in /tmp.
    assert report["work_folder"]["kept"] is False
    assert not Path(report["work_folder"]["path"]).exists()


@pytest.mark.gpu
def test_gpu_check_passes_on_a_gpu(tmp_path: Path) -> None:
    code, report = _run(tmp_path, "--batch-sizes", "4,64", "--ray")
    assert code == 0, report["problems"]
    assert all(run["acceleration_used"] == ["cuda"] for run in report["runs"])
    assert report["runs"][0]["device_lock"]["second_instance_waited"] is True
    assert report["memory"]["measured"] == 500 and report["memory"]["over_tolerance"] == 0


def test_a_negative_steady_run_is_refused_before_any_model_is_built(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(REPO / "tools" / "gpu-check"), "--output", str(tmp_path), "--steady-jobs", "-3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "--steady-jobs: -3 is below 0" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "gpu-check.json").exists()


def test_a_failed_run_keeps_its_folder_for_the_logs_and_says_where(tmp_path: Path) -> None:
    work = tmp_path / "gpu-check-run"
    (work / "batch-4").mkdir(parents=True)
    (work / "batch-4" / "gpu-check.log").write_text("why it failed\n")
    kept = gpu_check.tidy(work, passed=False)
    assert kept == {"path": str(work), "kept": True}
    assert (work / "batch-4" / "gpu-check.log").read_text() == "why it failed\n"
    report = {"probe": {"reason": "r"}, "runs": [], "problems": ["x"], "work_folder": kept}
    report |= {"command": "c", "memory": {"jobs": 0, "measured": 0}}
    report |= {"tables": {"settings": [], "tables": 0, "device": "cpu", "tag_steps": [1]}}
    assert f"kept in {work}" in gpu_report.render(report)
    assert gpu_check.tidy(work, passed=True) == {"path": str(work), "kept": False}
    assert not work.exists()
