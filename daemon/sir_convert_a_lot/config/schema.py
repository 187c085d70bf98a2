"""The schema, read off the section dataclasses: which TOML tables exist and what each key takes.

Nothing here names a key. A field's type says what TOML may hold (a ``Path`` is written as a
string, a ``float`` accepts an integer, a ``tuple`` is a list) and a ``Literal`` type is its own
check; the rest comes from the ``Setting`` in its ``Annotated`` type.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

from sir_convert_a_lot.config.sections import TOML_SECTION, Config
from sir_convert_a_lot.options import FROM_OUTPUT, ConversionOptions
from sir_convert_a_lot.setting import Check, declaration, one_of

Shape = Literal["folder", "number", "list", "as_is"]


@dataclass(frozen=True)
class Key:
    """One config key as TOML sees it: its type(s), its default as written, its check."""

    types: tuple[type, ...]
    default: Any
    check: Check | None = None
    doc: str = ""
    live: bool = False
    # How the checked TOML value becomes the field's: decided once, from the field's type.
    shape: Shape = "as_is"
    attribute: str = ""  # the field that holds it (its TOML name may differ: ``Setting.key``)


@dataclass(frozen=True)
class Part:
    """A Config attribute that holds a section (``defaults`` and ``conversion`` share one)."""

    attribute: str
    section: str
    cls: type[Any]


_TOML_TYPES: Final[dict[Any, tuple[type, ...]]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    Path: (str,),
}


def to_document(value: Any) -> Any:
    """A value as TOML writes it: folders as strings, tuples as lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _key(hint: Any, field: Field[Any]) -> tuple[str, Key]:
    """The field's TOML key and its declaration."""
    value_type, declared = declaration(hint)
    default = to_document(field.default if field.default is not MISSING else None)
    types: tuple[type, ...] = (list,)
    shape: Shape = "list"
    check = declared.check
    if get_origin(value_type) is Literal:
        types, check, shape = (str,), one_of(*get_args(value_type)), "as_is"
    elif get_origin(value_type) is not tuple:
        types = _TOML_TYPES[value_type]
        shape = "folder" if value_type is Path else "number" if value_type is float else "as_is"
    key = Key(types, default, check, declared.doc, declared.live, shape, field.name)
    return declared.key or field.name, key


_KEYS: dict[type[Any], dict[str, Key]] = {}


def keys_of(cls: type[Any]) -> dict[str, Key]:
    """The keys a section dataclass declares, in field order (read once, at import). An option
    that ``[output]`` sets (``FROM_OUTPUT``) is no key of ``[conversion]`` or a profile."""
    if cls not in _KEYS:
        hints = get_type_hints(cls, include_extras=True)
        _KEYS[cls] = dict(
            _key(hints[field.name], field)
            for field in fields(cls)
            if not field.metadata.get(FROM_OUTPUT)
        )
    return _KEYS[cls]


def _parts() -> tuple[Part, ...]:
    hints = get_type_hints(Config)
    return tuple(
        Part(field.name, field.metadata.get(TOML_SECTION, field.name), hints[field.name])
        for field in fields(Config)
        if is_dataclass(hints[field.name])
    )


PARTS: Final = _parts()


def _schema() -> dict[str, dict[str, Key]]:
    schema: dict[str, dict[str, Key]] = {}
    for part in PARTS:
        schema.setdefault(part.section, {}).update(keys_of(part.cls))
    return schema


SCHEMA: Final = _schema()
"""``section`` -> ``key`` -> Key, in the order init-config writes them."""
PROFILE_KEYS: Final = keys_of(ConversionOptions)
"""The keys a ``[profiles.NAME]`` table may override."""
