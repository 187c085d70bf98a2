"""The interface every converter implements, and what it hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.preflight import OpenedPdf

ProgressCallback = Callable[[int, int], None]
Device = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class BackendResult:
    """Raw Markdown plus what really ran. ``acceleration_used`` is observed, never configured."""

    markdown: str
    backend_used: str
    acceleration_used: Device
    ocr_enabled: bool
    warnings: tuple[str, ...] = ()
    peak_gpu_memory_bytes: int | None = None


class Backend(Protocol):
    name: str

    def load(self, device: Device) -> None:
        """Load models once, on the conversion thread. Raises on missing models."""

    def warm(self, sample: OpenedPdf, options: ConversionOptions) -> None:
        """Run a small page through the loaded models so the first real job is not slow."""

    def convert(
        self, pdf: OpenedPdf, options: ConversionOptions, progress: ProgressCallback
    ) -> BackendResult:
        """Convert a preflighted PDF. Raises JobFailure for known failures."""
