"""tools/quality.py: the Markdown quality scorer, its checkers pinned on small hand-written cases,
and one run against the real evaluation corpus."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO, SHARED_CORPUS


def _load_quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality", REPO / "tools" / "quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


q = _load_quality()


def check(kind: str, **fields: object) -> dict[str, object]:
    return {"pdf": "x.pdf", "page": 1, "id": f"t-{kind}", "type": kind, **fields}


# ---- normalisation ---------------------------------------------------------------------------


def test_normalize_folds_quotes_dashes_and_collapses_whitespace() -> None:
    raw = "\u201cSmart\u201d  \u2018quotes\u2019\n\nen\u2013dash em\u2014dash minus\u2212 \u00b5"
    assert q.normalize_text(raw) == "\"Smart\" 'quotes' en-dash em-dash minus- \u03bc"


def test_normalize_is_nfc_and_drops_emphasis_and_br() -> None:
    assert q.normalize_text("Cafe\u0301") == "Caf\u00e9"
    assert q.normalize_text("**bold** and *it* and __b__ and _i_<br>next") == (
        "bold and it and b and i next"
    )
    assert q.normalize_text("<b>x</b> <i>y</i>") == "x y"


# ---- present / absent ------------------------------------------------------------------------


def test_present_passes_and_fails() -> None:
    md = "# Title\n\nThe quick brown fox\njumps over the lazy dog.\n"
    assert q.run_olmocr_check(check("present", text="brown fox jumps over"), md)
    assert not q.run_olmocr_check(check("present", text="brown cat jumps over"), md)


def test_present_max_diffs_allows_that_many_edits() -> None:
    md = "Corporate social responsibilty is vague."  # one letter missing
    strict = check("present", text="Corporate social responsibility")
    assert not q.run_olmocr_check(strict, md)
    assert q.run_olmocr_check({**strict, "max_diffs": 1}, md)
    two_typos = "Corporate socail responsibilty is vague."
    assert not q.run_olmocr_check({**strict, "max_diffs": 1}, two_typos)
    assert q.run_olmocr_check({**strict, "max_diffs": 3}, two_typos)


def test_present_folds_quotes_and_dashes_on_both_sides() -> None:
    md = "The term \u201ccorporate social responsibility\u201d is ten\u2013fold in vogue"
    assert q.run_olmocr_check(
        check("present", text='term "corporate social responsibility" is ten-fold'), md
    )
    # Two single quotes are not a double quote: folding is character by character.
    doubled = "The term \u2018\u2018corporate\u2019\u2019 is"
    assert not q.run_olmocr_check(check("present", text='term "corporate" is'), doubled)


def test_present_case_sensitivity() -> None:
    md = "MASTER BATH and laundry"
    assert not q.run_olmocr_check(check("present", text="Master Bath"), md)
    assert q.run_olmocr_check(check("present", text="Master Bath", case_sensitive=False), md)


def test_empty_output_fails_present_and_passes_absent() -> None:
    # partial_ratio alone would align the other way round and find " " inside the query.
    for md in ("", "\n", "   "):
        assert not q.run_olmocr_check(check("present", text="a long phrase"), md)
        assert q.run_olmocr_check(check("absent", text="a long phrase"), md)


def test_absent_passes_and_fails() -> None:
    md = "Body text.\n\nDownloaded from http://example.org/ on 1 May\n"
    assert not q.run_olmocr_check(check("absent", text="Downloaded from http://example.org/"), md)
    assert q.run_olmocr_check(check("absent", text="Page footer that is not there"), md)


def test_absent_last_n_looks_only_at_the_tail() -> None:
    page_number_at_end = "Some text mentioning 1 thing.\n\n" + "x" * 40 + "\n\n1\n"
    only_early = "Some text mentioning 1 thing.\n\n" + "x" * 40 + "\n"
    absent_one = check("absent", text="1", last_n=20)
    assert not q.run_olmocr_check(absent_one, page_number_at_end)
    assert q.run_olmocr_check(absent_one, only_early)
    assert q.run_olmocr_check(check("absent", text="Some", first_n=3), only_early)


# ---- order -----------------------------------------------------------------------------------


def test_order_passes_fails_and_needs_both() -> None:
    md = "Euler's Identity ... Pythagorean Theorem ... Maxwell\u2019s Equations"
    assert q.run_olmocr_check(check("order", before="Euler's Identity", after="Maxwell's"), md)
    assert not q.run_olmocr_check(check("order", before="Maxwell's", after="Euler's"), md)
    assert not q.run_olmocr_check(check("order", before="Euler's", after="Fourier"), md)
    assert not q.run_olmocr_check(check("order", before="Fourier", after="Euler's"), md)


def test_order_any_occurrence_pair_counts() -> None:
    md = "157. first 150. then 157. again"
    assert q.run_olmocr_check(check("order", before="150.", after="157."), md)
    assert not q.run_olmocr_check(check("order", before="157.", after="150.", max_diffs=0), "157.")


def test_order_max_diffs_is_levenshtein_distance() -> None:
    md = "It now looks like that with vigilnce, and later this leaves BAT to argue"
    exact = check("order", before="It now looks like that with vigilance", after="leaves BAT")
    assert not q.run_olmocr_check(exact, md)
    assert q.run_olmocr_check({**exact, "max_diffs": 1}, md)
    swapped = {
        **exact,
        "before": "leaves BAT to argue",
        "after": "It now looks like",
        "max_diffs": 2,
    }
    assert not q.run_olmocr_check(swapped, md)


def test_find_approx_starts_matches_brute_force() -> None:
    def distance(a: str, b: str) -> int:
        row = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            previous, row[0] = row[0], i
            for j, cb in enumerate(b, 1):
                previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
        return row[-1]

    rng = random.Random(7)
    for _ in range(150):
        text = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 25)))
        pattern = "".join(rng.choice("abc") for _ in range(rng.randint(2, 6)))
        k = rng.randint(0, len(pattern) // 2)
        expected = sorted(
            {
                i
                for i in range(len(text) + 1)
                for j in range(i, len(text) + 1)
                if distance(pattern, text[i:j]) <= k
            }
        )
        assert sorted(set(q.find_approx_starts(pattern, text, k))) == expected, (pattern, text, k)


# ---- tables ----------------------------------------------------------------------------------

PIPE = """
Intro text.

| Source | Type | Tokens |
|---|---|---|
| DCLM | Web pages | 3.71T |
| **arXiv** | Papers<br> | 12.2B |
| Algebraic Stack | Math proofs code | 11.8B |

After.
"""


def test_table_cell_alone() -> None:
    assert q.run_olmocr_check(check("table", cell="Web pages"), PIPE)
    assert q.run_olmocr_check(check("table", cell="arXiv"), PIPE)  # bold dropped
    assert not q.run_olmocr_check(check("table", cell="Web"), PIPE)  # whole cell, not a part
    assert not q.run_olmocr_check(check("table", cell="Web pages"), "Web pages, no table")


def test_table_neighbours_in_pipe_table() -> None:
    assert q.run_olmocr_check(check("table", cell="12.2B", up="3.71T", down="11.8B"), PIPE)
    assert q.run_olmocr_check(check("table", cell="Papers", left="arXiv", right="12.2B"), PIPE)
    assert not q.run_olmocr_check(check("table", cell="12.2B", up="11.8B"), PIPE)
    assert not q.run_olmocr_check(check("table", cell="Papers", right="arXiv"), PIPE)
    # Every given relation must hold for the same cell.
    assert not q.run_olmocr_check(check("table", cell="12.2B", up="3.71T", down="3.71T"), PIPE)


def test_table_headings_in_pipe_table() -> None:
    # The header row and the first column are headings of a pipe table.
    assert q.run_olmocr_check(check("table", cell="11.8B", top_heading="Tokens"), PIPE)
    assert q.run_olmocr_check(
        check("table", cell="Math proofs code", left_heading="Algebraic Stack"), PIPE
    )
    assert not q.run_olmocr_check(check("table", cell="11.8B", top_heading="Type"), PIPE)
    assert not q.run_olmocr_check(check("table", cell="11.8B", left_heading="DCLM"), PIPE)


HTML = """
<table>
  <thead>
    <tr><th rowspan="2">Item</th><th colspan="2">Year Ended</th></tr>
    <tr><th>Jan 26, 2025</th><th>Jan 28, 2024</th></tr>
  </thead>
  <tbody>
    <tr><td>Research and development</td><td>3,423</td><td>2,532</td></tr>
    <tr><td>Sales, general and<br/>administrative</td><td>1,136</td><td>876</td></tr>
  </tbody>
</table>
"""


def test_table_neighbours_in_html_table_with_spans() -> None:
    assert q.run_olmocr_check(check("table", cell="1,136", up="3,423", right="876"), HTML)
    assert q.run_olmocr_check(check("table", cell="876", left="1,136", up="2,532"), HTML)
    assert q.run_olmocr_check(check("table", cell="3,423", down="1,136"), HTML)
    # The colspan cell sits above both date cells.
    assert q.run_olmocr_check(check("table", cell="Jan 28, 2024", up="Year Ended"), HTML)
    assert q.run_olmocr_check(check("table", cell="Year Ended", down="Jan 26, 2025"), HTML)
    # <br> inside a cell reads as a space.
    assert q.run_olmocr_check(
        check("table", cell="Sales, general and administrative", right="1,136"), HTML
    )
    assert not q.run_olmocr_check(check("table", cell="1,136", left="3,423"), HTML)


def test_table_headings_in_html_table() -> None:
    # Walking up from 1,136 meets both header rows, so either counts as its top heading.
    assert q.run_olmocr_check(check("table", cell="1,136", top_heading="Year Ended"), HTML)
    assert q.run_olmocr_check(check("table", cell="1,136", top_heading="Jan 26, 2025"), HTML)
    assert not q.run_olmocr_check(check("table", cell="1,136", top_heading="Jan 28, 2024"), HTML)
    # No <th> to the left in body rows: the left edge cell is the left heading.
    assert q.run_olmocr_check(
        check("table", cell="2,532", left_heading="Research and development"), HTML
    )
    assert not q.run_olmocr_check(check("table", cell="2,532", left_heading="Item"), HTML)


def test_table_cell_max_diffs() -> None:
    assert not q.run_olmocr_check(check("table", cell="Web pagez"), PIPE)
    assert q.run_olmocr_check(check("table", cell="Web pagez", max_diffs=2), PIPE)


# ---- math and blank pages --------------------------------------------------------------------


def test_math_is_presence_without_whitespace() -> None:
    md = "Euler: $$ e^{i\\pi} + 1 = 0 $$ and more"
    assert q.run_olmocr_check(check("math", math="e^{i \\pi}+1=0"), md)
    assert not q.run_olmocr_check(check("math", math="a^{2}+b^{2}=c^{2}"), md)
    # Subscript underscores are not mistaken for emphasis.
    assert q.run_olmocr_check(
        check("math", math="\\lambda_{g}=\\lambda_{g^{\\prime}}"),
        "\\( \\lambda_{g} = \\lambda_{g^{\\prime}} \\)",
    )


def test_blank_page_check() -> None:
    blank = {"pdf": "b.pdf", "page": 1, "id": "blank", "type": "baseline", "max_length": 10}
    assert q.run_olmocr_check(blank, "")
    assert q.run_olmocr_check(blank, "\n\n- 12 -\n<!-- -->\n")
    assert not q.run_olmocr_check(blank, "Eleven chars")


def test_unknown_check_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown check type"):
        q.run_olmocr_check(check("footnote", marker="1"), "text")


# ---- docling metrics -------------------------------------------------------------------------


def test_text_similarity_ignores_markup_but_not_words() -> None:
    truth = "## Intro\n\nSome *text* here.\n\n| a | b |\n| - | - |\n| 1 | 2 |\n"
    same_words = "# **Intro**\n\nSome text here.\n\n|a|b|\n|---|---|\n|1|2|\n"
    assert q.text_similarity(same_words, truth) == 1.0
    assert 0.5 < q.text_similarity("Intro Some text there. a b 1 2", truth) < 1.0
    assert q.text_similarity("", truth) == 0.0
    assert q.text_similarity("", "") == 1.0


def test_headings_extraction() -> None:
    md = (
        "# **1 Introduction**\n\ntext # not a heading\n\n```\n# code comment\n```\n"
        "###### Deep <sup>2</sup> ##\n#NoSpace\n"
    )
    assert q.headings(md) == ["1 Introduction", "Deep 2"]


def test_heading_prf_known_case() -> None:
    truth = "# Introduction\n\n## Related Work\n\n## Method\n\n## Conclusion\n"
    # "Related Works" matches "Related Work" fuzzily (ratio 0.96); "Results" matches nothing;
    # the second "Introduction" cannot reuse the true one (one-to-one).
    pred = "# Introduction\n\n## Introduction\n\n## Related Works\n\n## Results\n"
    precision, recall, f1 = q.heading_prf(pred, truth)
    assert precision == pytest.approx(2 / 4)
    assert recall == pytest.approx(2 / 4)
    assert f1 == pytest.approx(0.5)
    assert q.heading_prf(truth, truth) == (1.0, 1.0, 1.0)
    assert q.heading_prf("no headings", "none here either") == (1.0, 1.0, 1.0)
    assert q.heading_prf("no headings", truth) == (0.0, 0.0, 0.0)
    assert q.heading_prf("# Methods", "# Method\n## Results") == pytest.approx((1.0, 0.5, 2 / 3))


def test_table_cells_and_cell_f1() -> None:
    truth = "| Name | Score |\n| - | - |\n| Ann | 1 |\n| Bob | 1 |\n"
    assert sorted(q.table_cells(truth)) == ["1", "1", "Ann", "Bob", "Name", "Score"]
    pred_html = (
        "<table><tr><th>Name</th><th>Score</th></tr>"
        "<tr><td>Ann</td><td>1</td></tr><tr><td>Bo b</td><td></td></tr></table>"
    )
    # Predicted cells: Name, Score, Ann, 1, "Bo b" (the empty cell is left out): 4 of 5 match,
    # and the truth's second "1" is not matched twice (multisets).
    assert sorted(q.table_cells(pred_html)) == ["1", "Ann", "Bo b", "Name", "Score"]
    precision, recall = 4 / 5, 4 / 6
    assert q.table_cell_f1(pred_html, truth) == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    assert q.table_cell_f1(truth, truth) == 1.0
    assert q.table_cell_f1("no tables", "none") == 1.0
    assert q.table_cell_f1("no tables", truth) == 0.0
    # Pipes in running text, without a delimiter row, are not a table for this metric.
    assert q.table_cells("a | b\nc | d\n") == []


# ---- the real corpus -------------------------------------------------------------------------

CORPUS_ONLY = pytest.mark.skipif(
    not SHARED_CORPUS.is_dir(),
    reason=f"the evaluation corpus is not at {SHARED_CORPUS} (set SIR_CONVERT_CORPUS)",
)


@CORPUS_ONLY
def test_score_ground_truth_fed_back_is_perfect(tmp_path: Path) -> None:
    truth_dir = SHARED_CORPUS / "docling" / "pdf"
    out = tmp_path / "md" / "docling" / "pdf"
    out.mkdir(parents=True)
    for name in ("2305.03393v1-pg9", "multi_page"):  # tables and headings; headings only
        shutil.copy(truth_dir / f"{name}.md", out / f"{name}.md")

    result = q.score(tmp_path / "md", SHARED_CORPUS)

    documents = result["docling"]["documents"]
    for name in ("2305.03393v1-pg9", "multi_page"):
        doc = documents[name]
        assert doc["missing"] is False
        assert doc["text_similarity"] == 1.0
        assert doc["heading_f1"] == 1.0
        assert doc["table_cell_f1"] == 1.0
    assert documents["2305.03393v1-pg9"]["table_cells_truth"] > 0
    assert documents["multi_page"]["headings_truth"] > 0
    # The other documents have no Markdown: scored as empty and listed as missing.
    assert documents["right_to_left_01"]["missing"] is True
    assert documents["right_to_left_01"]["text_similarity"] == 0.0
    assert "docling/pdf/right_to_left_01.md" in result["missing"]
    assert "2305.03393_from_latex_source" in result["docling"]["skipped"]
    assert "2206.01062" not in documents

    # No olmOCR Markdown at all: every present/order/table check fails, every absent passes.
    totals = result["olmocr"]["totals"]
    assert totals["present"] == {"passed": 0, "total": 30}
    assert totals["absent"] == {"passed": 24, "total": 24}
    assert totals["order"] == {"passed": 0, "total": 13}
    assert totals["table"]["passed"] == 0
    assert totals["math"]["passed"] == 0
    assert totals["blanks"] == {"passed": 1, "total": 1}
    assert (
        "olmocr/bench_sample/pdfs/headers_footers/ff0f0b22c55d8b90dd77d153f48e144fc9db_pg2.md"
        in (result["missing"])
    )
    assert all(c["missing"] for c in result["olmocr"]["checks"])


@CORPUS_ONLY
def test_cli_writes_sorted_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "md").mkdir()
    output = tmp_path / "out.json"
    argv = ["--markdown-dir", str(tmp_path / "md"), "--corpus", str(SHARED_CORPUS)]
    assert q.main([*argv, "--output", str(output), "--label", "empty"]) == 0
    text = output.read_text(encoding="utf-8")
    result = json.loads(text)
    assert result["label"] == "empty"
    assert text == json.dumps(result, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert "present" in capsys.readouterr().out
