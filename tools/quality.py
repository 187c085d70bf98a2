"""Score Markdown produced from the evaluation corpus against its ground truth.

Usage:
    .venv/bin/python tools/quality.py --markdown-dir DIR --corpus /work/shared/corpus \\
        --output OUT.json [--label NAME]

DIR holds one Markdown file per corpus PDF, named by the PDF's corpus-relative path with ``.pdf``
replaced by ``.md`` (``DIR/docling/pdf/multi_page.md``,
``DIR/olmocr/bench_sample/pdfs/headers_footers/ff0f..._pg2.md``). A file that is not there is
scored as empty output and listed as missing.

Two parts:

* docling/pdf: every PDF with a ground-truth ``<name>.md`` (docling's own regression output, so
  these numbers measure agreement with docling, not absolute truth) gets a text similarity,
  heading precision/recall/F1 and a table-cell F1.
* olmocr/bench_sample: the 99 human-reviewed checks of ``dataset.jsonl`` (present, absent, order,
  table, math) and the blank-page check of ``blanks.jsonl``, with olmOCR-Bench's semantics
  (re-implemented here, not imported): text is NFC-normalised, Markdown emphasis and ``<br>`` are
  dropped, quotes and dashes folded and whitespace collapsed; present/absent use rapidfuzz's
  ``partial_ratio`` against ``1 - max_diffs / len(text)``; order uses approximate substring search
  with at most ``max_diffs`` edits. Math checks are scored as "present" of the LaTeX source with
  all whitespace removed and reported apart from the text checks.

Checks name a page, but each PDF has one Markdown file: every check runs on the whole file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("SIR_CONVERT_CORPUS", REPO.parent / "shared" / "corpus"))

DOCLING_DIR = Path("docling") / "pdf"
OLMOCR_DIR = Path("olmocr") / "bench_sample"
OLMOCR_PDFS = OLMOCR_DIR / "pdfs"

HEADING_MATCH_THRESHOLD = 0.85
CHECK_TYPES = ("present", "absent", "order", "table", "math")

# --------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------

# Typographic characters folded to their ASCII forms (micro sign to Greek mu, as olmOCR does).
_FOLD = str.maketrans(
    {
        "\u2018": "'",  # left single quote
        "\u2019": "'",  # right single quote
        "\u201a": "'",  # low single quote
        "\u201c": '"',  # left double quote
        "\u201d": '"',  # right double quote
        "\u201e": '"',  # low double quote
        "\uff3f": "_",  # fullwidth low line
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u00b5": "\u03bc",  # micro sign
    }
)

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BOLD_STARS = re.compile(r"\*\*(.*?)\*\*")
_BOLD_UNDERSCORES = re.compile(r"__(.*?)__")
_B_I_TAGS = re.compile(r"</?[bi]>")
_EMPHASIS_PAIR = re.compile(r"(\*\*|__)(.*?)\1")
_ITALIC_PAIR = re.compile(r"(\*|_)(.*?)\1")
_WHITESPACE = re.compile(r"\s+")


def fold_text(s: str) -> str:
    """NFC-normalise and fold typographic quotes, dashes and the micro sign; nothing else."""
    return unicodedata.normalize("NFC", s).translate(_FOLD)


def normalize_text(s: str) -> str:
    """olmOCR-Bench's text normalisation.

    ``<br>`` becomes a space; Markdown bold/italic markers (paired ``**``, ``__``, ``*``, ``_``
    within a line) and ``<b>``/``<i>`` tags are dropped, keeping their text; whitespace runs
    collapse to one space; the result is NFC-normalised with quotes and dashes folded to ASCII.
    Leading and trailing spaces are kept (a collapsed space, like olmOCR).
    """
    s = _BR.sub(" ", s)
    s = _BOLD_STARS.sub(r"\1", s)
    s = _BOLD_UNDERSCORES.sub(r"\1", s)
    s = _B_I_TAGS.sub("", s)
    s = _EMPHASIS_PAIR.sub(r"\2", s)
    s = _ITALIC_PAIR.sub(r"\2", s)
    s = _WHITESPACE.sub(" ", s)
    return fold_text(s)


_FENCE = re.compile(r"^\s*(```|~~~)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING_MARK = re.compile(r"^\s{0,3}#{1,6}(\s+|$)")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~\"'$])")
_ENTITY = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&nbsp;": " "}


def plain_text(md: str) -> str:
    """The reading text of a Markdown document: markup removed, words and their order kept.

    Drops HTML comments, images, HTML tags, code-fence lines, heading/list/blockquote markers,
    horizontal rules, table delimiter rows and pipes; keeps link text; undoes backslash escapes
    and the common HTML entities. Emphasis is left for ``normalize_text`` to remove.
    """
    md = _HTML_COMMENT.sub(" ", md)
    md = _IMAGE.sub(" ", md)
    md = _LINK.sub(r"\1", md)
    md = _BR.sub(" ", md)
    md = _HTML_TAG.sub(" ", md)
    lines = []
    for line in md.splitlines():
        if _FENCE.match(line) or _RULE.match(line) or _is_delimiter_row(line):
            continue
        line = _HEADING_MARK.sub("", line)
        line = re.sub(r"^\s*(>\s*)+", "", line)
        line = _LIST_MARK.sub("", line)
        if "|" in line:
            line = re.sub(r"(?<!\\)\|", " ", line)
        line = _ESCAPE.sub(r"\1", line)
        line = line.replace("`", "")
        lines.append(line)
    text = "\n".join(lines)
    for entity, char in _ENTITY.items():
        text = text.replace(entity, char)
    return text


def inline_text(s: str) -> str:
    """A heading's or a table cell's text: links reduced to their text, HTML tags to a space,
    backslash escapes undone, then ``normalize_text`` and stripped."""
    s = _HTML_TAG.sub(" ", _BR.sub(" ", _LINK.sub(r"\1", s)))
    return normalize_text(_ESCAPE.sub(r"\1", s)).strip()


def _document_text(md: str) -> str:
    return normalize_text(plain_text(md)).strip()


def text_similarity(a: str, b: str) -> float:
    """``fuzz.ratio`` (normalised Indel similarity, 0..1) of the two documents' reading text.

    Each side goes through ``plain_text`` then ``normalize_text`` (whitespace collapsed). Two empty
    documents are identical (1.0).
    """
    ta, tb = _document_text(a), _document_text(b)
    if not ta and not tb:
        return 1.0
    return float(fuzz.ratio(ta, tb)) / 100.0


# --------------------------------------------------------------------------------------------
# Headings
# --------------------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")


def _code_free_lines(md: str) -> Iterable[str]:
    """The lines of ``md`` outside fenced code blocks."""
    fenced = False
    for line in md.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def headings(md: str) -> list[str]:
    """ATX headings (``#`` to ``######`` followed by a space) outside fenced code, in order, as
    ``inline_text`` (emphasis, tags and escapes dropped, whitespace collapsed); empty headings are
    skipped. Levels are ignored."""
    found = []
    for line in _code_free_lines(md):
        match = _ATX_HEADING.match(line)
        if match is None:
            continue
        text = inline_text(match.group(1))
        if text:
            found.append(text)
    return found


def _match_one_to_one(pred: list[str], truth: list[str], threshold: float) -> int:
    """Greedy one-to-one matching by descending ``fuzz.ratio``; counts pairs at or over the
    threshold. Ties go to the earlier heading on either side."""
    pairs = []
    for i, p in enumerate(pred):
        for j, t in enumerate(truth):
            ratio = float(fuzz.ratio(p, t)) / 100.0
            if ratio >= threshold:
                pairs.append((-ratio, i, j))
    pairs.sort()
    used_pred: set[int] = set()
    used_truth: set[int] = set()
    for _, i, j in pairs:
        if i in used_pred or j in used_truth:
            continue
        used_pred.add(i)
        used_truth.add(j)
    return len(used_pred)


def _prf(matched: int, n_pred: int, n_truth: int) -> tuple[float, float, float]:
    """Precision, recall, F1 from a match count. Nothing on both sides is (1, 1, 1); nothing on
    one side only is (0, 0, 0)."""
    if n_pred == 0 and n_truth == 0:
        return 1.0, 1.0, 1.0
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def heading_prf(
    pred_md: str, truth_md: str, threshold: float = HEADING_MATCH_THRESHOLD
) -> tuple[float, float, float]:
    """Precision, recall and F1 of the predicted headings against the true ones: a predicted
    heading matches a true one, one-to-one, when ``fuzz.ratio`` of their normalised texts is at
    least ``threshold`` (0.85). No headings on either side is (1, 1, 1); headings on one side only
    give F1 0."""
    pred, truth = headings(pred_md), headings(truth_md)
    return _prf(_match_one_to_one(pred, truth, threshold), len(pred), len(truth))


# --------------------------------------------------------------------------------------------
# Tables: parsing Markdown pipe tables and HTML tables into cell grids
# --------------------------------------------------------------------------------------------

CellId = tuple[int, int]


@dataclass
class _CellSpec:
    text: str
    rowspan: int = 1
    colspan: int = 1
    heading: bool = False


@dataclass
class Table:
    """A table as a grid of cells keyed by their top-left (row, column), spans resolved.

    ``up``/``down``/``left``/``right`` give, per cell, the set of cells immediately next to it in
    that direction (more than one where spans differ). ``heading_cells`` are the header cells:
    the header row and first column of a pipe table, ``<th>`` and ``<thead>`` cells in HTML.
    """

    text: dict[CellId, str] = field(default_factory=dict)
    heading_cells: set[CellId] = field(default_factory=set)
    up: dict[CellId, set[CellId]] = field(default_factory=dict)
    down: dict[CellId, set[CellId]] = field(default_factory=dict)
    left: dict[CellId, set[CellId]] = field(default_factory=dict)
    right: dict[CellId, set[CellId]] = field(default_factory=dict)

    def _heading_walk(self, start: CellId, step: dict[CellId, set[CellId]]) -> set[CellId]:
        """Walk from ``start`` along ``step`` to the table's edge. Returns the header cells met
        on the way, or, where there are none, the cells at the edge."""
        found: set[CellId] = set()
        edge: set[CellId] = set()
        seen: set[CellId] = set()
        todo = [start]
        while todo:
            cell = todo.pop()
            if cell in seen:
                continue
            seen.add(cell)
            if cell != start and cell in self.heading_cells:
                found.add(cell)
            nxt = step.get(cell, set())
            if nxt:
                todo.extend(nxt)
            elif cell != start:
                edge.add(cell)
        return found or edge

    def related(self, relation: str, cell: CellId) -> set[CellId]:
        """The cells in ``relation`` (up, down, left, right, top_heading, left_heading) to
        ``cell``."""
        if relation == "top_heading":
            return self.top_headings(cell)
        if relation == "left_heading":
            return self.left_headings(cell)
        neighbours: dict[CellId, set[CellId]] = getattr(self, relation)
        return neighbours.get(cell, set())

    def top_headings(self, cell: CellId) -> set[CellId]:
        return self._heading_walk(cell, self.up)

    def left_headings(self, cell: CellId) -> set[CellId]:
        return self._heading_walk(cell, self.left)


def _build_table(rows: list[list[_CellSpec]]) -> Table | None:
    """Lay out rows of cells (HTML table model: a cell takes the first free column, spans
    reserve the slots below and to the right) and work out each cell's neighbours."""
    slots: dict[CellId, CellId] = {}
    spans: dict[CellId, tuple[int, int]] = {}
    table = Table()
    for r, row in enumerate(rows):
        c = 0
        for spec in row:
            while (r, c) in slots:
                c += 1
            origin = (r, c)
            table.text[origin] = spec.text
            if spec.heading:
                table.heading_cells.add(origin)
            spans[origin] = (max(1, spec.rowspan), max(1, spec.colspan))
            for dr in range(spans[origin][0]):
                for dc in range(spans[origin][1]):
                    slots[(r + dr, c + dc)] = origin
            c += spans[origin][1]
    if not table.text:
        return None
    height = 1 + max(r for r, _ in slots)
    width = 1 + max(c for _, c in slots)
    for origin, (rowspan, colspan) in spans.items():
        r0, c0 = origin
        rows_of, cols_of = range(r0, r0 + rowspan), range(c0, c0 + colspan)
        right = [[(r, c) for c in range(c0 + colspan, width)] for r in rows_of]
        left = [[(r, c) for c in range(c0 - 1, -1, -1)] for r in rows_of]
        down = [[(r, c) for r in range(r0 + rowspan, height)] for c in cols_of]
        up = [[(r, c) for r in range(r0 - 1, -1, -1)] for c in cols_of]
        table.right[origin] = _first_others(slots, origin, right)
        table.left[origin] = _first_others(slots, origin, left)
        table.down[origin] = _first_others(slots, origin, down)
        table.up[origin] = _first_others(slots, origin, up)
    return table


def _first_others(
    slots: dict[CellId, CellId], origin: CellId, rays: list[list[CellId]]
) -> set[CellId]:
    """Along each ray of slots, the first cell other than ``origin`` (empty slots skipped)."""
    found = set()
    for ray in rays:
        for slot in ray:
            other = slots.get(slot)
            if other is not None and other != origin:
                found.add(other)
                break
    return found


def _is_delimiter_row(line: str) -> bool:
    """A pipe-table delimiter row: pipes, dashes, colons and spaces only, with a dash and a
    pipe."""
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and all(ch in "|-: \t" for ch in stripped.strip("|"))


def _split_row(line: str) -> list[str]:
    """Cells of one pipe-table row: split on unescaped pipes, outer empty cells (from leading
    and trailing pipes) dropped, each cell stripped."""
    cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]
    if cells and cells[0] == "":
        cells = cells[1:]
    if cells and cells[-1] == "":
        cells = cells[:-1]
    return cells


def _pipe_blocks(md: str, require_delimiter: bool) -> list[list[list[str]]]:
    """Runs of consecutive lines containing a pipe, as rows of cell texts (delimiter rows and
    rows of only formatting characters left out). With ``require_delimiter`` a run counts only
    where its second line is a delimiter row (a GitHub-flavoured table) and fenced code is
    skipped; without it any run of two or more lines counts, as in olmOCR-Bench."""
    lines = list(_code_free_lines(md)) if require_delimiter else md.strip().split("\n")
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if "|" in line:
            current.append(line)
            continue
        if len(current) >= 2 and (not require_delimiter or _is_delimiter_row(current[1])):
            blocks.append(current)
        current = []
    tables = []
    for block in blocks:
        rows = []
        for line in block:
            if _is_delimiter_row(line) or (line.strip() and all(ch in "-:| " for ch in line)):
                continue
            cells = _split_row(line)
            if cells:
                rows.append(cells)
        if rows:
            tables.append(rows)
    return tables


def markdown_tables(md: str, require_delimiter: bool = False) -> list[Table]:
    """Pipe tables in ``md``; the first row and the first column are the header cells."""
    tables = []
    for rows in _pipe_blocks(md, require_delimiter):
        specs = [
            [_CellSpec(text, heading=(r == 0 or c == 0)) for c, text in enumerate(row)]
            for r, row in enumerate(rows)
        ]
        table = _build_table(specs)
        if table is not None:
            tables.append(table)
    return tables


class _HtmlTables(HTMLParser):
    """Collects ``<table>`` elements as rows of cell specs; nested tables are kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.done: list[list[list[_CellSpec]]] = []
        self._stack: list[dict[str, Any]] = []

    def _cell_end(self, state: dict[str, Any]) -> None:
        cell = state["cell"]
        if cell is not None:
            cell.text = "".join(state["buffer"]).strip()
            state["row"].append(cell)
            state["cell"] = None
            state["buffer"] = []

    def _row_end(self, state: dict[str, Any]) -> None:
        self._cell_end(state)
        if state["row"] is not None:
            state["rows"].append(state["row"])
            state["row"] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append(
                {"rows": [], "row": None, "cell": None, "buffer": [], "thead": False}
            )
            return
        if not self._stack:
            return
        state = self._stack[-1]
        if tag == "thead":
            state["thead"] = True
        elif tag in ("tbody", "tfoot"):
            state["thead"] = False
        elif tag == "tr":
            self._row_end(state)
            state["row"] = []
        elif tag in ("td", "th"):
            self._cell_end(state)
            if state["row"] is None:
                state["row"] = []
            values = dict(attrs)
            state["cell"] = _CellSpec(
                "",
                rowspan=_span(values.get("rowspan")),
                colspan=_span(values.get("colspan")),
                heading=tag == "th" or state["thead"],
            )
        elif tag == "br" and state["cell"] is not None:
            state["buffer"].append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and self._stack and self._stack[-1]["cell"] is not None:
            self._stack[-1]["buffer"].append("\n")
        elif tag != "br":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self._stack:
            return
        state = self._stack[-1]
        if tag == "table":
            self._row_end(state)
            self.done.append(state["rows"])
            self._stack.pop()
        elif tag in ("td", "th"):
            self._cell_end(state)
        elif tag == "tr":
            self._row_end(state)
        elif tag == "thead":
            self._row_end(state)
            state["thead"] = False

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1]["cell"] is not None:
            self._stack[-1]["buffer"].append(data)

    def close(self) -> None:
        super().close()
        while self._stack:  # unclosed tables still count
            state = self._stack.pop()
            self._row_end(state)
            self.done.append(state["rows"])


def _span(value: str | None) -> int:
    try:
        span = int(value or 1)
    except ValueError:
        return 1
    return span if span > 0 else 1


def html_tables(md: str) -> list[Table]:
    """HTML ``<table>`` elements anywhere in ``md`` (spans honoured, ``<br>`` as a newline)."""
    if "<table" not in md.lower():
        return []
    parser = _HtmlTables()
    parser.feed(md)
    parser.close()
    tables = []
    for rows in parser.done:
        table = _build_table(rows)
        if table is not None:
            tables.append(table)
    return tables


def table_cells(md: str) -> list[str]:
    """Texts of the non-empty cells of every table in ``md``: GitHub-flavoured pipe tables
    (header row plus delimiter row, outside fenced code) and HTML tables, each cell as
    ``inline_text``. A cell spanning several slots counts once."""
    cells = []
    for table in markdown_tables(md, require_delimiter=True) + html_tables(md):
        for text in table.text.values():
            normalized = inline_text(text)
            if normalized:
                cells.append(normalized)
    return cells


def table_cell_f1(pred_md: str, truth_md: str) -> float:
    """F1 of the predicted table cells against the true ones as multisets of normalised texts
    (exact match after normalisation). No cells on either side is 1.0; cells on one side only
    is 0.0."""
    pred, truth = Counter(table_cells(pred_md)), Counter(table_cells(truth_md))
    matched = sum((pred & truth).values())
    return _prf(matched, sum(pred.values()), sum(truth.values()))[2]


# --------------------------------------------------------------------------------------------
# olmOCR-Bench checks
# --------------------------------------------------------------------------------------------


def _threshold(text: str, max_diffs: int) -> float:
    return 1.0 - max_diffs / (len(text) if text else 1)


def _presence(
    query: str,
    content: str,
    max_diffs: int,
    *,
    case_sensitive: bool = True,
    first_n: int | None = None,
    last_n: int | None = None,
) -> tuple[bool, str]:
    """Whether ``query`` occurs in ``content`` (both already normalised): rapidfuzz
    ``partial_ratio`` at least ``1 - max_diffs / len(query)``. Content shorter than
    ``len(query) - max_diffs`` cannot contain it (partial_ratio would otherwise align the other
    way round and let empty output "contain" any query with a space in it)."""
    if not case_sensitive:
        query, content = query.lower(), content.lower()
    if first_n and last_n:
        content = content[:first_n] + content[-last_n:]
    elif first_n:
        content = content[:first_n]
    elif last_n:
        content = content[-last_n:]
    if len(content) < len(query) - max_diffs:
        return False, f"output too short ({len(content)} chars) to hold the text"
    ratio = float(fuzz.partial_ratio(query, content)) / 100.0
    threshold = _threshold(query, max_diffs)
    return ratio >= threshold, f"best partial ratio {ratio:.3f}, threshold {threshold:.3f}"


def _approx_match_ends(pattern: str, text: str, max_edits: int) -> list[int]:
    """End offsets (exclusive) of the substrings of ``text`` within ``max_edits`` Levenshtein
    edits of ``pattern`` (Sellers' algorithm with Ukkonen's cut-off, values capped at
    ``max_edits + 1``)."""
    m = len(pattern)
    cap = max_edits + 1
    column = [min(i, cap) for i in range(m + 1)]
    last = min(max_edits, m)  # deepest row whose value is within max_edits
    ends = [0] if last == m else []
    for j, ch in enumerate(text, 1):
        limit = min(last + 1, m)
        diagonal = column[0]  # row 0 is always 0: a match may start anywhere
        for i in range(1, limit + 1):
            above = column[i]
            value = diagonal + (pattern[i - 1] != ch)
            if above + 1 < value:
                value = above + 1
            if column[i - 1] + 1 < value:
                value = column[i - 1] + 1
            column[i] = value if value < cap else cap
            diagonal = above
        last = limit
        while last > 0 and column[last] > max_edits:
            last -= 1
        if last == m:
            ends.append(j)
    return ends


def find_approx_starts(pattern: str, text: str, max_edits: int) -> list[int]:
    """Start offsets of the substrings of ``text`` within ``max_edits`` edits of ``pattern``,
    ascending. Exact search where ``max_edits`` is 0."""
    if not pattern:
        return []
    if max_edits == 0:
        starts = []
        at = text.find(pattern)
        while at != -1:
            starts.append(at)
            at = text.find(pattern, at + 1)
        return starts
    ends = _approx_match_ends(pattern[::-1], text[::-1], max_edits)
    return sorted(len(text) - end for end in ends)


def _order(before: str, after: str, content: str, max_diffs: int) -> tuple[bool, str]:
    """Pass when some match of ``before`` starts ahead of some match of ``after`` (each found
    within ``max_diffs`` edits)."""
    before_starts = find_approx_starts(before, content, max_diffs)
    if not before_starts:
        return False, "'before' text not found"
    after_starts = find_approx_starts(after, content, max_diffs)
    if not after_starts:
        return False, "'after' text not found"
    if before_starts[0] < after_starts[-1]:
        return True, f"before at {before_starts[0]}, after at {after_starts[-1]}"
    return False, f"'before' first found at {before_starts[0]}, 'after' last at {after_starts[-1]}"


_RELATIONS = ("up", "down", "left", "right", "top_heading", "left_heading")


def _table_check(check: dict[str, Any], md: str) -> tuple[bool, str]:
    """A cell whose text matches ``cell`` exists in some pipe or HTML table, and for that same
    cell every given relation holds: one of the cells immediately up/down/left/right of it, or
    one of its header cells (top_heading/left_heading: the header cells met walking up/left to
    the table's edge, else the cells at the edge), matches the given text.

    Texts match when ``fuzz.ratio`` of the two ``normalize_text``-ed, stripped texts is at least
    ``max(0.5, 1 - max_diffs / len(expected))``: exact where max_diffs is 0, as in olmOCR-Bench,
    except that the strip keeps a stray leading ``<br>`` from failing a cell."""
    max_diffs = int(check.get("max_diffs") or 0)
    target = normalize_text(check["cell"]).strip()
    wanted = {
        name: normalize_text(check[name]).strip()
        for name in _RELATIONS
        if check.get(name) is not None
    }
    wanted = {name: text for name, text in wanted.items() if text}

    def matches(expected: str, actual: str) -> bool:
        ratio = float(fuzz.ratio(expected, normalize_text(actual).strip())) / 100.0
        return ratio >= max(0.5, _threshold(expected, max_diffs))

    tables = markdown_tables(md) + html_tables(md)
    if not tables:
        return False, "no tables in the output"
    candidates = 0
    for table in tables:
        for cell, text in table.text.items():
            if not matches(target, text):
                continue
            candidates += 1
            if all(
                any(matches(expected, table.text[other]) for other in table.related(name, cell))
                for name, expected in wanted.items()
            ):
                return True, f"cell found in {len(tables)} table(s), relations hold"
    if not candidates:
        return False, f"no matching cell in {len(tables)} table(s)"
    return False, f"{candidates} matching cell(s), relations {sorted(wanted)} not satisfied"


def _math_check(check: dict[str, Any], md: str) -> tuple[bool, str]:
    """The LaTeX source, all whitespace removed, is "present" in the output with all whitespace
    removed (NFC and quote/dash folding on both; no emphasis stripping, which would eat the
    underscores of subscripts)."""
    query = re.sub(r"\s+", "", fold_text(check["math"]))
    content = re.sub(r"\s+", "", fold_text(md))
    return _presence(query, content, int(check.get("max_diffs") or 0))


def _baseline_check(check: dict[str, Any], md: str) -> tuple[bool, str]:
    """Blank-page check: at most ``max_length`` alphanumeric characters in the output."""
    count = sum(1 for ch in md if ch.isalnum())
    limit = check.get("max_length")
    if limit is None:
        return count > 0, f"{count} alphanumeric characters"
    return count <= int(limit), f"{count} alphanumeric characters, at most {limit} allowed"


def explain_olmocr_check(check: dict[str, Any], md: str) -> tuple[bool, str]:
    """Run one olmOCR-Bench check on a Markdown document: (passed, why)."""
    kind = check["type"]
    max_diffs = int(check.get("max_diffs") or 0)
    if kind in ("present", "absent"):
        query = normalize_text(check["text"])
        found, why = _presence(
            query,
            normalize_text(md),
            max_diffs,
            case_sensitive=bool(check.get("case_sensitive", True)),
            first_n=check.get("first_n"),
            last_n=check.get("last_n"),
        )
        return (found if kind == "present" else not found), why
    if kind == "order":
        before, after = normalize_text(check["before"]), normalize_text(check["after"])
        return _order(before, after, normalize_text(md), max_diffs)
    if kind == "table":
        return _table_check(check, md)
    if kind == "math":
        return _math_check(check, md)
    if kind == "baseline":
        return _baseline_check(check, md)
    raise ValueError(f"unknown check type {kind!r} in check {check.get('id')!r}")


def run_olmocr_check(check: dict[str, Any], md: str) -> bool:
    """Whether ``md`` passes one olmOCR-Bench check (a row of dataset.jsonl or blanks.jsonl)."""
    return explain_olmocr_check(check, md)[0]


# --------------------------------------------------------------------------------------------
# Scoring a Markdown folder
# --------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, blank lines skipped."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _read_markdown(markdown_dir: Path, relative: Path, missing: list[str]) -> str:
    path = markdown_dir / relative
    if not path.is_file():
        missing.append(relative.as_posix())
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


def docling_documents(corpus: Path) -> tuple[list[str], dict[str, str]]:
    """Names of the docling/pdf documents with both a PDF and a ground-truth Markdown, and the
    ground truths left out with the reason."""
    folder = corpus / DOCLING_DIR
    scored, skipped = [], {}
    for truth in sorted(folder.glob("*.md")):
        name = truth.stem
        if (folder / f"{name}.pdf").is_file():
            scored.append(name)
        elif name.endswith("_from_latex_source"):
            skipped[name] = "ground truth from the LaTeX source of a paper whose PDF is absent"
        else:
            skipped[name] = "no PDF in the corpus (over 4 MiB, left out of the snapshot)"
    return scored, skipped


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score_docling(markdown_dir: Path, corpus: Path, missing: list[str]) -> dict[str, Any]:
    names, skipped = docling_documents(corpus)
    documents: dict[str, dict[str, Any]] = {}
    for name in names:
        truth = (corpus / DOCLING_DIR / f"{name}.md").read_text(encoding="utf-8")
        relative = DOCLING_DIR / f"{name}.md"
        before = len(missing)
        pred = _read_markdown(markdown_dir, relative, missing)
        precision, recall, f1 = heading_prf(pred, truth)
        documents[name] = {
            "markdown": relative.as_posix(),
            "missing": len(missing) > before,
            "text_similarity": round(text_similarity(pred, truth), 4),
            "heading_precision": round(precision, 4),
            "heading_recall": round(recall, 4),
            "heading_f1": round(f1, 4),
            "headings_pred": len(headings(pred)),
            "headings_truth": len(headings(truth)),
            "table_cell_f1": round(table_cell_f1(pred, truth), 4),
            "table_cells_pred": len(table_cells(pred)),
            "table_cells_truth": len(table_cells(truth)),
        }
    metrics = ("text_similarity", "heading_f1", "table_cell_f1")
    mean = {m: round(_mean([d[m] for d in documents.values()]), 4) for m in metrics}
    with_tables = [d["table_cell_f1"] for d in documents.values() if d["table_cells_truth"]]
    mean["table_cell_f1_docs_with_tables"] = round(_mean(with_tables), 4)
    with_headings = [d["heading_f1"] for d in documents.values() if d["headings_truth"]]
    mean["heading_f1_docs_with_headings"] = round(_mean(with_headings), 4)
    return {"documents": documents, "skipped": skipped, "mean": mean}


def _markdown_for_pdf(pdf: str) -> Path:
    return OLMOCR_PDFS / (pdf[: -len(".pdf")] + ".md" if pdf.endswith(".pdf") else pdf + ".md")


def score_olmocr(markdown_dir: Path, corpus: Path, missing: list[str]) -> dict[str, Any]:
    cache: dict[str, str] = {}

    def markdown(pdf: str) -> tuple[str, bool]:
        relative = _markdown_for_pdf(pdf)
        if pdf not in cache:
            cache[pdf] = _read_markdown(markdown_dir, relative, missing)
        return cache[pdf], relative.as_posix() in missing

    def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        for check in rows:
            md, absent = markdown(check["pdf"])
            passed, why = explain_olmocr_check(check, md)
            results.append(
                {
                    "id": check["id"],
                    "type": check["type"],
                    "pdf": check["pdf"],
                    "page": check.get("page"),
                    "passed": passed,
                    "detail": why,
                    "missing": absent,
                }
            )
        return results

    checks = run(read_jsonl(corpus / OLMOCR_DIR / "dataset.jsonl"))
    blanks = run(read_jsonl(corpus / OLMOCR_DIR / "blanks.jsonl"))
    totals = {}
    for kind in sorted({c["type"] for c in checks} | set(CHECK_TYPES)):
        of_kind = [c for c in checks if c["type"] == kind]
        totals[kind] = {"passed": sum(c["passed"] for c in of_kind), "total": len(of_kind)}
    text_kinds = [c for c in checks if c["type"] != "math"]
    totals["all_but_math"] = {
        "passed": sum(c["passed"] for c in text_kinds),
        "total": len(text_kinds),
    }
    totals["blanks"] = {"passed": sum(c["passed"] for c in blanks), "total": len(blanks)}
    return {"checks": checks, "blanks": blanks, "totals": totals}


def score(markdown_dir: Path | str, corpus: Path | str = DEFAULT_CORPUS) -> dict[str, Any]:
    """Score every Markdown file the corpus has ground truth for; see the module docstring."""
    markdown_dir, corpus = Path(markdown_dir), Path(corpus)
    missing: list[str] = []
    docling = score_docling(markdown_dir, corpus, missing)
    olmocr = score_olmocr(markdown_dir, corpus, missing)
    summary: dict[str, Any] = {f"docling_mean_{k}": v for k, v in docling["mean"].items()}
    for kind, total in olmocr["totals"].items():
        summary[f"olmocr_{kind}"] = f"{total['passed']}/{total['total']}"
    summary["missing_markdown"] = len(missing)
    return {
        "markdown_dir": str(markdown_dir),
        "corpus": str(corpus),
        "docling": docling,
        "olmocr": olmocr,
        "missing": sorted(set(missing)),
        "summary": summary,
    }


def format_report(result: dict[str, Any]) -> str:
    """The readable table the CLI prints."""
    lines = []
    if result.get("label"):
        lines.append(f"label: {result['label']}")
    lines.append(f"markdown: {result['markdown_dir']}")
    lines.append("")
    header = f"{'docling/pdf document':<30} {'sim':>6} {'head P':>7} {'head R':>7} {'head F1':>8}"
    header += f" {'cell F1':>8} {'cells p/t':>10}"
    lines.append(header)
    lines.append("-" * len(header))
    for name, doc in sorted(result["docling"]["documents"].items()):
        flag = " (missing)" if doc["missing"] else ""
        lines.append(
            f"{name:<30} {doc['text_similarity']:>6.3f} {doc['heading_precision']:>7.3f}"
            f" {doc['heading_recall']:>7.3f} {doc['heading_f1']:>8.3f}"
            f" {doc['table_cell_f1']:>8.3f}"
            f" {str(doc['table_cells_pred']) + '/' + str(doc['table_cells_truth']):>10}{flag}"
        )
    mean = result["docling"]["mean"]
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<30} {mean['text_similarity']:>6.3f} {'':>7} {'':>7} {mean['heading_f1']:>8.3f}"
        f" {mean['table_cell_f1']:>8.3f}"
    )
    lines.append(
        f"(heading F1 over documents with headings {mean['heading_f1_docs_with_headings']:.3f};"
        f" cell F1 over documents with tables {mean['table_cell_f1_docs_with_tables']:.3f})"
    )
    for name, why in sorted(result["docling"]["skipped"].items()):
        lines.append(f"skipped {name}: {why}")
    lines.append("")
    lines.append("olmOCR-Bench sample checks")
    totals = result["olmocr"]["totals"]
    for kind in (*CHECK_TYPES, "all_but_math", "blanks"):
        if kind in totals:
            lines.append(f"  {kind:<14} {totals[kind]['passed']:>3}/{totals[kind]['total']}")
    failed = [c["id"] for c in result["olmocr"]["checks"] if not c["passed"]]
    lines.append(f"  failed ({len(failed)}): {', '.join(failed)}")
    if result["missing"]:
        lines.append("")
        lines.append(f"missing Markdown ({len(result['missing'])}), scored as empty:")
        lines.extend(f"  {path}" for path in result["missing"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown-dir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--output", type=Path, help="write the full results here as JSON")
    parser.add_argument("--label", default="", help="a name for this run, kept in the JSON")
    args = parser.parse_args(argv)
    if not args.markdown_dir.is_dir():
        parser.error(f"no such folder: {args.markdown_dir}")
    if not (args.corpus / OLMOCR_DIR / "dataset.jsonl").is_file():
        parser.error(f"not the evaluation corpus: {args.corpus}")
    result = score(args.markdown_dir, args.corpus)
    result["label"] = args.label
    print(format_report(result))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(result, sort_keys=True, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
