"""What a reload (SIGHUP) may change: the keys declared ``live``, compared as ``section.key``,
and how a running component takes the new config (``Reconfigurable``).

Everything else (folders, the instance, the GPU and its models, governance, which models are
loaded) needs a restart, so a reload that changes one of them is refused as a whole.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from sir_convert_a_lot.config.schema import PARTS, PROFILE_KEYS, SCHEMA, keys_of, to_document
from sir_convert_a_lot.config.sections import Config

LIVE_KEYS: Final = frozenset(
    f"{section}.{name}"
    for section, keys in SCHEMA.items()
    for name, key in keys.items()
    if key.live
)
LIVE_PROFILE_FIELDS: Final = frozenset(name for name, key in PROFILE_KEYS.items() if key.live)


class Reconfigurable(Protocol):
    """A running component that reads the config. A reload hands the new config to every one of
    them through this one method, in one list (``service.daemon``), so that no component's
    settings are set from outside and none is forgotten; only live keys differ from the old."""

    def reconfigure(self, config: Config) -> None:
        """Take ``config`` for whatever the component does next."""


def flatten(config: Config) -> dict[str, Any]:
    """Every effective setting as ``section.key`` -> value (profiles as ``profiles.NAME.key``)."""
    flat: dict[str, Any] = {}
    for part in PARTS:
        section = getattr(config, part.attribute)
        for name, key in keys_of(part.cls).items():
            flat[f"{part.section}.{name}"] = to_document(getattr(section, key.attribute))
    for profile, options in config.profiles.items():
        flat.update(
            {
                f"profiles.{profile}.{name}": to_document(getattr(options, key.attribute))
                for name, key in PROFILE_KEYS.items()
            }
        )
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
