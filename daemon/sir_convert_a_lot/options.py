"""Job options: the v1 JobSpec fields as one immutable value, and their fingerprint.

``[conversion]`` in the config gives the defaults, ``[profiles.NAME]`` overrides them for files
dropped under ``inbox/NAME/``. The fingerprint lets a user tell at a glance whether two sidecars
were produced with the same effective options.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

BACKEND_STRATEGIES: Final = ("auto", "docling", "pymupdf")
OCR_MODES: Final = ("auto", "off", "force")
TABLE_MODES: Final = ("fast", "accurate")
NORMALIZE_LEVELS: Final = ("none", "standard", "strict")
ACCELERATION_POLICIES: Final = ("gpu_required", "gpu_prefer", "cpu_only")
TIMEOUT_RANGE: Final = (30, 7200)

# The fields a profile may override, with the allowed values (a tuple) or an int range (a pair).
OPTION_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "backend_strategy": BACKEND_STRATEGIES,
    "ocr_mode": OCR_MODES,
    "table_mode": TABLE_MODES,
    "normalize": NORMALIZE_LEVELS,
    "acceleration_policy": ACCELERATION_POLICIES,
}


@dataclass(frozen=True, slots=True)
class ConversionOptions:
    """What a job asks for. ``backend`` resolves ``auto``: the GPU engine, docling."""

    backend_strategy: str = "auto"
    ocr_mode: str = "auto"
    table_mode: str = "accurate"
    normalize: str = "standard"
    acceleration_policy: str = "gpu_required"
    document_timeout_seconds: int = 600

    @property
    def backend(self) -> str:
        return "docling" if self.backend_strategy == "auto" else self.backend_strategy

    def with_overrides(self, overrides: dict[str, Any]) -> ConversionOptions:
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def fingerprint(self) -> str:
        """``sha256:`` + SHA-256 of the effective options as compact, sorted JSON."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


OPTION_FIELDS: Final = tuple(f.name for f in fields(ConversionOptions))
