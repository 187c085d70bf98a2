"""One config setting, declared once on the dataclass field that holds it.

A section of the TOML file is a frozen dataclass; each of its fields says, in one place, its
default (the field's own), the check its value must pass, what it is for, and whether a running
daemon may take a new value on reload (a ``Setting`` in its ``Annotated`` type). The loader,
init-config and reload read these declarations generically, so adding a key is one line, not four.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

Check = Callable[[Any], "str | None"]
"""Says what is wrong with a value as written in TOML, or None when it is fine."""


@dataclass(frozen=True)
class Setting:
    """A key's declaration, carried in its field's type: ``Annotated[float, Setting(...)]``.
    ``live``: a reload (SIGHUP) may change it. ``key``: its TOML key, where that differs from
    the field's name (``conversion.formats`` is ``ConversionOptions.accepted_formats``, since
    ``formats`` there means the outputs)."""

    check: Check | None = None
    doc: str = ""
    live: bool = False
    key: str = ""


def declaration(hint: Any) -> tuple[Any, Setting]:
    """A field's resolved type hint split into the value type and its declaration; a field
    without one declares nothing (no check, not live)."""
    if get_origin(hint) is not Annotated:
        return hint, Setting()
    value_type, *extras = get_args(hint)
    found = [extra for extra in extras if isinstance(extra, Setting)]
    return value_type, found[0] if found else Setting()


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be at least {low}"

    return check


def between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def non_empty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"
