"""The config as init-config writes it: every key with its default, under a short guide."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomli_w

from sir_convert_a_lot.config.schema import SCHEMA
from sir_convert_a_lot.config.sections import DEFAULT_ROOT, PATH_KEYS


def default_document(root: Path = DEFAULT_ROOT) -> dict[str, Any]:
    """Every key with its default, as init-config writes it. Folders lie under ``root``."""
    document: dict[str, Any] = {
        section: {name: copy.deepcopy(key.default) for name, key in keys.items()}
        for section, keys in SCHEMA.items()
    }
    document["paths"] = {name: str(root / name) for name in PATH_KEYS}
    document["profiles"] = {}
    return document


_HEADER = """\
# Sir Convert-a-Lot configuration. Every key is listed with its default.
# Paths that are not absolute are taken relative to this file's folder.
# The state folder must be on the same filesystem as the inbox.
# Profiles: add [profiles.NAME] with any of the [conversion] option keys; files dropped under
# inbox/NAME/ then use them. Example:
#   [profiles.scans]
#   ocr_mode = "force"
# Governance: allow_cpu_only / allow_cpu_fallback take effect only with a decision_record:
# write this site's record under /etc/sir-convert/decisions/ (kept and backed up with this
# file, unlike the program's folder) and name its path (docs/operations.md, "Lifting the
# GPU-first lock"; the lock itself: the project's docs/decisions/0001-gpu-first-lock.md).
# gpu.max_pages_in_flight: the pages claimed jobs may hold at once; 0 means twice
# gpu.layout_batch_size (one job is always claimed, however large).

"""


def render_default(root: Path = DEFAULT_ROOT) -> str:
    return _HEADER + tomli_w.dumps(default_document(root))
