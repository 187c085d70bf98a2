"""One Markdown post-processing stage after every backend, driven by ``normalize``.

- ``none``: the backend's Markdown exactly as it came.
- ``standard`` (the default):
  - page furniture out: lines the backend's layout model labelled page header or footer, lines
    repeated at the top or bottom of at least half the pages (three at least, digits counted
    as one, so "Page 3 of 12" repeats), and bare page numbers at a page's top or bottom;
  - words hyphenated across line breaks joined, without the hyphen only when the joined word
    occurs elsewhere in the document (so "self-\\nlocking" stays "self-locking"); soft hyphens
    dropped;
  - typographic oddities normalised: Unicode NFC, ligatures spelled out (``ﬁ`` -> ``fi``),
    TeX-style spacing accents composed (``J´an`` -> ``Ján``), doubled single quotes made
    double quotes (``‘‘x’’`` -> ``“x”``), no-break spaces made spaces;
  - trailing spaces trimmed and runs of blank lines collapsed to one.
- ``strict``: ``standard``, plus paragraphs reflowed onto one line and list markers and
  headings written one way (``- item``, ``## Heading``).

Headings, tables, fenced code, display formulas and picture links (``![...](...)``, from
``output.images``) are never removed, and never altered (``strict`` only rewrites a heading's
markup): a figure at the top of many pages is no page furniture. A line that occurs once and
is not page furniture is never removed. What a level changed is counted in the returned
warnings (``normalize_removed_page_furniture:12``), so nothing disappears silently.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
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
# Spacing accents that TeX-made PDFs place before the letter they belong to, with the letters
# each one really combines with in European languages (so "don´t" keeps its stray accent).
_SPACING_ACCENTS = {
    "\u00b4": ("\u0301", "aeiouyAEIOUY"),  # acute
    "\u02c7": ("\u030c", "cszrnedtCSZRNEDT"),  # caron
    "\u00a8": ("\u0308", "aeiouyAEIOUY"),  # diaeresis
    "\u02c6": ("\u0302", "aeiouAEIOU"),  # circumflex
    "\u02dc": ("\u0303", "anoANO"),  # tilde
    "\u02d8": ("\u0306", "agAG"),  # breve
    "\u02da": ("\u030a", "auAU"),  # ring
    "\u00b8": ("\u0327", "cCsStT"),  # cedilla
}
_SPACING_ACCENT_RE = re.compile(
    "("
    + "|".join(f"{accent}[{letters}]" for accent, (_mark, letters) in _SPACING_ACCENTS.items())
    + ")"
)
_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING_RE = re.compile(r"^(#{1,6})[ \t]*(.*?)[ \t]*#*[ \t]*$")
_BULLET_RE = re.compile(r"^(\s*)[*+][ \t]+")
_LIST_RE = re.compile(r"^\s*([-*+]|\d{1,3}[.)])\s+")
_THEMATIC_BREAK_RE = re.compile(r"^\s{0,3}([*_-])(\s*\1){2,}\s*$")
_PAGE_NUMBER_RE = re.compile(
    r"^(page\s+)?(\d{1,4}|[ivxlcdm]{1,7})(\s*(of|/)\s*\d{1,4})?$", re.IGNORECASE
)
_EMPHASIS_RE = re.compile(r"[*_`#>]+")
_EDGE_LINES = 3


@dataclass(frozen=True)
class Normalized:
    markdown: str
    warnings: tuple[str, ...]


def normalize(
    markdown: str,
    level: str,
    pages: Sequence[str] | None = None,
    furniture: Sequence[Sequence[str]] | None = None,
) -> Normalized:
    """``pages``: the Markdown of each page, when the backend knows the page boundaries (their
    concatenation is ``markdown``); ``furniture``: per page, the lines its layout model labelled
    page header or footer."""
    if level == "none":
        return Normalized(markdown, ())
    counts: Counter[str] = Counter()
    text = "".join(_without_furniture(pages, furniture, counts)) if pages else markdown
    lines = list(_normalize_lines(text.split("\n"), counts))
    text = _join_hyphenated("\n".join(lines), counts)
    lines = _collapse_blank_runs(text.split("\n"), counts)
    if level == "strict":
        lines = _strict(lines, counts)
    text = "\n".join(lines).strip("\n")
    text = text + "\n" if text else ""
    warnings = tuple(f"normalize_{name}:{count}" for name, count in sorted(counts.items()) if count)
    return Normalized(text, warnings)


# -- which lines may be touched ---------------------------------------------------------------


def _kinds(lines: Iterable[str]) -> list[str]:
    """Each line's kind: ``code`` (fences and what they hold), ``math`` (display formulas),
    ``table``, ``heading``, ``picture`` (a line that starts with an image link) or ``text``.
    Only ``text`` is ever changed."""
    kinds: list[str] = []
    fence: str | None = None
    in_math = False
    for line in lines:
        stripped = line.strip()
        opener = _FENCE_RE.match(line)
        if fence is not None:
            kinds.append("code")
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = None
            continue
        if opener:
            fence = opener.group(1)
            kinds.append("code")
            continue
        if stripped.startswith("$$") or in_math:
            kinds.append("math")
            if stripped.startswith("$$") and not (stripped.endswith("$$") and len(stripped) > 2):
                in_math = not in_math
            elif in_math and stripped.endswith("$$"):
                in_math = False
            continue
        if stripped.startswith("|") or stripped.startswith("<table"):
            kinds.append("table")
        elif stripped.startswith("!["):
            kinds.append("picture")
        elif stripped.startswith("#") and _HEADING_RE.match(stripped):
            kinds.append("heading")
        else:
            kinds.append("text")
    return kinds


def _protected(lines: Iterable[str]) -> list[bool]:
    return [kind != "text" for kind in _kinds(lines)]


# -- page furniture ---------------------------------------------------------------------------


def _compact(text: str) -> str:
    """Letters and digits only, lower case: how a labelled furniture text and the Markdown line
    it became are compared (emphasis, escapes and spacing differ between the two)."""
    return "".join(
        ch for ch in _EMPHASIS_RE.sub("", re.sub(r"<[^>]+>", "", text)).lower() if ch.isalnum()
    )


def _key(line: str) -> str:
    text = _EMPHASIS_RE.sub("", line).strip().lower()
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\d+", "#", " ".join(text.split()))


def _without_furniture(
    pages: Sequence[str], furniture: Sequence[Sequence[str]] | None, counts: Counter[str]
) -> Iterable[str]:
    split = [page.split("\n") for page in pages]
    flags = [_protected(lines) for lines in split]
    edges = [_edge_indexes(lines, protected) for lines, protected in zip(split, flags, strict=True)]
    on_pages: Counter[str] = Counter()
    for lines, edge in zip(split, edges, strict=True):
        on_pages.update({_key(lines[i]) for i in edge if _key(lines[i])})
    needed = max(3, math.ceil(len(pages) / 2))
    repeated = {key for key, seen in on_pages.items() if seen >= needed}
    for number, (lines, protected, edge) in enumerate(zip(split, flags, edges, strict=True)):
        labelled = Counter(
            _compact(text) for text in (furniture[number] if furniture else ()) if _compact(text)
        )
        kept: list[str] = []
        removed = 0
        for index, line in enumerate(lines):
            key = _key(line)
            if key and not protected[index]:
                if labelled[_compact(line)] > 0:  # each labelled text takes one line at most
                    labelled[_compact(line)] -= 1
                    removed += 1
                    continue
                if index in edge and (
                    key in repeated or _PAGE_NUMBER_RE.match(key.replace("#", "1"))
                ):
                    removed += 1
                    continue
            kept.append(line)
        if removed and not any(line.strip() for line in kept):
            # A page made only of "furniture" is the content itself (a one-line note, say).
            yield "\n".join(lines)
            continue
        counts["removed_page_furniture"] += removed
        yield "\n".join(kept)


def _edge_indexes(lines: list[str], protected: list[bool]) -> set[int]:
    """The first and last few non-blank lines of a page."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return set(filled[:_EDGE_LINES]) | set(filled[-_EDGE_LINES:])


# -- characters -------------------------------------------------------------------------------


def _normalize_lines(lines: list[str], counts: Counter[str]) -> Iterable[str]:
    for line, protected in zip(lines, _protected(lines), strict=True):
        yield line if protected else _normalize_text(line.rstrip(), counts)


def _normalize_text(line: str, counts: Counter[str]) -> str:
    found = len(_LIGATURE_RE.findall(line))
    if found:
        counts["expanded_ligatures"] += found
        line = _LIGATURE_RE.sub(lambda m: _LIGATURES[m.group(0)], line)
    if "\u00ad" in line:
        counts["removed_soft_hyphens"] += line.count("\u00ad")
        line = line.replace("\u00ad", "")
    if "\u00a0" in line:
        line = line.replace("\u00a0", " ")
    if "\u2018\u2018" in line or "\u2019\u2019" in line:
        counts["joined_doubled_quotes"] += line.count("\u2018\u2018") + line.count("\u2019\u2019")
        line = line.replace("\u2018\u2018", "\u201c").replace("\u2019\u2019", "\u201d")
    accents = len(_SPACING_ACCENT_RE.findall(line))
    if accents:
        counts["composed_spacing_accents"] += accents
        line = _SPACING_ACCENT_RE.sub(
            lambda m: m.group(0)[1] + _SPACING_ACCENTS[m.group(0)[0]][0], line
        )
    composed = unicodedata.normalize("NFC", line)
    if composed != line:
        counts["unicode_nfc_lines"] += 1
    return composed


# -- words and lines --------------------------------------------------------------------------


def _join_hyphenated(text: str, counts: Counter[str]) -> str:
    """``exam-\\nple`` -> ``example`` when ``example`` occurs elsewhere; else ``exam-ple``."""
    lines = text.split("\n")
    protected = _protected(lines)
    vocabulary = Counter(w.lower() for w in re.findall(r"\w+", text))
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        following = lines[index + 1] if index + 1 < len(lines) else ""
        match = re.search(r"(\w{2,})-$", line)
        start = re.match(r"\s*([a-z]\w*)", following)
        joinable = (
            match
            and start
            and not protected[index]
            and not protected[index + 1]
            and not _LIST_RE.match(following)
        )
        if joinable and match and start:
            head, tail = match.group(1), start.group(1)
            joined_word = head + tail
            word = joined_word if vocabulary[joined_word.lower()] > 0 else f"{head}-{tail}"
            counts["joined_hyphenated_words"] += 1
            rest = following[start.end() :]
            lines[index + 1] = line[: match.start()] + word + rest
            protected[index + 1] = False
            index += 1
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


def _collapse_blank_runs(lines: list[str], counts: Counter[str]) -> list[str]:
    kept: list[str] = []
    for line, kind in zip(lines, _kinds(lines), strict=True):
        if kind == "code":
            kept.append(line)
            continue
        if not line.strip() and kept and not kept[-1].strip():
            counts["collapsed_blank_lines"] += 1
            continue
        kept.append("" if not line.strip() else line)
    return kept


def _strict(lines: list[str], counts: Counter[str]) -> list[str]:
    kinds = _kinds(lines)
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            if len(paragraph) > 1:
                counts["reflowed_paragraphs"] += 1
            out.append(" ".join(part.strip() for part in paragraph))
            paragraph.clear()

    for line, kind in zip(lines, kinds, strict=True):
        stripped = line.strip()
        if kind != "text" or not stripped or _THEMATIC_BREAK_RE.match(line):
            flush()
            out.append(_tidy_heading(line, counts) if kind == "heading" else line)
            continue
        if _LIST_RE.match(line) or stripped.startswith((">", "<")):
            flush()
            out.append(_tidy_bullet(line, counts))
            continue
        paragraph.append(line)
    flush()
    return out


def _tidy_heading(line: str, counts: Counter[str]) -> str:
    heading = _HEADING_RE.match(line)
    if heading and line.startswith("#") and heading.group(2):
        tidy = f"{heading.group(1)} {heading.group(2)}"
        if tidy != line:
            counts["tidied_headings"] += 1
        return tidy
    return line


def _tidy_bullet(line: str, counts: Counter[str]) -> str:
    bullet = _BULLET_RE.match(line)
    if bullet and not _THEMATIC_BREAK_RE.match(line):
        counts["tidied_list_markers"] += 1
        return f"{bullet.group(1)}- " + line[bullet.end() :]
    return line
