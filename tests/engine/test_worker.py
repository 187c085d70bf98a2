"""The worker converts every format of ``conversion.formats``: a format that runs no model with
no model loaded and no device, hostile files each failing with their own error while the worker
goes on serving, and, on this host without a GPU, a DOCX under the GPU-first lock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.documents import (
    docx_bytes,
    image_bytes,
    png_claiming,
    pptx_bytes,
    rewrite_member,
    tiff_chain,
    zip_bomb,
)
from sir_convert_a_lot.engine.policy import Refused, RunOn
from sir_convert_a_lot.engine.protocol import (
    Converted,
    ConvertRequest,
    Failed,
    Progress,
    WorkerSettings,
)
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.worker import _Worker
from sir_convert_a_lot.options import ConversionOptions
from tests.helpers import SHIPPED, Sink, load_config

MAX_BYTES = 50 * 1024 * 1024
LOCKED = ConversionOptions()  # gpu_required, docling, OCR auto: the defaults


@pytest.fixture
def worker() -> Iterator[_Worker]:
    """A worker that loaded nothing: what starts on a host without a GPU under the lock."""
    made = _Worker(Sink(), WorkerSettings(0, "", MAX_BYTES, 2000))
    yield made
    made.model_thread.shutdown()


def _convert(
    worker: _Worker, tmp_path: Path, name: str, data: bytes, device: str = "none"
) -> Converted | Failed:
    source = tmp_path / f"claimed-{len(worker.conn.sent)}"  # type: ignore[attr-defined]
    source.write_bytes(data)
    return worker._convert(ConvertRequest("job_1", str(source), f"sub/{name}", LOCKED, device))


@pytest.mark.parametrize(
    ("name", "make", "reason", "code"),
    [
        ("bomb.docx", lambda: zip_bomb(docx_bytes()), "unpacked_too_large", "payload_too_large"),
        ("broken.docx", lambda: docx_bytes()[:2000], "no_end_of_archive", "document_unreadable"),
        ("bomb.png", lambda: png_claiming(10**5, 10**5), "image_too_large", "payload_too_large"),
        ("cut.png", lambda: image_bytes("PNG")[:300], "image_unreadable", "document_unreadable"),
        ("empty.pptx", lambda: b"", "empty_file", "document_unreadable"),
    ],
)
def test_a_hostile_file_fails_with_its_own_error_before_any_model_is_needed(
    worker: _Worker,
    tmp_path: Path,
    name: str,
    make: Callable[[], bytes],
    reason: str,
    code: str,
) -> None:
    answer = _convert(worker, tmp_path, name, make(), device="cuda")
    assert isinstance(answer, Failed)
    assert (answer.code, answer.details["reason"]) == (code, reason)
    assert worker.backends == {}  # nothing was loaded for it


def test_a_ten_thousand_page_tiff_fails_too_many_pages(worker: _Worker, tmp_path: Path) -> None:
    answer = _convert(worker, tmp_path, "scan.tif", tiff_chain(10_000), device="cuda")
    assert isinstance(answer, Failed) and answer.code == "too_many_pages"
    assert answer.details["max_pages"] == 2000


def test_an_image_decided_to_run_no_model_gets_no_device(worker: _Worker, tmp_path: Path) -> None:
    """The supervisor decides by the name it claimed, the worker opens by the name it is sent;
    should they ever disagree, a file that runs models is never converted without a device."""
    answer = _convert(worker, tmp_path, "scan.png", image_bytes("PNG"), device="none")
    assert isinstance(answer, Failed) and answer.code == "gpu_not_available"
    assert answer.details["reason"] == "no_device_decided"
    assert worker.backends == {}


@pytest.mark.slow  # docling: seconds to import
def test_a_docx_converts_with_no_model_loaded_and_the_worker_goes_on_after_a_broken_one(
    worker: _Worker, tmp_path: Path
) -> None:
    broken = rewrite_member(docx_bytes(), "word/document.xml", lambda _xml: b"<not xml")
    failed = _convert(worker, tmp_path, "broken.docx", broken)
    assert isinstance(failed, Failed) and failed.code == "document_unreadable"
    answer = _convert(worker, tmp_path, "letter.docx", docx_bytes(text="Dear reader."))
    assert isinstance(answer, Converted), answer
    assert "Dear reader." in answer.markdown and answer.markdown.startswith("## Title")
    assert answer.acceleration_used == "none" and answer.stage_devices == {}
    assert answer.pages == 1 and answer.device is None and answer.batches == {}
    assert Progress("job_1", 0, 1) in worker.conn.sent  # type: ignore[attr-defined]
    assert worker.backends == {}  # no model was loaded for it
    slides = _convert(worker, tmp_path, "deck.pptx", pptx_bytes(slides=4))
    assert isinstance(slides, Converted) and slides.pages == 4  # docling's slides


@pytest.mark.slow  # starts a worker process
def test_on_a_host_without_a_gpu_a_docx_converts_under_the_lock_and_a_pdf_does_not(
    tmp_path: Path,
) -> None:
    config = load_config(tmp_path, **SHIPPED)
    assert config.governance.lock == "gpu_first"
    assert config.defaults.acceleration_policy == "gpu_required"
    engine = Engine(config, config.governance, instance="no-gpu-test")
    try:
        info = engine.start()
        assert info.loaded == () and not info.probe.cuda_available  # this host has no GPU
        pdf = engine.decide(config.defaults, "inbox/report.pdf")
        assert isinstance(pdf, Refused) and pdf.code.value == "gpu_not_available"
        decision = engine.decide(config.defaults, "inbox/letter.docx")
        assert decision == RunOn("none")
        source = tmp_path / "letter.docx"
        source.write_bytes(docx_bytes(text="Converted without a GPU."))
        answer = engine.convert("job_1", str(source), config.defaults, decision, "letter.docx")
        assert isinstance(answer, Converted), answer
        assert "Converted without a GPU." in answer.markdown
        assert answer.acceleration_used == "none" and answer.stage_devices == {}
    finally:
        engine.stop()
