"""File names from untrusted writers: which to ignore, how to show them, how to keep them exactly.

Names on disk are bytes. Python hands them to us as ``str`` with undecodable bytes smuggled in as
lone surrogates (``surrogateescape``), which round-trips exactly. We keep that form for every file
operation, so a name that is not valid UTF-8 is never altered on disk; for JSON and logs we give a
readable escaped form plus, when the name is not valid UTF-8, its exact bytes in base64.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import unicodedata
from collections.abc import Iterable
from typing import Any, Final

# Names that office suites, browsers, file managers and NAS boxes leave around while writing.
_IGNORED_SUFFIXES: Final = (".part", ".tmp", ".crdownload")
_IGNORED_EXACT: Final = frozenset({"thumbs.db", "desktop.ini"})
_IGNORED_PREFIXES: Final = (".", "~$", "._")
_IGNORED_FOLDERS: Final = frozenset({"@eadir"})


def is_ignored_name(name: str, extra_globs: Iterable[str] = ()) -> bool:
    """True for names the daemon must never touch: partial downloads, lock and metadata files."""
    lowered = name.lower()
    if name.startswith(_IGNORED_PREFIXES) or lowered in _IGNORED_EXACT:
        return True
    if lowered.endswith(_IGNORED_SUFFIXES) or lowered in _IGNORED_FOLDERS:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in extra_globs)


def is_ignored_path(parts: tuple[str, ...], extra_globs: Iterable[str] = ()) -> bool:
    """A path is ignored when any of its components is, or the whole relative path matches."""
    globs = tuple(extra_globs)
    if any(is_ignored_name(part, globs) for part in parts):
        return True
    joined = "/".join(parts)
    return any(fnmatch.fnmatchcase(joined, pattern) for pattern in globs)


def is_valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(name: str) -> str:
    """A one-line, printable form: control characters and undecodable bytes become escapes."""
    out: list[str] = []
    for char in name:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or char in "\u2028\u2029":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\u{code:04x}"))
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def raw_bytes(name: str) -> bytes:
    return os.fsencode(name)


def json_name(name: str, key: str) -> dict[str, Any]:
    """``{key: readable}`` and, only for names that are not UTF-8, ``{key_b64: exact bytes}``."""
    fields: dict[str, Any] = {key: display(name) if not is_valid_utf8(name) else name}
    if not is_valid_utf8(name):
        fields[f"{key}_b64"] = base64.b64encode(raw_bytes(name)).decode("ascii")
    return fields


def encode_for_record(name: str) -> str:
    """Exact, JSON-safe form of a name for our own records (base64 of the bytes)."""
    return base64.b64encode(raw_bytes(name)).decode("ascii")


def decode_from_record(text: str) -> str:
    return os.fsdecode(base64.b64decode(text.encode("ascii")))


def collision_key(name: str) -> str:
    """Two names collide when they are equal case-insensitively after Unicode NFC."""
    if not is_valid_utf8(name):
        return name.lower()
    return unicodedata.normalize("NFC", name).casefold()


def split_suffix(name: str) -> tuple[str, str]:
    """``report.PDF`` -> (``report``, ``.PDF``); a name without a dot keeps it all as stem."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + suffix


NAME_MAX: Final = 255  # bytes in one path component on Linux filesystems


def shorten(name: str, max_bytes: int) -> str:
    """Cut ``name`` to at most ``max_bytes`` bytes on disk, never inside a UTF-8 character."""
    raw = raw_bytes(name)
    if len(raw) <= max_bytes:
        return name
    cut = raw[:max_bytes]
    if is_valid_utf8(name):
        return cut.decode("utf-8", errors="ignore")
    return os.fsdecode(cut)
