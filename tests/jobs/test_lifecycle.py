"""The GPU-first lock holds per model stage: a job decided for the GPU whose layout, table or
OCR stage ran elsewhere fails ``gpu_not_available`` naming the stage, and publishes no Markdown;
only a decision record's ``governance.cpu_stages`` lets a named stage run on the CPU. The
mismatch is injected here, by an engine of the tests' own: nothing in the product fakes a
device. And the steps the lifecycle's docstring names are the steps it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from sir_convert_a_lot.config import Governance
from sir_convert_a_lot.engine.interface import ConversionEngine
from sir_convert_a_lot.engine.policy import RunOn, stage_refusal
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.jobs import lifecycle
from sir_convert_a_lot.jobs.lifecycle import JobRunner
from sir_convert_a_lot.jobs.outcome import Status
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.ops.doctor.safety import governance as governance_checks
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.service import startup
from sir_convert_a_lot.sharefs import file_id
from tests.helpers import load_config, make_pdf

LOCKED = Governance()
RECORD = "/etc/sir-convert/decisions/0004-ocr-on-the-cpu-until-the-torch-weights.md"
OCR_ALLOWED = Governance(decision_record=RECORD, cpu_stages=("ocr",))
ON_GPU = RunOn("cuda")
LOCK_HOLDS = {"decision_record": "", "allow_cpu_only": False}  # the tests' configs lift it
ONNX = {"ocr_backend": "onnxruntime"}  # chosen by name: the CPU-only engine


class _GpuEngine:
    """Decides every job for the GPU and answers with the stage devices it is given, as a
    worker would whose OCR model silently stayed on the CPU."""

    kind = "local"
    info = None
    probe = None
    starts = 1

    def __init__(self, stage_devices: dict[str, str]) -> None:
        self.stage_devices = stage_devices

    def decide(self, options: ConversionOptions, source_name: str = "") -> RunOn:
        return ON_GPU

    def convert(self, job_id: str, source: str, options: Any, decision: Any, **_: Any) -> Any:
        return Converted(
            job_id, "# scanned\n", 1, "docling", "cuda", True, (), {}, 1,
            stage_devices=dict(self.stage_devices),
        )  # fmt: skip


def _run(tmp_path: Path, governance: Governance, stage_devices: dict[str, str]) -> Any:
    config = load_config(tmp_path)
    spool = Spool(config.paths, config.instances.name)
    startup.prepare_folders(config, spool)
    info = make_pdf(config.paths.inbox / "scan.pdf").stat()
    job = spool.claims.claim(
        "scan.pdf", None, config.defaults, info.st_size, info.st_mtime_ns, file_id(info)
    )
    assert job is not None
    engine = cast(ConversionEngine, _GpuEngine(stage_devices))
    return config, JobRunner(config, governance, spool, engine).run(job)


def test_a_stage_off_the_gpu_fails_gpu_not_available_naming_it(tmp_path: Path) -> None:
    config, outcome = _run(tmp_path, LOCKED, {"layout": "cuda", "ocr": "cpu"})
    assert (outcome.status, outcome.code) == (Status.FAILED, "gpu_not_available")
    outbox = config.paths.outbox
    assert sorted(p.name for p in outbox.iterdir()) == ["scan.error.json"]
    error = json.loads((outbox / "scan.error.json").read_text())["error"]
    assert error["details"]["stage"] == "ocr" and error["details"]["device"] == "cpu"
    assert "governance.cpu_stages" in error["details"]["fix"]
    assert (config.paths.failed / "scan.pdf").exists()


def test_every_stage_on_the_gpu_publishes(tmp_path: Path) -> None:
    config, outcome = _run(tmp_path, LOCKED, {"layout": "cuda", "table": "cuda", "ocr": "cuda"})
    assert outcome.status is Status.SUCCEEDED
    assert (config.paths.outbox / "scan.md").exists()


def test_a_decision_record_naming_the_stage_lets_it_run_on_the_cpu_and_says_so(
    tmp_path: Path,
) -> None:
    config, outcome = _run(tmp_path, OCR_ALLOWED, {"layout": "cuda", "ocr": "cpu"})
    assert outcome.status is Status.SUCCEEDED
    sidecar = json.loads((config.paths.outbox / "scan.json").read_text())
    assert sidecar["governance"] == {
        "lock": "gpu_first",
        "decision_record": RECORD,
        "cpu_stages": ["ocr"],
    }
    metadata = sidecar["result"]["conversion_metadata"]
    assert metadata["stage_devices"] == {"layout": "cuda", "ocr": "cpu"}


def test_a_record_for_one_stage_does_not_cover_another(tmp_path: Path) -> None:
    _config, outcome = _run(tmp_path, OCR_ALLOWED, {"layout": "cpu", "ocr": "cpu"})
    assert outcome.code == "gpu_not_available"


@pytest.mark.parametrize(
    ("decision", "governance"),
    [
        (RunOn("cpu"), Governance(allow_cpu_only=True, decision_record=RECORD)),
        (ON_GPU, Governance(allow_cpu_fallback=True, decision_record=RECORD)),
    ],
)
def test_the_stage_check_is_the_gpu_first_locks_alone(
    decision: RunOn, governance: Governance
) -> None:
    """A CPU decision, or a lock lifted by a fallback record, is not refused per stage."""
    assert stage_refusal(decision, {"layout": "cpu"}, governance) is None


def test_cpu_stages_without_a_decision_record_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"governance\.decision_record: .*cpu_stages"):
        load_config(
            tmp_path,
            governance={"cpu_stages": ["ocr"], "decision_record": "", "allow_cpu_only": False},
        )


def test_an_unknown_stage_name_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"governance\.cpu_stages: .*'ocrr'"):
        load_config(tmp_path, governance={"cpu_stages": ["ocrr"], "decision_record": RECORD})


def test_doctor_warns_which_stages_a_record_lets_run_on_the_cpu(tmp_path: Path) -> None:
    config = load_config(tmp_path, governance={"cpu_stages": ["ocr"], "decision_record": RECORD})
    (check,) = [c for c in governance_checks(config) if c.name == "gpu-first lock per stage"]
    assert check.status == "WARN" and "ocr" in check.detail and RECORD in check.detail


@pytest.mark.parametrize(
    ("gpu", "governance", "conversion", "warned"),
    [
        (ONNX, LOCK_HOLDS, {"ocr_mode": "auto"}, True),
        ({}, LOCK_HOLDS, {}, False),  # the default, auto: torch on the GPU
        ({"ocr_backend": "torch"}, LOCK_HOLDS, {}, False),
        (ONNX, {**LOCK_HOLDS, "cpu_stages": ["ocr"], "decision_record": RECORD}, {}, False),
        (ONNX, LOCK_HOLDS, {"ocr_mode": "off"}, False),
    ],
)
def test_doctor_says_before_any_job_when_ocr_would_run_off_the_gpu(
    tmp_path: Path,
    gpu: dict[str, Any],
    governance: dict[str, Any],
    conversion: dict[str, Any],
    warned: bool,
) -> None:
    """RapidOCR's onnxruntime engine, chosen by name, runs on the CPU: under the lock every scan
    would fail its ocr stage, so doctor (and the start, on a GPU) say it with the three fixes.
    The default engine (auto) runs on the GPU and is not warned about."""
    conversion = {"backend_strategy": "docling", "ocr_mode": "auto", **conversion}
    config = load_config(tmp_path, gpu=gpu, governance=governance, conversion=conversion)
    rows = [c for c in governance_checks(config) if c.name == "gpu-first lock for ocr"]
    assert bool(rows) is warned
    if warned:
        assert "cpu_stages" in rows[0].fix and 'ocr_backend = "auto"' in rows[0].fix


def test_every_step_the_lifecycle_docstring_names_is_a_method_in_the_step_tuple_in_order() -> None:
    """The module's docstring tells a job's life once; it must not drift from the code."""
    doc = lifecycle.__doc__
    assert doc is not None
    table = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    # A step's line starts four spaces in; its description's continuation lines go deeper.
    named = [line.split()[0] for line in table.splitlines() if not line.startswith(" " * 5)]
    assert named == [step.__name__ for step in JobRunner.STEPS]
    assert [getattr(JobRunner, name) for name in named] == list(JobRunner.STEPS)
    assert {"inspect", "convert", "recheck_source", "publish"} <= set(named)
