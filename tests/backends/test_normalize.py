"""The Markdown post-processing levels: none, standard, strict."""

from __future__ import annotations

import unicodedata

import pytest

from sir_convert_a_lot.backends.normalize import normalize

MESSY = "Intro\ufb01  \n\n\n\n* item\n\n\n| a | b |\n|---|---|\n"


# --- none ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "markdown",
    [MESSY, "", "\n\n\n", "e\u0301  \n##Title##\n+ x", "```\n\ufb01\n\n\n```"],
)
def test_none_returns_the_input_unchanged(markdown: str) -> None:
    result = normalize(markdown, "none")

    assert result.markdown == markdown
    assert result.warnings == ()


# --- standard --------------------------------------------------------------------------------


def test_standard_expands_ligatures_and_counts_them() -> None:
    result = normalize("\ufb01ne \ufb02ow\n\ufb03ce\n", "standard")

    assert result.markdown == "fine flow\nffice\n"
    assert "normalize_expanded_ligatures:3" in result.warnings


def test_standard_composes_nfd_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "Résumé of café\n")

    result = normalize(decomposed, "standard")

    assert result.markdown == unicodedata.normalize("NFC", "Résumé of café\n")
    assert unicodedata.is_normalized("NFC", result.markdown)


def test_standard_collapses_blank_line_runs_to_one() -> None:
    result = normalize("one\n\n\n\n\ntwo\n\nthree\n", "standard")

    assert result.markdown == "one\n\ntwo\n\nthree\n"
    assert any(w.startswith("normalize_collapsed_blank_lines:") for w in result.warnings)


def test_standard_treats_whitespace_only_lines_as_blank() -> None:
    result = normalize("one\n  \n\t\n   \ntwo\n", "standard")

    assert result.markdown == "one\n\ntwo\n"


def test_standard_strips_trailing_spaces() -> None:
    result = normalize("one   \ntwo\t\nthree\n", "standard")

    assert result.markdown == "one\ntwo\nthree\n"


def test_standard_ends_with_exactly_one_newline() -> None:
    assert normalize("\n\ntext", "standard").markdown == "text\n"
    assert normalize("text\n\n\n", "standard").markdown == "text\n"


def test_standard_of_nothing_is_nothing() -> None:
    assert normalize("", "standard").markdown == ""
    assert normalize("\n \n\n", "standard").markdown == ""


def test_standard_never_alters_fenced_code() -> None:
    code = "```python\nx = '\ufb01'   \n\n\n\ny = 'e\u0301'\n```"
    markdown = f"Before \ufb01\n\n{code}\n\nafter\n"

    result = normalize(markdown, "standard")

    assert result.markdown == f"Before fi\n\n{code}\n\nafter\n"
    assert "normalize_expanded_ligatures:1" in result.warnings


def test_standard_never_alters_tilde_fenced_code() -> None:
    code = "~~~\n\ufb02   \n\n\n~~~"

    result = normalize(f"{code}\n", "standard")

    assert result.markdown == f"{code}\n"
    assert result.warnings == ()


@pytest.mark.parametrize(
    "code",
    [
        # A ``` block that shows a ~~~ line: only a ``` fence closes it.
        "```\nsee ~~~ below\n~~~\n\ufb01   \n\n\n\nend\n```",
        # A ```` block that shows a ``` example: only a fence of four or more closes it.
        "````markdown\n```\n\ufb01   \n\n\n\n```\n````",
    ],
    ids=["tilde-inside-backticks", "short-fence-inside-long-fence"],
)
def test_standard_never_alters_a_code_block_showing_another_fence(code: str) -> None:
    result = normalize(f"Example:\n\n{code}\n", "standard")

    assert result.markdown == f"Example:\n\n{code}\n"


def test_standard_keeps_tables() -> None:
    table = "| Name | Value |\n|------|------:|\n| alpha | 1 |\n| beta | 2 |\n"

    result = normalize(f"# Data\n\n{table}", "standard")

    assert result.markdown == f"# Data\n\n{table}"


def test_standard_leaves_clean_markdown_alone_without_warnings() -> None:
    clean = "# Title\n\nA paragraph with **bold** text.\n\n- one\n- two\n"

    result = normalize(clean, "standard")

    assert result.markdown == clean
    assert result.warnings == ()


def test_standard_does_not_rewrite_markup() -> None:
    markdown = "##Title##\n\n* item\n+ other\n"

    assert normalize(markdown, "standard").markdown == markdown


# --- strict ----------------------------------------------------------------------------------


def test_strict_rewrites_star_and_plus_bullets_as_dashes() -> None:
    result = normalize("* one\n+ two\n  * nested\n- three\n", "strict")

    assert result.markdown == "- one\n- two\n  - nested\n- three\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("##Heading##", "## Heading"),
        ("##Heading", "## Heading"),
        ("#   Spaced   #", "# Spaced"),
        ("### Already fine", "### Already fine"),
    ],
)
def test_strict_tidies_atx_headings(line: str, expected: str) -> None:
    assert normalize(f"{line}\n", "strict").markdown == f"{expected}\n"


@pytest.mark.parametrize(
    "line", ["**bold**", "**bold** and more", "*emphasis* first", "+1 for this", "*"]
)
def test_strict_leaves_emphasis_and_non_list_lines_alone(line: str) -> None:
    assert normalize(f"{line}\n", "strict").markdown == f"{line}\n"


@pytest.mark.parametrize("rule", ["* * *", "***", "*  *  *"])
def test_strict_leaves_thematic_breaks_alone(rule: str) -> None:
    # "* * *" is a horizontal rule, not a list item; rewriting it would change the document.
    markdown = f"Part one\n\n{rule}\n\nPart two\n"

    assert normalize(markdown, "strict").markdown == markdown


def test_strict_also_does_everything_standard_does() -> None:
    result = normalize("\ufb01rst  \n\n\n\n* item\n", "strict")

    assert result.markdown == "first\n\n- item\n"


def test_strict_never_alters_fenced_code() -> None:
    code = "```\n* not a list\n##not a heading##\n```"

    assert normalize(f"{code}\n", "strict").markdown == f"{code}\n"


def test_strict_reports_what_it_changed() -> None:
    result = normalize("##Heading##\n* item\n", "strict")

    assert result.warnings
    assert all(w.startswith("normalize_") for w in result.warnings)


# -- page furniture, hyphenation and odd forms (standard) ------------------------------------


def test_standard_removes_layout_labelled_furniture_and_counts_it() -> None:
    pages = ["ACME Quarterly\n\nFirst page text.\n", "ACME Quarterly\n\nSecond page text.\n"]
    furniture = [("ACME Quarterly",), ("ACME Quarterly",)]
    result = normalize("".join(pages), "standard", pages=pages, furniture=furniture)
    assert "ACME" not in result.markdown
    assert "First page text." in result.markdown and "Second page text." in result.markdown
    assert "normalize_removed_page_furniture:2" in result.warnings
    untouched = normalize("".join(pages), "none", pages=pages, furniture=furniture)
    assert untouched.markdown == "".join(pages)


def test_standard_removes_running_lines_repeated_on_most_pages_digits_counted_as_one() -> None:
    bodies = ["Alpha begins.", "Beta follows.", "Gamma goes on.", "Delta ends."]
    pages = [f"Annual Report 2026\n\n{body}\n\nPage {n} of 4\n" for n, body in enumerate(bodies, 1)]
    result = normalize("".join(pages), "standard", pages=pages)
    assert "Annual Report" not in result.markdown
    assert "Page " not in result.markdown
    assert all(body in result.markdown for body in bodies)
    assert "normalize_removed_page_furniture:8" in result.warnings


def test_a_line_that_occurs_once_and_is_not_furniture_stays() -> None:
    pages = [
        "Running head\n\nA sentence that appears once.\n",
        "Running head\n\nAnother one.\n",
        "Running head\n\nAnd a third.\n",
    ]
    result = normalize("".join(pages), "standard", pages=pages)
    assert "Running head" not in result.markdown
    for line in ("A sentence that appears once.", "Another one.", "And a third."):
        assert line in result.markdown


def test_repeated_lines_inside_the_page_and_headings_are_never_removed() -> None:
    pages = [
        f"# Chapter heading\n\nopening {w}\n\nsecond {w}\n\nthird {w}\n\n"
        f"repeated middle sentence\n\nfourth {w}\n\nfifth {w}\n\nclosing {w}\n"
        for w in ("one", "two", "three", "four")
    ]
    result = normalize("".join(pages), "standard", pages=pages)
    assert result.markdown.count("# Chapter heading") == 4
    assert result.markdown.count("repeated middle sentence") == 4


def test_bare_page_numbers_at_a_page_edge_go_but_numbers_in_text_stay() -> None:
    pages = ["Text with 42 in it.\n\n7\n", "More text.\n\nxii\n"]
    result = normalize("".join(pages), "standard", pages=pages)
    assert "42" in result.markdown
    assert "\n7\n" not in "\n" + result.markdown
    assert "xii" not in result.markdown


def test_hyphenated_line_breaks_join_as_the_document_spells_the_word() -> None:
    text = "An exam-\nple here, another example there.\nA self-\nlocking nut."
    result = normalize(text, "standard")
    assert "An example here" in result.markdown
    assert "A self-locking nut." in result.markdown
    assert "normalize_joined_hyphenated_words:2" in result.warnings


def test_tex_spacing_accents_doubled_quotes_soft_hyphens_are_normalised() -> None:
    text = (
        "Thanks to J\u00b4an Min\u00b4a\u02c7c. "
        "The \u2018\u2018term\u2019\u2019 is co\u00adoperative."
    )
    result = normalize(text, "standard")
    assert (
        result.markdown
        == "Thanks to J\u00e1n Min\u00e1\u010d. The \u201cterm\u201d is cooperative.\n"
    )
    assert "normalize_composed_spacing_accents:3" in result.warnings
    # an acute used as an apostrophe is not an accent
    assert normalize("don\u00b4t", "standard").markdown == "don\u00b4t\n"


def test_tables_and_display_formulas_are_never_altered() -> None:
    text = "| \ufb01 |  a  |\n|---|---|\n| x-\n\n$$\n\\ufb01 = 1\n$$\nbody \ufb01\n"
    result = normalize(text, "standard")
    assert "| \ufb01 |  a  |" in result.markdown
    assert "body fi" in result.markdown


def test_strict_reflows_paragraphs_onto_one_line() -> None:
    text = "first line\nsecond line\n\n- item one\n- item two\n\n## Heading ##\n"
    result = normalize(text, "strict")
    assert "first line second line" in result.markdown
    assert "- item one\n- item two" in result.markdown
    assert "## Heading\n" in result.markdown
    assert "normalize_reflowed_paragraphs:1" in result.warnings


def test_a_page_that_would_be_left_empty_keeps_its_lines() -> None:
    pages = ["A one-line note at the top of the page.\n"]
    furniture = [("A one-line note at the top of the page.",)]
    result = normalize(pages[0], "standard", pages=pages, furniture=furniture)
    assert result.markdown == "A one-line note at the top of the page.\n"
    assert result.warnings == ()
