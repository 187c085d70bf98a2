"""The config's sections: one frozen dataclass per TOML table, each key declared once on its field.

A field's type is the value the daemon uses (a ``Path``, a ``float``, a ``Literal`` of the allowed
choices), annotated with a ``Setting``: its check, its doc and whether a reload may change it. Its
default is the field's default, written to TOML as it stands (a folder as a string).
``[conversion]`` is two values: the job options (``ConversionOptions``, the defaults every profile
starts from) and the limits beside them.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from sir_convert_a_lot.config.hooks import HooksSection
from sir_convert_a_lot.options import OUTPUT_FORMATS, ConversionOptions, ImagesMode, OutputFormat
from sir_convert_a_lot.setting import Setting, at_least, between, non_empty

DEFAULT_CONFIG_PATH: Final = Path("/etc/sir-convert/config.toml")
DEFAULT_ROOT: Final = Path("/srv/sir-convert")
# Where `models download` puts docling's models and the daemon reads them, offline: the unit's
# CacheDirectory, made by tmpfiles.d for the service user.
DEFAULT_MODELS_PATH: Final = Path("/var/cache/sir-convert/models")
PATH_KEYS: Final = ("inbox", "outbox", "state", "failed", "archive")
MIB: Final = 1024 * 1024

# An instance name becomes a file and folder name under paths.state, so it may not climb out.
INSTANCE_NAME_MAX: Final = 100
INSTANCE_NAME_RULE: Final = (
    f"use 1 to {INSTANCE_NAME_MAX} letters, digits, '.', '_' or '-', "
    "starting with a letter, digit or '_'"
)
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

WatchMode = Literal["inotify", "polling"]
OnCollision = Literal["suffix", "replace"]
SourceAfterSuccess = Literal["archive", "delete"]
OcrEngine = Literal["auto", "onnxruntime", "torch"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "console", "json", "journal"]


def instance_name_problem(name: str, max_length: int = INSTANCE_NAME_MAX) -> str | None:
    """Why ``name`` cannot name an instance (None when it can): it becomes a path part."""
    if len(name) > max_length or not _INSTANCE_NAME.fullmatch(name):
        return f"not a safe instance name; {INSTANCE_NAME_RULE}"
    return None


def default_instance_name(device_index: int) -> str:
    return f"{socket.gethostname()}-gpu{device_index}"


def _instance_name(value: Any) -> str | None:
    return None if value == "" else instance_name_problem(value)


MODEL_STAGES = ("layout", "table", "ocr")


def _model_stages(value: Any) -> str | None:
    unknown = [v for v in value if v not in MODEL_STAGES]
    return (
        f"unknown stage(s) {unknown}: each must be one of {', '.join(MODEL_STAGES)}"
        if unknown
        else None
    )


def _globs(value: Any) -> str | None:
    return None if all(isinstance(v, str) and v for v in value) else "must be non-empty strings"


def listen_address(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as a host and port; None when malformed."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isascii() or not port.isdigit():
        return None
    if any(c.isspace() or c in "[]/" for c in host) or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def _listen(value: Any) -> str | None:
    if value == "" or listen_address(value) is not None:
        return None
    return "must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9464 (empty: off)"


def _formats(value: Any) -> str | None:
    if any(not isinstance(member, str) for member in value):
        return "must be a list of names"
    unknown = [member for member in value if member not in OUTPUT_FORMATS]
    if unknown:
        return f"{unknown[0]!r} is not a format; allowed: {', '.join(OUTPUT_FORMATS)}"
    if "markdown" not in value:
        return 'must include "markdown" (the Markdown is always written)'
    if len(set(value)) != len(value):
        return "names a format twice"
    return None


def _textfile(value: Any) -> str | None:
    if value == "" or (value.startswith("/") and value.endswith(".prom")):
        return None
    return "must be an absolute path ending in .prom (node_exporter reads only those; empty: off)"


Folder = Annotated[Path, Setting(non_empty, doc="a folder; relative: to the config's folder")]
Seconds = float  # TOML may write a whole number; the daemon holds a float


@dataclass(frozen=True)
class Paths:
    """The five folders; relative ones are taken against the config file's folder."""

    inbox: Folder = DEFAULT_ROOT / "inbox"
    outbox: Folder = DEFAULT_ROOT / "outbox"
    state: Folder = DEFAULT_ROOT / "state"
    failed: Folder = DEFAULT_ROOT / "failed"
    archive: Folder = DEFAULT_ROOT / "archive"

    def named(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in PATH_KEYS}


@dataclass(frozen=True)
class WatchSection:
    mode: Annotated[WatchMode, Setting(doc="polling for shares that send no events")] = "inotify"
    poll_interval_seconds: Annotated[Seconds, Setting(at_least(0.05), doc="polling's period")] = 2
    stability_seconds: Annotated[
        Seconds, Setting(at_least(0), doc="how long a file must rest before it is taken", live=True)
    ] = 5
    incomplete_wait_seconds: Annotated[
        Seconds,
        Setting(
            at_least(0),
            doc="how long a stable PDF whose end (%%EOF) has not arrived waits for the rest "
            "before it fails as truncated; counted from its last change",
            live=True,
        ),
    ] = 600
    rescan_interval_seconds: Annotated[
        Seconds, Setting(at_least(1), doc="the full scan that catches missed events", live=True)
    ] = 300
    ignore: Annotated[
        tuple[str, ...], Setting(_globs, doc="glob patterns never taken", live=True)
    ] = ()
    sentinel: Annotated[
        str,
        Setting(
            doc="a file that must exist in the inbox (e.g. .sir-convert-share): its absence means "
            "the share is not mounted, and the daemon refuses to watch an empty mount point"
        ),
    ] = ""


@dataclass(frozen=True)
class ConversionSection:
    """The limits of ``[conversion]``; its job options are ``Config.defaults``."""

    max_file_bytes: Annotated[int, Setting(at_least(1), doc="larger files are refused")] = 50 * MIB
    max_pages: Annotated[int, Setting(at_least(1), doc="longer documents are refused")] = 2000
    max_worker_memory_bytes: Annotated[
        int,
        Setting(
            at_least(0),
            doc="the worker's resident memory during a conversion; over it the worker is stopped "
            "and the file fails with worker_crashed (reason memory_limit_exceeded). 0: no limit",
        ),
    ] = 16 * 1024 * MIB


@dataclass(frozen=True)
class OutputSection:
    on_collision: Annotated[OnCollision, Setting(doc="when an output name is taken", live=True)] = (
        "suffix"
    )
    source_after_success: Annotated[
        SourceAfterSuccess, Setting(doc="what becomes of a converted PDF", live=True)
    ] = "archive"
    images: Annotated[
        ImagesMode,
        Setting(doc="pictures: a placeholder, PNG files under <stem>_artifacts/, or data URIs"),
    ] = "placeholder"
    formats: Annotated[
        tuple[OutputFormat, ...],
        Setting(_formats, doc='what is written besides the sidecar; "docling_json": lossless'),
    ] = ("markdown",)


@dataclass(frozen=True)
class RetrySection:
    max_attempts: Annotated[
        int, Setting(at_least(1), doc="tries before a file fails", live=True)
    ] = 3


@dataclass(frozen=True)
class InstancesSection:
    name: Annotated[
        str, Setting(_instance_name, doc="this daemon's name; empty: <host>-gpu<device_index>")
    ] = ""
    lease_seconds: Annotated[
        Seconds, Setting(at_least(2), doc="how long a claim holds unrenewed")
    ] = 60


BatchSize = Annotated[int, Setting(between(1, 1024), doc="pages per model call in that stage")]


@dataclass(frozen=True)
class GpuSection:
    """Which GPU, docling's models, and its batch sizes. docling's own batch default is 4; its GPU
    guide uses 64, which a data-centre GPU holds with room to spare."""

    device_index: Annotated[int, Setting(at_least(0), doc="the CUDA device")] = 0
    models_path: Annotated[
        str,
        Setting(
            doc="docling's models; empty means docling's own Hugging Face cache, which needs the "
            "hub at the first start"
        ),
    ] = str(DEFAULT_MODELS_PATH)
    layout_batch_size: BatchSize = 64
    ocr_batch_size: BatchSize = 64
    table_batch_size: BatchSize = 64
    table_check_every: Annotated[
        int,
        Setting(
            at_least(0),
            doc="after the first 8 tables of each worker start, every Nth table is also predicted "
            "by docling-ibm-models' own code and compared with the fast prediction; 0: never",
        ),
    ] = 50
    ocr_backend: Annotated[
        OcrEngine,
        Setting(
            doc="RapidOCR's engine: auto is torch on a GPU (OCR on the same GPU as the other "
            "models) and onnxruntime on the CPU; torch runs on whichever device the worker "
            "uses; onnxruntime runs on the CPU (on the GPU only where onnxruntime-gpu is "
            "installed). `models download` fetches both engines' models"
        ),
    ] = "auto"
    max_pages_in_flight: Annotated[
        int,
        Setting(
            at_least(0),
            doc="pages the claimed, unfinished jobs may hold at once (at least one job is "
            "claimed); 0 means twice layout_batch_size",
            live=True,
        ),
    ] = 0

    @property
    def max_pages_in_flight_in_effect(self) -> int:
        """``max_pages_in_flight`` in effect: its default is two full layout batches."""
        return self.max_pages_in_flight or 2 * self.layout_batch_size

    @property
    def batch_sizes(self) -> dict[str, int]:
        """Each model stage's batch size, by the stage's name in docling."""
        return {
            "layout": self.layout_batch_size,
            "ocr": self.ocr_batch_size,
            "table": self.table_batch_size,
        }


@dataclass(frozen=True)
class Governance:
    """The unlock switches. Effective only together with a decision record."""

    allow_cpu_only: Annotated[bool, Setting(doc="lets cpu_only jobs run")] = False
    allow_cpu_fallback: Annotated[bool, Setting(doc="lets gpu_prefer fall back to the CPU")] = False
    decision_record: Annotated[str, Setting(doc="the decision that allows a switch on")] = ""
    cpu_stages: Annotated[
        tuple[str, ...],
        Setting(_model_stages, doc="model stages the decision lets run on the CPU (e.g. ocr)"),
    ] = ()

    @property
    def unlocked(self) -> bool:
        has_record = bool(self.decision_record.strip())
        return has_record and (self.allow_cpu_only or self.allow_cpu_fallback)

    @property
    def lock(self) -> str:
        return "unlocked" if self.unlocked else "gpu_first"


@dataclass(frozen=True)
class ServiceSection:
    stop_grace_seconds: Annotated[
        Seconds, Setting(at_least(0), doc="how long a stop waits for the jobs in hand", live=True)
    ] = 60


@dataclass(frozen=True)
class LoggingSection:
    level: Annotated[LogLevel, Setting(doc="the least severe event logged", live=True)] = "info"
    format: Annotated[LogFormat, Setting(doc="auto: journal under systemd, else console")] = "auto"


@dataclass(frozen=True)
class MetricsSection:
    """Metrics for Prometheus, both off by default (``service.metrics``)."""

    listen: Annotated[
        str,
        Setting(
            _listen,
            doc="serve /metrics over HTTP at HOST:PORT, e.g. 127.0.0.1:9464 (only there); "
            "empty: no server",
        ),
    ] = ""
    textfile: Annotated[
        str,
        Setting(
            _textfile,
            doc="write the same metrics to this .prom file for node_exporter's textfile "
            "collector, atomically every few seconds and at stop; empty: no file",
        ),
    ] = ""


EngineKind = Literal["local", "ray"]


def _ray_address(value: Any) -> str | None:
    if value in ("auto", "local") or (
        listen_address(value.removeprefix("ray://")) is not None and " " not in value
    ):
        return None
    return 'must be "auto" (the cluster of this host), "local" (a private Ray) or HOST:PORT'


@dataclass(frozen=True)
class EngineSection:
    """Where the workers run (``engine.ray``): child processes of the daemon, or Ray actors."""

    kind: Annotated[
        EngineKind,
        Setting(
            doc='"local": one worker process per instance; "ray": workers as actors of a Ray '
            "cluster (pip install '.[ray]')"
        ),
    ] = "local"
    ray_address: Annotated[
        str,
        Setting(
            _ray_address,
            doc='"auto": join the Ray cluster of this host (ray start); "local": start a '
            "private one-machine Ray that ends with the daemon; or the head's HOST:PORT",
        ),
    ] = "auto"
    workers: Annotated[
        int,
        Setting(at_least(0), doc="actors to run; 0: one per gpus_per_worker GPUs the cluster has"),
    ] = 0
    gpus_per_worker: Annotated[
        float, Setting(at_least(0), doc="GPUs each actor reserves (0: a CPU actor)")
    ] = 1
    cpus_per_worker: Annotated[float, Setting(at_least(0), doc="CPUs each actor reserves")] = 2
    recycle_after_jobs: Annotated[
        int,
        Setting(
            at_least(0),
            doc="documents a worker converts before it is replaced by a fresh one, between jobs "
            "(bounds the slow growth of a long-lived worker's memory). 0: never",
        ),
    ] = 500
    recycle_above_bytes: Annotated[
        int,
        Setting(
            at_least(0),
            doc="a worker whose resident memory is above this after a job is replaced by a fresh "
            "one, between jobs; set it below conversion.max_worker_memory_bytes. 0: never",
        ),
    ] = 0
    recycle_overlap: Annotated[
        bool,
        Setting(
            doc="true: the replacement loads beside the due worker (no wait, one more worker's "
            "memory for the load); false: the due worker drains, then the fresh one loads",
        ),
    ] = False


# Names the TOML table of a Config attribute that does not share its name: [conversion] feeds
# both the job options (``defaults``) and the limits (``conversion``).
TOML_SECTION: Final = "toml_section"


@dataclass(frozen=True)
class Config:
    """The whole configuration, one attribute per section (``config.retry.max_attempts``)."""

    paths: Paths
    watch: WatchSection
    defaults: ConversionOptions = field(metadata={TOML_SECTION: "conversion"})
    conversion: ConversionSection = field(metadata={TOML_SECTION: "conversion"})
    output: OutputSection
    retry: RetrySection
    instances: InstancesSection
    gpu: GpuSection
    governance: Governance
    service: ServiceSection
    logging: LoggingSection
    profiles: Mapping[str, ConversionOptions]
    metrics: MetricsSection = field(default_factory=MetricsSection)
    engine: EngineSection = field(default_factory=EngineSection)
    hooks: HooksSection = field(default_factory=HooksSection)
    source: Path | None = field(default=None, compare=False)
    source_has_instance_name: bool = field(default=False, compare=False)

    def options_for(self, profile: str | None) -> ConversionOptions:
        """A job's effective options (its profile's, or the defaults; ``images`` and
        ``formats`` from ``[output]`` in both)."""
        if profile is None:
            return self.defaults
        return self.profiles[profile]

    def profile_of(self, relative_parts: tuple[str, ...]) -> str | None:
        """The profile a file belongs to: its first folder level, when that names a profile."""
        if len(relative_parts) > 1 and relative_parts[0] in self.profiles:
            return relative_parts[0]
        return None

    def backends_in_use(self) -> frozenset[str]:
        return frozenset({self.defaults.backend} | {p.backend for p in self.profiles.values()})

    def with_instance_name(self, name: str) -> Config:
        """This config under another instance name (``--instance`` wins over the file)."""
        return dataclasses.replace(self, instances=dataclasses.replace(self.instances, name=name))

    def with_device_index(self, index: int) -> Config:
        """This config on another GPU (``--gpu`` wins over the file)."""
        return dataclasses.replace(self, gpu=dataclasses.replace(self.gpu, device_index=index))
