"""One Markdown post-processing stage after every backend, driven by ``normalize``.

- ``none``: the backend's Markdown exactly as it came.
- ``standard``: Unicode NFC, typographic ligatures spelled out (``ﬁ`` -> ``fi``), trailing
  spaces trimmed, runs of blank lines collapsed to one. Fenced code blocks are left untouched.
- ``strict``: ``standard`` plus every heading and list marker written the same way.

What a level changed is counted in the returned warnings, so nothing changes silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

_LIGATURES = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
}
_LIGATURE_RE = re.compile("[" + "".join(_LIGATURES) + "]")
_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_THEMATIC_BREAK_RE = re.compile(r"^\s{0,3}([*_-])(\s*\1){2,}\s*$")
_HEADING_RE = re.compile(r"^(#{1,6})[ \t]*(.*?)[ \t]*#*[ \t]*$")
_BULLET_RE = re.compile(r"^(\s*)[*+][ \t]+")


@dataclass(frozen=True)
class Normalized:
    markdown: str
    warnings: tuple[str, ...]


def normalize(markdown: str, level: str) -> Normalized:
    if level == "none":
        return Normalized(markdown, ())
    counts: dict[str, int] = {}
    lines = list(_normalize_lines(markdown.splitlines(), level, counts))
    text = "\n".join(lines).strip("\n")
    text = text + "\n" if text else ""
    warnings = tuple(f"normalize_{name}:{count}" for name, count in sorted(counts.items()) if count)
    return Normalized(text, warnings)


def _count(counts: dict[str, int], name: str, amount: int = 1) -> None:
    counts[name] = counts.get(name, 0) + amount


def _normalize_lines(lines: list[str], level: str, counts: dict[str, int]) -> Iterator[str]:
    fence: str | None = None  # the opening fence while inside a code block
    blank_run = 0
    for raw in lines:
        opener = _FENCE_RE.match(raw)
        if fence is None and opener:
            fence = opener.group(1)
            blank_run = 0
            yield raw
            continue
        if fence is not None:
            # Only a fence of the same character, at least as long, with nothing after it closes.
            closing = raw.strip()
            if closing and set(closing) == {fence[0]} and len(closing) >= len(fence):
                fence = None
            yield raw
            continue
        line = _normalize_text(raw.rstrip(), counts)
        if not line.strip():
            blank_run += 1
            if blank_run > 1:
                _count(counts, "collapsed_blank_lines")
                continue
            yield ""
            continue
        blank_run = 0
        if level == "strict":
            line = _strict_markup(line, counts)
        yield line


def _normalize_text(line: str, counts: dict[str, int]) -> str:
    ligatures = len(_LIGATURE_RE.findall(line))
    if ligatures:
        _count(counts, "expanded_ligatures", ligatures)
        line = _LIGATURE_RE.sub(lambda m: _LIGATURES[m.group(0)], line)
    composed = unicodedata.normalize("NFC", line)
    if composed != line:
        _count(counts, "unicode_nfc_lines")
    return composed


def _strict_markup(line: str, counts: dict[str, int]) -> str:
    heading = _HEADING_RE.match(line)
    if heading and heading.group(2):
        tidy = f"{heading.group(1)} {heading.group(2)}"
        if tidy != line:
            _count(counts, "tidied_headings")
        return tidy
    bullet = _BULLET_RE.match(line)
    if bullet and not _THEMATIC_BREAK_RE.match(line):
        _count(counts, "tidied_list_markers")
        return f"{bullet.group(1)}- " + line[bullet.end() :]
    return line
