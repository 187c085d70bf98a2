"""The TOML configuration: one schema, strict validation, defaults, and the writer for init-config.

Every key is declared once in ``SCHEMA`` with its type, default and check. Loading rejects an
unknown key, a wrong type or a bad value with a ``ConfigError`` that names the key, so a typo in
``/etc/sir-convert/config.toml`` stops the start with one clear line instead of being ignored.
"""

from __future__ import annotations

import copy
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import tomli_w

from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.options import (
    OPTION_CHOICES,
    OPTION_FIELDS,
    TIMEOUT_RANGE,
    ConversionOptions,
)

DEFAULT_CONFIG_PATH: Final = Path("/etc/sir-convert/config.toml")
DEFAULT_ROOT: Final = Path("/srv/sir-convert")
# Where `models download` puts docling's models and the daemon reads them, offline: the unit's
# CacheDirectory, made by tmpfiles.d for the service user.
DEFAULT_MODELS_PATH: Final = Path("/var/cache/sir-convert/models")
PATH_KEYS: Final = ("inbox", "outbox", "state", "failed", "archive")
MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Key:
    """One config key: its Python type(s), default, and an optional value check."""

    types: tuple[type, ...]
    default: Any
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _at_least(low: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be at least {low}"

    return check


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def _non_empty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


# An instance name becomes a file and folder name under paths.state, so it may not climb out.
INSTANCE_NAME_MAX: Final = 100
INSTANCE_NAME_RULE: Final = (
    f"use 1 to {INSTANCE_NAME_MAX} letters, digits, '.', '_' or '-', "
    "starting with a letter, digit or '_'"
)
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def instance_name_problem(name: str, max_length: int = INSTANCE_NAME_MAX) -> str | None:
    """Why ``name`` cannot name an instance (None when it can): it becomes a path part."""
    if len(name) > max_length or not _INSTANCE_NAME.fullmatch(name):
        return f"not a safe instance name; {INSTANCE_NAME_RULE}"
    return None


def _instance_name(value: Any) -> str | None:
    return None if value == "" else instance_name_problem(value)


def _globs(value: Any) -> str | None:
    return None if all(isinstance(v, str) and v for v in value) else "must be non-empty strings"


_NUMBER = (int, float)
_OPTION_DEFAULTS = ConversionOptions()


def _option_keys() -> dict[str, Key]:
    keys = {
        name: Key((str,), getattr(_OPTION_DEFAULTS, name), _one_of(*choices))
        for name, choices in OPTION_CHOICES.items()
    }
    keys["document_timeout_seconds"] = Key(
        (int,), _OPTION_DEFAULTS.document_timeout_seconds, _between(*TIMEOUT_RANGE)
    )
    return keys


SCHEMA: Final[dict[str, dict[str, Key]]] = {
    "paths": {name: Key((str,), str(DEFAULT_ROOT / name), _non_empty) for name in PATH_KEYS},
    "watch": {
        "mode": Key((str,), "inotify", _one_of("inotify", "polling")),
        "poll_interval_seconds": Key(_NUMBER, 2, _at_least(0.05)),
        "stability_seconds": Key(_NUMBER, 5, _at_least(0)),
        # How long a stable PDF whose end has not arrived (no %%EOF yet) waits for the rest
        # before it fails as truncated; counted from its last change.
        "incomplete_wait_seconds": Key(_NUMBER, 600, _at_least(0)),
        "rescan_interval_seconds": Key(_NUMBER, 300, _at_least(1)),
        "ignore": Key((list,), [], _globs),
        # A file that must exist in the inbox (e.g. ".sir-convert-share"): its absence means the
        # share is not mounted and the daemon refuses to watch an empty mount point.
        "sentinel": Key((str,), ""),
    },
    "conversion": {
        **_option_keys(),
        "max_file_bytes": Key((int,), 50 * MIB, _at_least(1)),
        "max_pages": Key((int,), 2000, _at_least(1)),
        # The worker's resident memory during a conversion; over it the worker is stopped and
        # the file fails with worker_crashed (reason memory_limit_exceeded). 0: no limit.
        "max_worker_memory_bytes": Key((int,), 16 * 1024 * MIB, _at_least(0)),
    },
    "output": {
        "on_collision": Key((str,), "suffix", _one_of("suffix", "replace")),
        "source_after_success": Key((str,), "archive", _one_of("archive", "delete")),
    },
    "retry": {"max_attempts": Key((int,), 3, _at_least(1))},
    "instances": {
        "name": Key((str,), "", _instance_name),
        "lease_seconds": Key(_NUMBER, 60, _at_least(2)),
    },
    "gpu": {
        "device_index": Key((int,), 0, _at_least(0)),
        # "" means docling's own Hugging Face cache, which needs the hub at the first start.
        "models_path": Key((str,), str(DEFAULT_MODELS_PATH)),
        # Pages per model call in docling's layout, OCR and table stages. docling's own default
        # is 4; its GPU guide uses 64, which a data-centre GPU holds with room to spare.
        "layout_batch_size": Key((int,), 64, _between(1, 1024)),
        "ocr_batch_size": Key((int,), 64, _between(1, 1024)),
        "table_batch_size": Key((int,), 64, _between(1, 1024)),
        # RapidOCR's engine: "onnxruntime" runs on the CPU with the models `models download`
        # fetches; "torch" runs OCR on the GPU too and needs RapidOCR's torch weights.
        "ocr_backend": Key((str,), "onnxruntime", _one_of("onnxruntime", "torch")),
    },
    "governance": {
        "allow_cpu_only": Key((bool,), False),
        "allow_cpu_fallback": Key((bool,), False),
        "decision_record": Key((str,), ""),
    },
    "service": {"stop_grace_seconds": Key(_NUMBER, 60, _at_least(0))},
    "logging": {
        "level": Key((str,), "info", _one_of("debug", "info", "warning", "error")),
        "format": Key((str,), "auto", _one_of("auto", "console", "json", "journal")),
    },
}

PROFILE_KEYS: Final[dict[str, Key]] = {
    name: key for name, key in SCHEMA["conversion"].items() if name in OPTION_FIELDS
}


@dataclass(frozen=True)
class Paths:
    inbox: Path
    outbox: Path
    state: Path
    failed: Path
    archive: Path

    def named(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in PATH_KEYS}


@dataclass(frozen=True)
class WatchSettings:
    mode: str
    poll_interval_seconds: float
    stability_seconds: float
    incomplete_wait_seconds: float
    rescan_interval_seconds: float
    ignore: tuple[str, ...]
    sentinel: str = ""


@dataclass(frozen=True)
class Governance:
    """The unlock switches. Effective only together with a decision record."""

    allow_cpu_only: bool = False
    allow_cpu_fallback: bool = False
    decision_record: str = ""

    @property
    def unlocked(self) -> bool:
        has_record = bool(self.decision_record.strip())
        return has_record and (self.allow_cpu_only or self.allow_cpu_fallback)

    @property
    def lock(self) -> str:
        return "unlocked" if self.unlocked else "gpu_first"


@dataclass(frozen=True)
class Config:
    paths: Paths
    watch: WatchSettings
    defaults: ConversionOptions
    profiles: Mapping[str, ConversionOptions]
    max_file_bytes: int
    max_pages: int
    max_worker_memory_bytes: int
    on_collision: str
    source_after_success: str
    max_attempts: int
    instance_name: str
    lease_seconds: float
    device_index: int
    models_path: str
    layout_batch_size: int
    ocr_batch_size: int
    table_batch_size: int
    ocr_backend: str
    governance: Governance
    stop_grace_seconds: float
    log_level: str
    log_format: str
    source: Path | None = field(default=None, compare=False)
    source_has_instance_name: bool = field(default=False, compare=False)

    def options_for(self, profile: str | None) -> ConversionOptions:
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


def default_instance_name(device_index: int) -> str:
    return f"{socket.gethostname()}-gpu{device_index}"


def _check_value(where: str, key: Key, value: Any) -> Any:
    wrong_type = not isinstance(value, key.types) or (
        isinstance(value, bool) and bool not in key.types
    )
    if wrong_type:
        wanted = " or ".join(_TYPE_NAMES[t] for t in key.types)
        raise ConfigError(
            f"{where}: expected {wanted}, got {_TYPE_NAMES.get(type(value), 'another type')}"
        )
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{where}: {problem} (got {value!r})")
    return value


_TYPE_NAMES: Final[dict[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _read_section(name: str, raw: Any, keys: Mapping[str, Key], *, fill: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table")
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}: unknown key; remove it or correct its spelling "
            "(sir-convert init-config --output FILE writes every key)"
        )
    values = {k: _check_value(f"{name}.{k}", keys[k], v) for k, v in raw.items()}
    if fill:
        for k, key in keys.items():
            values.setdefault(k, copy.deepcopy(key.default))
    return values


def _resolve(path_text: str, base: Path) -> Path:
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (base / path)


def parse(data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document and build the Config. Relative paths are taken
    against ``base_dir`` (the config file's folder)."""
    unknown = sorted(set(data) - set(SCHEMA) - {"profiles"})
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown section; remove it or correct its spelling "
            "(sir-convert init-config --output FILE writes every section)"
        )
    sections = {
        name: _read_section(name, data.get(name, {}), keys, fill=True)
        for name, keys in SCHEMA.items()
    }

    conversion = sections["conversion"]
    defaults = ConversionOptions(**{k: conversion[k] for k in OPTION_FIELDS})
    _check_backend_combination("conversion", defaults)

    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise ConfigError("profiles: expected a table of profiles")
    profiles: dict[str, ConversionOptions] = {}
    for profile_name, raw in raw_profiles.items():
        where = f"profiles.{profile_name}"
        if not profile_name or profile_name.startswith(".") or "/" in profile_name:
            raise ConfigError(f"{where}: a profile name must be a plain folder name")
        overrides = _read_section(where, raw, PROFILE_KEYS, fill=False)
        profiles[profile_name] = defaults.with_overrides(overrides)
        _check_backend_combination(where, profiles[profile_name])

    gov_values = sections["governance"]
    governance = Governance(**gov_values)
    if (
        governance.allow_cpu_only or governance.allow_cpu_fallback
    ) and not governance.decision_record.strip():
        switch = "allow_cpu_only" if governance.allow_cpu_only else "allow_cpu_fallback"
        raise ConfigError(
            f"governance.decision_record: required when governance.{switch} is true "
            "(name the decision record that allows it)"
        )

    watch = sections["watch"]
    instances = sections["instances"]
    gpu = sections["gpu"]
    paths = Paths(**{k: _resolve(v, base_dir) for k, v in sections["paths"].items()})
    return Config(
        paths=paths,
        watch=WatchSettings(
            mode=watch["mode"],
            poll_interval_seconds=float(watch["poll_interval_seconds"]),
            stability_seconds=float(watch["stability_seconds"]),
            incomplete_wait_seconds=float(watch["incomplete_wait_seconds"]),
            rescan_interval_seconds=float(watch["rescan_interval_seconds"]),
            ignore=tuple(watch["ignore"]),
            sentinel=watch["sentinel"],
        ),
        defaults=defaults,
        profiles=profiles,
        max_file_bytes=conversion["max_file_bytes"],
        max_pages=conversion["max_pages"],
        max_worker_memory_bytes=conversion["max_worker_memory_bytes"],
        on_collision=sections["output"]["on_collision"],
        source_after_success=sections["output"]["source_after_success"],
        max_attempts=sections["retry"]["max_attempts"],
        instance_name=instances["name"] or default_instance_name(gpu["device_index"]),
        lease_seconds=float(instances["lease_seconds"]),
        device_index=gpu["device_index"],
        models_path=_resolve(gpu["models_path"], base_dir).as_posix() if gpu["models_path"] else "",
        layout_batch_size=gpu["layout_batch_size"],
        ocr_batch_size=gpu["ocr_batch_size"],
        table_batch_size=gpu["table_batch_size"],
        ocr_backend=gpu["ocr_backend"],
        governance=governance,
        stop_grace_seconds=float(sections["service"]["stop_grace_seconds"]),
        log_level=sections["logging"]["level"],
        log_format=sections["logging"]["format"],
        source=source,
        source_has_instance_name=bool(instances["name"]),
    )


def _check_backend_combination(where: str, options: ConversionOptions) -> None:
    """pymupdf is a CPU-only, OCR-free backend: asking it for a GPU or OCR is a contradiction."""
    if options.backend != "pymupdf":
        return
    if options.acceleration_policy != "cpu_only":
        raise ConfigError(
            f"{where}.acceleration_policy: the pymupdf backend runs on the CPU only; "
            f'use acceleration_policy = "cpu_only" with it (got {options.acceleration_policy!r})'
        )
    if options.ocr_mode != "off":
        raise ConfigError(
            f'{where}.ocr_mode: the pymupdf backend does no OCR; use ocr_mode = "off" with it '
            f"(got {options.ocr_mode!r})"
        )


def load(path: Path) -> Config:
    """Read and validate a config file. Every problem is a ConfigError naming the key."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found "
            f"(write one with: sir-convert init-config --output {path})"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a folder, not a config file; name the file with --config "
            f"(e.g. {path / 'config.toml'})"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{path}: this user may not read the config file; run as a user who may (root or "
            "the service user), or make it readable: chmod 644 (keep it owned by root)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read config file ({exc.strerror}); check the path given to --config"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: the config file is not UTF-8 text; save it as UTF-8 (is it the right file?)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc}); fix the syntax there, or start again from "
            "sir-convert init-config"
        ) from None
    return parse(data, base_dir=path.parent.absolute(), source=path)


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
# Governance: allow_cpu_only / allow_cpu_fallback take effect only with a decision_record
# (see docs/decisions/0001-gpu-first-lock.md).

"""


def render_default(root: Path = DEFAULT_ROOT) -> str:
    return _HEADER + tomli_w.dumps(default_document(root))


# Keys a running daemon can take from a reloaded file (SIGHUP). Everything else (folders, the
# instance, the GPU and its models, governance, which models are loaded) needs a restart.
LIVE_KEYS: Final = frozenset(
    {
        "watch.stability_seconds",
        "watch.incomplete_wait_seconds",
        "watch.rescan_interval_seconds",
        "watch.ignore",
        "output.on_collision",
        "output.source_after_success",
        "retry.max_attempts",
        "service.stop_grace_seconds",
        "logging.level",
        "conversion.normalize",
        "conversion.document_timeout_seconds",
    }
)
LIVE_PROFILE_FIELDS: Final = frozenset({"normalize", "document_timeout_seconds"})


def flatten(config: Config) -> dict[str, Any]:
    """Every effective setting as ``section.key`` -> value (profiles as ``profiles.NAME.key``)."""
    flat: dict[str, Any] = {f"paths.{k}": str(v) for k, v in config.paths.named().items()}
    flat.update(
        {
            "watch.mode": config.watch.mode,
            "watch.poll_interval_seconds": config.watch.poll_interval_seconds,
            "watch.stability_seconds": config.watch.stability_seconds,
            "watch.incomplete_wait_seconds": config.watch.incomplete_wait_seconds,
            "watch.rescan_interval_seconds": config.watch.rescan_interval_seconds,
            "watch.ignore": list(config.watch.ignore),
            "watch.sentinel": config.watch.sentinel,
            "conversion.max_file_bytes": config.max_file_bytes,
            "conversion.max_pages": config.max_pages,
            "conversion.max_worker_memory_bytes": config.max_worker_memory_bytes,
            "output.on_collision": config.on_collision,
            "output.source_after_success": config.source_after_success,
            "retry.max_attempts": config.max_attempts,
            "instances.name": config.instance_name,
            "instances.lease_seconds": config.lease_seconds,
            "gpu.device_index": config.device_index,
            "gpu.models_path": config.models_path,
            "gpu.layout_batch_size": config.layout_batch_size,
            "gpu.ocr_batch_size": config.ocr_batch_size,
            "gpu.table_batch_size": config.table_batch_size,
            "gpu.ocr_backend": config.ocr_backend,
            "governance.allow_cpu_only": config.governance.allow_cpu_only,
            "governance.allow_cpu_fallback": config.governance.allow_cpu_fallback,
            "governance.decision_record": config.governance.decision_record,
            "service.stop_grace_seconds": config.stop_grace_seconds,
            "logging.level": config.log_level,
            "logging.format": config.log_format,
        }
    )
    flat.update({f"conversion.{k}": v for k, v in config.defaults.to_dict().items()})
    for name, options in config.profiles.items():
        flat.update({f"profiles.{name}.{k}": v for k, v in options.to_dict().items()})
    return flat


def changed_keys(old: Config, new: Config) -> list[str]:
    before, after = flatten(old), flatten(new)
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def not_live(keys: list[str]) -> list[str]:
    """The changed keys a running daemon cannot apply."""
    refused = []
    for key in keys:
        parts = key.split(".")
        if key in LIVE_KEYS:
            continue
        if parts[0] == "profiles" and len(parts) == 3 and parts[2] in LIVE_PROFILE_FIELDS:
            continue
        refused.append(key)
    return refused
