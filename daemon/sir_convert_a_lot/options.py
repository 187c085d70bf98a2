"""Job options: the v1 JobSpec fields as one immutable value, and their fingerprint.

``[conversion]`` in the config gives the defaults, ``[profiles.NAME]`` overrides them for files
dropped under ``inbox/NAME/``. The fingerprint lets a user tell at a glance whether two sidecars
were produced with the same effective options. Each choice is a ``Literal`` type: its values are
the allowed ones, so the config check and mypy read the same list, and a value stays a plain
string in TOML, sidecars and logs.

``accepted_formats`` (the TOML key ``formats`` of ``[conversion]`` and ``[profiles.NAME]``) says
which documents a job may be made of at all. It changes no output, so it is kept out of the
fingerprint and of the sidecar's options (``effective``): a config that only accepts one more
format converts every other file exactly as before, under the same fingerprint. It still rides
in the job's record (``to_dict``), so a job claimed under a reloaded config keeps its own list.

Two options come from ``[output]``, not ``[conversion]``: ``images`` and ``formats`` change what a
job writes, so they belong to its effective options (and its fingerprint), but they are set once
for the whole config, never per profile. Their fields carry ``FROM_OUTPUT`` in their metadata,
which keeps them out of the ``[conversion]`` and ``[profiles.NAME]`` keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Annotated, Any, Final, Literal

from sir_convert_a_lot.formats import FORMAT_NAMES, FormatName
from sir_convert_a_lot.setting import Setting, between

BackendStrategy = Literal["auto", "docling", "pymupdf"]
BackendName = Literal["docling", "pymupdf"]
OcrMode = Literal["auto", "off", "force"]
TableMode = Literal["fast", "accurate"]
NormalizeLevel = Literal["none", "standard", "strict"]
AccelerationPolicy = Literal["gpu_required", "gpu_prefer", "cpu_only"]
ImagesMode = Literal["placeholder", "referenced", "embedded"]
OutputFormat = Literal["markdown", "docling_json"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("markdown", "docling_json")

# Field metadata: the option is set by ``[output]`` (``output.<name>``), not ``[conversion]``.
FROM_OUTPUT: Final = "from_output"
# Field metadata: the option changes no output, so it is no part of the effective options.
NOT_EFFECTIVE: Final = "not_effective"

TIMEOUT_RANGE: Final = (30, 7200)


def _format_names(value: Any) -> str | None:
    if any(not isinstance(member, str) for member in value):
        return "must be a list of format names"
    unknown = [member for member in value if member not in FORMAT_NAMES]
    if unknown:
        return f'unknown format "{unknown[0]}"; known: {", ".join(FORMAT_NAMES)}'
    if not value:
        return "must name at least one format"
    if len(set(value)) != len(value):
        return "names a format twice"
    return None


@dataclass(frozen=True, slots=True)
class ConversionOptions:
    """What a job asks for. ``backend`` resolves ``auto``: the GPU engine, docling."""

    backend_strategy: Annotated[BackendStrategy, Setting(doc="the converter")] = "auto"
    ocr_mode: Annotated[OcrMode, Setting(doc="OCR pages without text, never or always")] = "auto"
    table_mode: Annotated[TableMode, Setting(doc="TableFormer's model")] = "accurate"
    normalize: Annotated[
        NormalizeLevel, Setting(doc="how much the Markdown is tidied after conversion", live=True)
    ] = "standard"
    acceleration_policy: Annotated[
        AccelerationPolicy, Setting(doc="where the job may run, under the GPU-first lock")
    ] = "gpu_required"
    document_timeout_seconds: Annotated[
        int, Setting(between(*TIMEOUT_RANGE), doc="one document's time limit", live=True)
    ] = 600
    accepted_formats: Annotated[
        tuple[FormatName, ...],
        Setting(
            _format_names,
            doc="the document formats converted; any other file fails unsupported_media_type",
            live=True,
            key="formats",
        ),
    ] = field(default=FORMAT_NAMES, metadata={NOT_EFFECTIVE: True})
    images: ImagesMode = field(default="placeholder", metadata={FROM_OUTPUT: True})
    formats: tuple[OutputFormat, ...] = field(default=("markdown",), metadata={FROM_OUTPUT: True})

    @property
    def backend(self) -> BackendName:
        return "docling" if self.backend_strategy == "auto" else self.backend_strategy

    def with_overrides(self, overrides: dict[str, Any]) -> ConversionOptions:
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Every option, for the job's record (``from_dict`` reads it back)."""
        return asdict(self)

    def effective(self) -> dict[str, Any]:
        """The options that shape the output: the sidecar's ``options``, and the fingerprint's."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get(NOT_EFFECTIVE)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionOptions:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for listed in ("formats", "accepted_formats"):  # lists in JSON records
            if listed in values:
                values[listed] = tuple(values[listed])
        return cls(**values)

    def fingerprint(self) -> str:
        """``sha256:`` + SHA-256 of the effective options as compact, sorted JSON. The accepted
        formats are left out: they change no output, and a fingerprint must stay the same for
        the same output (and the same as before the list existed)."""
        canonical = json.dumps(self.effective(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


OPTION_FIELDS: Final = tuple(f.name for f in fields(ConversionOptions))
"""Every option, the two from ``[output]`` included."""
CONVERSION_FIELDS: Final = tuple(
    f.name for f in fields(ConversionOptions) if not f.metadata.get(FROM_OUTPUT)
)
"""The options ``[conversion]`` and ``[profiles.NAME]`` set."""
