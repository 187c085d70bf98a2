"""The interface every converter implements, and what it hands back."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

from sir_convert_a_lot.backends.document_open import Opened
from sir_convert_a_lot.backends.pdf_open import OpenedPdf
from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.capabilities import Capabilities, Device
from sir_convert_a_lot.options import ConversionOptions

ProgressCallback = Callable[[int, int], None]

Acceleration = Literal["cuda", "cpu", "none"]
"""What ran a job's models: ``"cuda"`` (its layout model ran on the GPU), ``"cpu"``, or ``"none"``
for a format that runs no model at all (office files, markup, e-mail: contract section 4)."""


@dataclass(frozen=True)
class BackendContext:
    """What the worker gives a backend: where to run, the one model thread, its settings."""

    device: Device
    device_index: int
    model_thread: Executor
    models_path: str = ""
    batch_sizes: dict[str, int] = field(default_factory=dict)
    ocr_backend: str = "auto"  # gpu.ocr_backend (backends.models.ocr_engine reads it)
    table_check_every: int = 50  # gpu.table_check_every (backends.table_fast_path)

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.device_index}" if self.device == "cuda" else "cpu"


@dataclass(frozen=True)
class BackendResult:
    """Raw Markdown plus what really ran. ``acceleration_used`` is observed, never configured."""

    markdown: str
    backend_used: str
    acceleration_used: Acceleration
    ocr_enabled: bool
    warnings: tuple[str, ...] = ()
    peak_gpu_memory_bytes: int | None = None
    model_thread_id: int | None = None
    # When the backend knows them: each page's Markdown (joined, they are ``markdown``) and,
    # per page, the lines its layout model labelled page header or footer.
    pages: tuple[str, ...] = ()
    furniture: tuple[tuple[str, ...], ...] = ()
    # Where each model stage of this job really ran ("layout", "table", "ocr" -> "cuda" or
    # "cpu"); a stage that did not run is absent.
    stage_devices: dict[str, Device] = field(default_factory=dict)
    # Per stage, each model call this job's pages were in: (its pages, all pages of the call)
    # (``backends.batching``).
    batches: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # This job's tables: predicted, by the fast path, checked, mismatched (``TableCounts``);
    # all 0 for a backend without TableFormer.
    tables: TableCounts = field(default_factory=TableCounts)
    # ``output.images`` other than placeholder: each picture as (name, PNG bytes), named by us
    # (``picture-0001.png``); the Markdown links them as ``link_prefix + name``, a random
    # prefix that publish replaces (``jobs.artifacts``).
    pictures: tuple[tuple[str, bytes], ...] = ()
    link_prefix: str = ""
    # ``output.formats`` with docling_json: the DoclingDocument as JSON (its picture URIs are
    # ``link_prefix + name`` too).
    docling_json: bytes | None = None
    # The pages the converter counted where opening the file could not (docling's slides of a
    # presentation, sheets of a workbook); None: the opened document's count stands.
    page_count: int | None = None


class Backend(Protocol):
    """A converter the worker runs: its models loaded and warmed once, then one document at a
    time (already opened and checked by ``document_open``) to Markdown. Implemented by
    ``docling``, ``pymupdf`` (PDFs only) and ``model_free`` (the formats that run no model);
    ``capabilities`` says what it can do without importing it."""

    name: str
    capabilities: ClassVar[Capabilities]

    def load(self, option_sets: tuple[ConversionOptions, ...]) -> None:
        """Load models once, on the model thread, for these option sets. Raises JobFailure
        when a model is missing."""

    def warm(self, sample: OpenedPdf, options: ConversionOptions) -> None:
        """Run a small page through the loaded models so the first real job is not slow."""

    def convert(
        self, document: Opened, options: ConversionOptions, progress: ProgressCallback
    ) -> BackendResult:
        """Convert a preflighted document. Raises JobFailure for known failures."""
