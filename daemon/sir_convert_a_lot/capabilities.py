"""What each backend can do, as one table the daemon reads without importing a converter.

The config's checks, the GPU policy and the model list ask ``capabilities_of(name)`` instead of
comparing backend names. The table sits at the bottom, below ``config``, so that checking a
profile's backend needs no import of ``backends``; each backend class carries its own row as
``capabilities``, so the worker's backend and the daemon's checks read the same declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from sir_convert_a_lot.formats import FORMAT_NAMES, FormatName
from sir_convert_a_lot.options import BackendName

Device = Literal["cuda", "cpu"]
ModelFamily = Literal["layout", "tableformer", "rapidocr"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do: where it runs, whether it reads scans, which models it loads,
    which outputs it writes and which document formats it reads."""

    devices: frozenset[Device]
    ocr: bool
    # The model families it loads; which of them a job needs follows from its options.
    models: frozenset[ModelFamily] = frozenset()
    # The ``output.formats`` it can write (every backend writes Markdown).
    formats: frozenset[str] = frozenset({"markdown"})
    # The ``conversion.formats`` it reads; a file of another fails ``unsupported_media_type``.
    reads: frozenset[FormatName] = frozenset({"pdf"})

    @property
    def gpu(self) -> bool:
        return "cuda" in self.devices


CAPABILITIES: Final[Mapping[BackendName, Capabilities]] = {
    "docling": Capabilities(
        devices=frozenset({"cuda", "cpu"}),
        ocr=True,
        models=frozenset({"layout", "tableformer", "rapidocr"}),
        formats=frozenset({"markdown", "docling_json"}),
        reads=frozenset(FORMAT_NAMES),
    ),
    "pymupdf": Capabilities(devices=frozenset({"cpu"}), ocr=False),
}


def capabilities_of(name: str) -> Capabilities:
    """``name``'s row. Any name but ``pymupdf`` is docling, as ``backends.backend_class`` picks
    the class."""
    return CAPABILITIES["pymupdf" if name == "pymupdf" else "docling"]
