"""Reading a config file: strict validation against the schema, then the derived values.

Loading rejects an unknown key, a wrong type or a bad value with a ``ConfigError`` that names the
key, so a typo in ``/etc/sir-convert/config.toml`` stops the start with one clear line instead of
being ignored. Reading is generic over the section dataclasses; only the checks that span keys
(governance's record, a backend's capabilities) and the derived values are written out here.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sir_convert_a_lot.capabilities import capabilities_of
from sir_convert_a_lot.config.schema import PARTS, PROFILE_KEYS, SCHEMA, Key, keys_of
from sir_convert_a_lot.config.sections import Config, Governance, default_instance_name
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.options import ConversionOptions

_TYPE_NAMES: Final[dict[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


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


def _value(key: Key, value: Any, base_dir: Path) -> Any:
    """A checked TOML value as its field holds it: a folder resolved, a number as a float."""
    if key.shape == "folder":
        return _resolve(value, base_dir)
    if key.shape == "number":
        return float(value)
    if key.shape == "list":
        return tuple(value)
    return value


def _build(cls: type[Any], table: Mapping[str, Any], base_dir: Path) -> Any:
    """One section's dataclass from its checked table (``[conversion]`` feeds two)."""
    keys = keys_of(cls)
    return cls(**{key.attribute: _value(key, table[name], base_dir) for name, key in keys.items()})


def parse(data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document and build the Config. Relative paths are taken
    against ``base_dir`` (the config file's folder)."""
    unknown = sorted(set(data) - set(SCHEMA) - {"profiles"})
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown section; remove it or correct its spelling "
            "(sir-convert init-config --output FILE writes every section)"
        )
    tables = {
        name: _read_section(name, data.get(name, {}), keys, fill=True)
        for name, keys in SCHEMA.items()
    }
    built = {part.attribute: _build(part.cls, tables[part.section], base_dir) for part in PARTS}
    output = built["output"]
    built["defaults"] = built["defaults"].with_overrides(
        {"images": output.images, "formats": output.formats}
    )
    _check_backend_combination("conversion", built["defaults"])
    profiles = _read_profiles(data.get("profiles", {}), built["defaults"])
    _check_governance(built["governance"])

    gpu, instances = built["gpu"], built["instances"]
    models_path = _resolve(gpu.models_path, base_dir).as_posix() if gpu.models_path else ""
    built["gpu"] = dataclasses.replace(gpu, models_path=models_path)
    instance_name = instances.name or default_instance_name(gpu.device_index)
    built["instances"] = dataclasses.replace(instances, name=instance_name)
    return Config(
        **built, profiles=profiles, source=source, source_has_instance_name=bool(instances.name)
    )


def _read_profiles(raw_profiles: Any, defaults: ConversionOptions) -> dict[str, ConversionOptions]:
    if not isinstance(raw_profiles, dict):
        raise ConfigError("profiles: expected a table of profiles")
    profiles: dict[str, ConversionOptions] = {}
    for profile_name, raw in raw_profiles.items():
        where = f"profiles.{profile_name}"
        if not profile_name or profile_name.startswith(".") or "/" in profile_name:
            raise ConfigError(f"{where}: a profile name must be a plain folder name")
        overrides = _read_section(where, raw, PROFILE_KEYS, fill=False)
        profiles[profile_name] = defaults.with_overrides(
            {
                PROFILE_KEYS[k].attribute: _value(PROFILE_KEYS[k], v, Path())
                for k, v in overrides.items()
            }
        )
        _check_backend_combination(where, profiles[profile_name])
    return profiles


def _check_governance(governance: Governance) -> None:
    """A CPU switch without a decision record is refused: the record is what lifts the lock."""
    if (
        governance.allow_cpu_only or governance.allow_cpu_fallback or governance.cpu_stages
    ) and not governance.decision_record.strip():
        switch = (
            "allow_cpu_only"
            if governance.allow_cpu_only
            else "allow_cpu_fallback"
            if governance.allow_cpu_fallback
            else "cpu_stages"
        )
        raise ConfigError(
            f"governance.decision_record: required when governance.{switch} is set "
            "(name the decision record that allows it)"
        )


def _check_backend_combination(where: str, options: ConversionOptions) -> None:
    """Asking a CPU-only backend for a GPU, or an OCR-free one for OCR, is a contradiction."""
    able = capabilities_of(options.backend)
    if not able.gpu and options.acceleration_policy != "cpu_only":
        raise ConfigError(
            f"{where}.acceleration_policy: the {options.backend} backend runs on the CPU only; "
            f'use acceleration_policy = "cpu_only" with it (got {options.acceleration_policy!r})'
        )
    if not able.ocr and options.ocr_mode != "off":
        raise ConfigError(
            f"{where}.ocr_mode: the {options.backend} backend does no OCR; use "
            f'ocr_mode = "off" with it (got {options.ocr_mode!r})'
        )
    unable = [name for name in options.formats if name not in able.formats]
    if unable:
        raise ConfigError(
            f"output.formats: {unable[0]!r} needs the docling backend, but {where} uses the "
            f'{options.backend} backend; remove {unable[0]!r} or use backend_strategy = "docling"'
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
    return parse(_decode(path, raw), base_dir=path.parent.absolute(), source=path)


def _decode(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: the config file is not UTF-8 text; save it as UTF-8 (is it the right file?)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc}); fix the syntax there, or start again from "
            "sir-convert init-config"
        ) from None
