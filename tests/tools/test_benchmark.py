"""The benchmark runners: benchmark.py's statistics and one real run on two small PDFs;
backlog_cost.py's argument errors, its two arms and its clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, copy_sample, make_pdf

sys.path.insert(0, str(REPO / "tools"))
import benchmark


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 0.5, 1.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 3.85),  # numpy.percentile(..., 95), linear
        ([10.0, 0.0, 5.0], 0.99, 9.9),
        ([3.0, 1.0, 2.0], 0.0, 1.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentiles_interpolate_linearly(values: list[float], q: float, expected: float) -> None:
    assert benchmark.percentile(values, q) == pytest.approx(expected)


def test_the_latency_summary_has_every_statistic() -> None:
    summary = benchmark.latency_summary([1.0, 2.0, 3.0, 4.0])
    assert summary == {"min": 1.0, "mean": 2.5, "p50": 2.5, "p95": 3.85, "p99": 3.97, "max": 4.0}
    assert set(benchmark.latency_summary([])) == {"min", "mean", "p50", "p95", "p99", "max"}


@pytest.mark.slow
def test_batching_adds_up_calls_and_pages_per_stage_across_jobs() -> None:
    jobs: list[dict[str, Any]] = [
        {"batching": {"layout": {"calls": 2, "pages": 5, "max_batch": 4}}},
        {
            "batching": {
                "layout": {"calls": 1, "pages": 1, "max_batch": 1},
                "table": {"calls": 1, "pages": 1, "max_batch": 1},
            }
        },
        {"batching": {}},
    ]
    assert benchmark.batching(jobs) == {
        "layout": {"calls": 3, "pages": 6, "max_batch": 4, "mean_batch": 2.0},
        "table": {"calls": 1, "pages": 1, "max_batch": 1, "mean_batch": 1.0},
    }


def test_a_call_shared_by_several_documents_counts_once() -> None:
    # four one-page documents whose pages went through layout in one call of 4
    shared = {"calls": 1, "pages": 1, "max_batch": 4, "mean_batch": 4.0, "share_of_calls": 0.25}
    jobs: list[dict[str, Any]] = [{"batching": {"layout": dict(shared)}} for _ in range(4)]
    assert benchmark.batching(jobs) == {
        "layout": {"calls": 1, "pages": 4, "max_batch": 4, "mean_batch": 4.0}
    }


@pytest.mark.slow
def test_a_benchmark_run_on_the_cpu_backend_reports_every_job(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    copy_sample("multi_page.pdf", corpus)
    make_pdf(corpus / "nested" / "two.pdf", pages=2)
    copy_sample("not_a_pdf.pdf", corpus)
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        runner_command(corpus, output, repeat=2),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=scratch_env(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert list((tmp_path / "tmp").glob("sca-bench-*")) == []  # it went with the daemon
    report = json.loads(output.read_text())
    assert list(report) == sorted(report)
    summary = report["summary"]
    assert summary["total_jobs"] == 6
    assert summary["succeeded_jobs"] == 4 and summary["failed_jobs"] == 2
    assert summary["success_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert summary["pages"] == 2 * (5 + 2)
    latency = summary["latency_seconds"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["max"]
    assert summary["throughput_jobs_per_minute"] > 0
    profile = report["resource_profile"]
    assert profile["peak_rss_bytes"] > 50 * 1024 * 1024
    assert profile["cpu_seconds"] > 0
    assert profile["acceleration_observed"] == ["cpu"]
    assert profile["backend_observed"] == ["pymupdf"]
    assert report["batching"] == {}  # the pymupdf backend batches nothing across pages
    failed = [j for j in report["jobs"] if j["status"] == "failed"]
    assert {j["error_code"] for j in failed} == {"pdf_unreadable"}
    assert {j["source_file"] for j in report["jobs"]} == {
        f"round-{r}/{name}"
        for r in (1, 2)
        for name in ("multi_page.pdf", "nested/two.pdf", "not_a_pdf.pdf")
    }


def runner_command(corpus: Path, output: Path, repeat: int) -> list[str]:
    """tools/benchmark.py on the CPU backend's bench config."""
    return [
        str(REPO / ".venv" / "bin" / "python"),
        str(REPO / "tools" / "benchmark.py"),
        "--config",
        str(REPO / "tools" / "bench-configs" / "pymupdf-cpu.toml"),
        "--corpus",
        str(corpus),
        "--output",
        str(output),
        "--repeat",
        str(repeat),
    ]


def scratch_env(tmp_path: Path) -> dict[str, str]:
    """The runner's scratch folders under tmp_path/tmp, where a test can see them."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp")}


@pytest.mark.slow
def test_a_run_stopped_midway_takes_its_daemon_and_folder_with_it(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    copy_sample("multi_page.pdf", corpus)
    runner = subprocess.Popen(
        runner_command(corpus, tmp_path / "bench.json", repeat=1000),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=scratch_env(tmp_path),
    )
    try:
        daemon_pid = _wait_for_a_converted_file(tmp_path / "tmp", runner)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) != 0
    finally:
        runner.kill()
    assert list((tmp_path / "tmp").glob("sca-bench-*")) == []
    assert not Path(f"/proc/{daemon_pid}").exists() or "zombie" in _state(daemon_pid)
    assert not (tmp_path / "bench.json").exists()


def _wait_for_a_converted_file(
    scratch: Path, runner: subprocess.Popen[bytes], folders: str = "sca-bench-*"
) -> int:
    """The daemon's pid, once it has published a file in the runner's scratch outbox."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert runner.poll() is None
        for folder in scratch.glob(folders):
            if any((folder / "outbox").rglob("*.json")):
                return _daemon_pid(folder)
        time.sleep(0.2)
    raise AssertionError("the benchmark run published nothing in time")


def _daemon_pid(folder: Path) -> int:
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder) in status.read_bytes().decode(errors="replace"):
                return int(status.parent.name)
        except OSError:
            continue
    raise AssertionError(f"no daemon runs on {folder}")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


@pytest.mark.slow
@pytest.mark.parametrize("wrong", ["config", "corpus"])
def test_a_missing_config_or_corpus_is_named_without_a_traceback(
    tmp_path: Path, wrong: str
) -> None:
    command = runner_command(REPO / "fixtures" / "benchmark_pdfs", tmp_path / "b.json", repeat=1)
    command[command.index(f"--{wrong}") + 1] = str(tmp_path / "typo")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 2
    assert f"--{wrong} {tmp_path / 'typo'}: no such" in completed.stderr
    assert "Traceback" not in completed.stderr


def cost_command(output: Path, *arguments: str) -> list[str]:
    """tools/backlog_cost.py writing ``output``, with ``arguments``."""
    tool = REPO / "tools" / "backlog_cost.py"
    return [str(REPO / ".venv" / "bin" / "python"), str(tool), "--output", str(output), *arguments]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--base", "no-such-commit"], "--base no-such-commit: no such commit"),
        (["--base", "HEAD", "--new", "HEAD~999999"], "--new HEAD~999999: no such commit"),
        (["--base", "HEAD", "--files", "0"], "--files 0: give 1 or more"),
        (["--base", "HEAD", "--rounds", "0"], "--rounds 0: give 1 or more"),
    ],
)
def test_backlog_cost_names_a_bad_argument_without_a_traceback(
    tmp_path: Path, arguments: list[str], said: str
) -> None:
    completed = subprocess.run(
        cost_command(tmp_path / "cost.json", *arguments),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=scratch_env(tmp_path),
    )
    assert completed.returncode == 2
    assert said in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "cost.json").exists()
    assert list((tmp_path / "tmp").glob("sca-backlog-cost-*")) == []


@pytest.mark.slow
def test_backlog_cost_drains_once_with_each_arm_s_own_code(tmp_path: Path) -> None:
    arguments = ["--base", "HEAD", "--files", "2", "--rounds", "1"]
    output, table = tmp_path / "cost.json", tmp_path / "cost.md"
    completed = subprocess.run(
        cost_command(output, *arguments, "--markdown", str(table)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=scratch_env(tmp_path),
    )
    assert "Traceback" not in completed.stderr, completed.stderr[-2000:]
    report = json.loads(output.read_text())
    old, new = report["arms"]["old"], report["arms"]["new"]
    assert Path(new["module_file"]) == (REPO / "daemon" / "sir_convert_a_lot" / "__init__.py")
    assert Path(old["module_file"]).is_relative_to((tmp_path / "tmp").resolve())  # the archive
    head = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True)
    assert old["commit"] == head.strip()
    assert report["order"] == ["old", "new"]
    assert [run["succeeded"] for run in old["runs"] + new["runs"]] == [2, 2]
    assert all(run["cpu_seconds"] > 0 for run in old["runs"] + new["runs"])
    assert completed.returncode == (0 if report["within_tolerance"] else 1)
    assert "| old |" in table.read_text() and "| new |" in table.read_text()
    assert list((tmp_path / "tmp").glob("sca-backlog-cost-*")) == []


@pytest.mark.slow
def test_backlog_cost_stopped_midway_takes_its_daemon_and_old_tree_with_it(tmp_path: Path) -> None:
    arguments = ["--base", "HEAD", "--files", "150", "--rounds", "1"]
    runner = subprocess.Popen(
        cost_command(tmp_path / "cost.json", *arguments),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=scratch_env(tmp_path),
    )
    try:
        daemon_pid = _wait_for_a_converted_file(tmp_path / "tmp", runner, "sca-backlog-cost-*/1-*")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) != 0
    finally:
        runner.kill()
    assert list((tmp_path / "tmp").glob("sca-backlog-cost-*")) == []
    assert not Path(f"/proc/{daemon_pid}").exists() or "zombie" in _state(daemon_pid)
    assert not (tmp_path / "cost.json").exists()
