"""The Markdown post-processing levels: none, standard, strict."""

from __future__ import annotations

import unicodedata

import pytest

from sir_convert_a_lot.normalize import normalize

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
