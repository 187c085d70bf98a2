"""Shared test helpers: configs on real temporary folders, generated PDFs, the sample corpus."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.config import Config, Governance

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "fixtures" / "corpus_sample"
SHARED_CORPUS = Path(os.environ.get("SIR_CONVERT_CORPUS", REPO.parent / "shared" / "corpus"))
VENV_BIN = REPO / ".venv" / "bin"

UNLOCK = Governance(allow_cpu_only=True, decision_record="tests: explicit unlock")


def config_document(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete config under ``root``: fast windows for tests, the CPU backend unlocked by a
    decision record (the only way a config can unlock it). Pass sections to override keys."""
    document = config_module.default_document(root)
    document["watch"].update(
        stability_seconds=0.2, poll_interval_seconds=0.2, incomplete_wait_seconds=2
    )
    document["conversion"].update(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    document["governance"].update(
        allow_cpu_only=True, decision_record="docs/decisions/0002-cpu-only-for-tests.md"
    )
    document["instances"].update(name="test-instance", lease_seconds=5)
    document["service"].update(stop_grace_seconds=10)
    document["logging"].update(format="json")
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    return document


def write_config(root: Path, **sections: dict[str, Any]) -> Path:
    path = root / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config_document(root, **sections)), encoding="utf-8")
    return path


def load_config(root: Path, **sections: dict[str, Any]) -> Config:
    return config_module.load(write_config(root, **sections))


def make_pdf(path: Path, pages: int = 1, text: str = "Hello from a test page.") -> Path:
    """A small, valid PDF with ``pages`` pages of text, written in one go."""
    import pymupdf

    document = pymupdf.open()
    for number in range(pages):
        page = document.new_page()
        page.insert_text((72, 72), f"{text} Page {number + 1}.", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document.tobytes())
    document.close()
    return path


def pdf_bytes(pages: int = 1, text: str = "Hello from a test page.") -> bytes:
    import pymupdf

    document = pymupdf.open()
    for number in range(pages):
        document.new_page().insert_text((72, 72), f"{text} Page {number + 1}.", fontsize=12)
    data: bytes = document.tobytes()
    document.close()
    return data


def copy_sample(name: str, into: Path, as_name: str | None = None) -> Path:
    target = into / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / name, target)
    return target


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def files_under(root: Path) -> list[str]:
    """Relative paths of every non-folder entry below ``root``, sorted (symlinks not followed)."""
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)
