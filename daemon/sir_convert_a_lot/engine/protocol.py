"""Messages between the supervisor and its worker: frozen, picklable dataclasses, whatever the
transport that carries them (a multiprocessing pipe today, ``transports.local``).

The handshake: the worker probes the GPU and sends ``Probed``; the supervisor answers with
``Load`` (which backends, on which device); the worker loads and warms them on its conversion
thread and sends ``Ready`` (or ``StartupFailed``). Then ``ConvertRequest``s, each answered by
``Progress`` messages and one ``Converted`` or ``Failed``. Every one of those carries the job id,
so more than one request may be outstanding and answers may come in any order: the worker
converts them at once. Its first ``Progress`` for a job (page 0) comes as soon as the file opened
and gives its page count. ``Shutdown`` asks the worker to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.options import ConversionOptions


@dataclass(frozen=True)
class WorkerSettings:
    device_index: int
    models_path: str
    max_file_bytes: int
    max_pages: int
    batch_sizes: dict[str, int] = field(default_factory=dict)  # layout / ocr / table
    ocr_backend: str = "auto"
    table_check_every: int = 50
    log_level: str = "info"
    log_format: str = "json"
    # A Ray actor sees its GPU as cuda:0 (device_index 0); this is its index on the host, for
    # NVML and the host's GPU lock (-1: the same as device_index).
    host_gpu: int = -1
    # Set when the worker itself must take the host's GPU lock before loading onto a GPU (a
    # Ray actor, on a host the daemon cannot lock for it): the instance named in the lock.
    lock_instance: str = ""
    lock_folder: str = ""  # where that lock lives ("": the host's /run/sir-convert)


@dataclass(frozen=True)
class Probed:
    pid: int
    probe: dict[str, Any]
    versions: dict[str, str]
    host: str = ""  # the host the worker runs on


@dataclass(frozen=True)
class Load:
    """(backend, device) pairs to load and warm before Ready, and the option sets the config
    uses (so a backend can prepare exactly the pipelines they need)."""

    plan: tuple[tuple[str, str], ...]
    option_sets: tuple[ConversionOptions, ...] = ()


@dataclass(frozen=True)
class Ready:
    pid: int
    thread_id: int
    loaded: tuple[tuple[str, str], ...]
    load_seconds: float
    warm_seconds: float


@dataclass(frozen=True)
class StartupFailed:
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConvertRequest:
    job_id: str
    source_path: str
    source_name: str  # the inbox-relative name, for messages only: never opened
    options: ConversionOptions
    device: str


@dataclass(frozen=True)
class Progress:
    job_id: str
    page: int
    pages: int


@dataclass(frozen=True)
class Converted:
    job_id: str
    markdown: str
    pages: int
    backend_used: str
    acceleration_used: str
    ocr_enabled: bool
    warnings: tuple[str, ...]
    timings_ms: dict[str, float]
    thread_id: int
    peak_gpu_memory_bytes: int | None = None
    stage_devices: dict[str, str] = field(default_factory=dict)  # where each model stage ran
    # per stage, each model call its pages were in: (its pages, all pages of the call)
    batches: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    tables: TableCounts = field(default_factory=TableCounts)  # the sidecar's execution.tables
    host: str = ""  # the host that converted it
    device: dict[str, Any] | None = None  # the GPU the worker probed (GpuDevice.to_dict())
    # ``output.images``: (name, PNG bytes) per picture, linked in ``markdown`` (and in
    # ``docling_json``) as ``link_prefix + name``; publish resolves the links (jobs.artifacts).
    pictures: tuple[tuple[str, bytes], ...] = ()
    link_prefix: str = ""
    docling_json: bytes | None = None  # output.formats with "docling_json"
    # torch.cuda's (allocated, reserved) bytes right after the job, where the worker uses CUDA
    gpu_memory: tuple[int, int] | None = None


@dataclass(frozen=True)
class Failed:
    job_id: str
    code: str
    message: str
    details: dict[str, Any]
    pages: int | None
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Shutdown:
    pass
