"""Test configs on real temporary folders: fast windows, the CPU backend unlocked by a
decision record (the only way a config can unlock it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.config import Config


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
