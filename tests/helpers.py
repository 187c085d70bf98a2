"""Shared test helpers: where the repository's samples and environment are, and (from the
package's ``harness``, which the tools share) configs on real temporary
folders, generated PDFs and waiting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.configs import config_document, load_config, write_config
from harness.pdfs import make_pdf, pdf_bytes
from harness.waiting import ended, wait_for
from sir_convert_a_lot.config import Governance

__all__ = [
    "REPO",
    "SAMPLES",
    "SHARED_CORPUS",
    "SHIPPED",
    "UNLOCK",
    "VENV_BIN",
    "Sink",
    "config_document",
    "copy_sample",
    "ended",
    "files_under",
    "load_config",
    "make_pdf",
    "pdf_bytes",
    "shell_hook",
    "wait_for",
    "write_config",
]

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "fixtures" / "corpus_sample"
SHARED_CORPUS = Path(os.environ.get("SIR_CONVERT_CORPUS", REPO.parent / "shared" / "corpus"))
VENV_BIN = REPO / ".venv" / "bin"

UNLOCK = Governance(allow_cpu_only=True, decision_record="tests: explicit unlock")


def copy_sample(name: str, into: Path, as_name: str | None = None) -> Path:
    target = into / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / name, target)
    return target


def files_under(root: Path) -> list[str]:
    """Relative paths of every non-folder entry below ``root``, sorted (symlinks not followed)."""
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


SHIPPED: dict[str, dict[str, Any]] = {
    "conversion": {
        "backend_strategy": "auto",
        "ocr_mode": "auto",
        "acceleration_policy": "gpu_required",
    },
    "governance": {"allow_cpu_only": False, "decision_record": ""},
}
"""Config sections that put back what the test configs lift: the shipped conversion defaults
and the GPU lock, for what a host without a GPU does out of the box."""


class Sink:
    """The supervisor's end of a worker's pipe, for a worker driven by hand: keeps what it is
    sent; the worker never hears from it."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, obj: object) -> None:
        self.sent.append(obj)

    def recv(self) -> object:
        raise EOFError


OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # no model hub here
FALLBACK = {"allow_cpu_only": False, "allow_cpu_fallback": True}  # the governed CPU fallback


def docling_config(
    root: Path, models: Path, batch: int = 4, **conversion: Any
) -> dict[str, dict[str, Any]]:
    """Config sections for the docling backend on the stand-in models, on the CPU through the
    governed fallback (``gpu_prefer``), OCR off unless ``conversion`` says otherwise."""
    return {
        "conversion": {
            "backend_strategy": "docling",
            "acceleration_policy": "gpu_prefer",
            "ocr_mode": "off",
            **conversion,
        },
        "governance": FALLBACK,
        "gpu": {"models_path": str(models), "layout_batch_size": batch, "table_batch_size": batch},
    }


def shell_hook(path: Path, body: str) -> str:
    """An executable ``/bin/sh`` script at ``path`` running ``body``, for ``hooks.*``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return str(path)
