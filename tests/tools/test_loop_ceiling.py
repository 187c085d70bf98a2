"""The loop-ceiling tool: its no-op daemon carries every file to a sidecar, its report says what
it measured, and its engine stays out of everything a user can configure. No timings are
asserted: the figures are the tool's to report, in docs/reference/."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.engine.interface import ConversionEngine
from sir_convert_a_lot.engine.policy import RunOn
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service.daemon import Service
from tests.helpers import REPO, UNLOCK, load_config

sys.path.insert(0, str(REPO / "tools"))
import loop_ceiling

PACKAGE = REPO / "daemon" / "sir_convert_a_lot"
RUN_FIELDS = {
    "round",
    "load_average_1min_before",
    "max_pages_in_flight",
    "job_threads",
    "succeeded",
    "archived",
    "left_in_inbox",
    "left_in_state",
    "numbered_duplicates",
    "seconds_drop_to_first_sidecar",
    "seconds_drop_to_last_sidecar",
    "jobs_per_second",
    "jobs_per_second_beyond_window",
    "steady_jobs_per_second",
    "daemon_cpu_seconds",
    "daemon_cpu_ms_per_job",
    "daemon_cpu_cores_busy",
    "sidecar_timings_ms_median",
}


@pytest.mark.slow
def test_every_file_ends_as_a_sidecar_and_the_report_has_its_fields(tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    argv = ["--files", "6", "--threads", "1,4", "--stability-seconds", "0.2"]
    argv += ["--scratch", str(tmp_path), "--output", str(output)]
    assert loop_ceiling.main(argv) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["command"] == " ".join([".venv/bin/python tools/loop_ceiling.py", *argv])
    assert report["files"] == 6 and report["log_level"] == "info"
    assert {"ceiling_jobs_per_second", "ceiling_at_max_pages_in_flight", "host"} <= set(report)
    assert set(report["median_jobs_per_second_by_max_pages_in_flight"]) == {"1", "4"}
    assert [run["max_pages_in_flight"] for run in report["runs"]] == [1, 4]
    for run in report["runs"]:
        assert set(run) == RUN_FIELDS
        assert run["succeeded"] == run["archived"] == 6
        assert run["left_in_inbox"] == run["left_in_state"] == run["numbered_duplicates"] == 0
        assert run["daemon_cpu_seconds"] >= 0
    sidecars = sorted(tmp_path.glob("sca-ceiling-*/outbox/*.json"))
    assert len(sidecars) == 12
    for sidecar in sidecars:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
        assert document["status"] == "succeeded"
        assert document["execution"]["engine"] == "noop"  # nothing was converted for real
        assert document["result"]["conversion_metadata"]["acceleration_used"] == "cpu"
        assert sidecar.with_suffix(".md").read_text(encoding="utf-8").startswith("# Page 1")


def test_the_no_op_engine_is_a_conversion_engine_that_answers_at_once() -> None:
    seen: list[tuple[str, int, int]] = []
    engine: ConversionEngine = loop_ceiling.NoOpEngine(UNLOCK, lambda *a: seen.append(a))
    info = engine.start()
    options = ConversionOptions(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    decision = engine.decide(options)  # the real GPU-first lock, over a probe without a GPU
    assert isinstance(decision, RunOn) and decision.device == "cpu"
    answer = engine.convert("job_1", "/nowhere.pdf", options, decision)
    assert info.loaded == (("noop", "cpu"),) and not info.probe.cuda_available
    assert isinstance(answer, Converted)
    assert answer.job_id == "job_1" and answer.pages == 1 and answer.acceleration_used == "cpu"
    assert seen == [("job_1", 0, 1), ("job_1", 1, 1)]  # the page count first, for the pacing
    locked = engine.decide(ConversionOptions())  # gpu_required, no unlock matters: refused
    assert not isinstance(locked, RunOn)


@pytest.mark.slow
def test_the_no_op_engine_never_reaches_production_config(tmp_path: Path) -> None:
    # No key of the config (nor any choice of one) names it: init-config's document is every key.
    document = json.dumps(config_module.default_document(Path("/srv/sca"))).lower()
    assert "noop" not in document and "no_op" not in document and "ceiling" not in document
    # Nothing in the package builds a Service with another engine: only tools and tests pass one.
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Service":
                assert all(k.arg != "engine_factory" for k in node.keywords), path
            if isinstance(node, ast.ImportFrom | ast.Import):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                names = [module or ""] + [alias.name for alias in node.names]
                assert not any("loop_ceiling" in name for name in names), path
    # A daemon built from the very config the tool writes runs the supervised worker.
    service = Service(load_config(tmp_path))
    assert isinstance(service.engine, Engine)
    assert service.runner.engine is service.engine
