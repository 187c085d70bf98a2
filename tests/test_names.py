"""File names from untrusted writers: what is ignored, how names are shown and kept exactly."""

from __future__ import annotations

import base64
import json
import os
import unicodedata

import pytest

from sir_convert_a_lot.names import (
    collision_key,
    decode_from_record,
    display,
    encode_for_record,
    is_ignored_name,
    is_ignored_path,
    is_valid_utf8,
    json_name,
    split_suffix,
)

NON_UTF8 = os.fsdecode(b"caf\xe9.pdf")  # Latin-1 "café.pdf" from an old Samba client


# --- ignore rules (CONTRACT 3.2) -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.pdf",
        ".DS_Store",
        "report.pdf.part",
        "report.part",
        "upload.tmp",
        "report.pdf.crdownload",
        "~$report.pdf",
        ".~lock.report.odt#",
        "Thumbs.db",
        "desktop.ini",
        "._report.pdf",
        "@eaDir",
    ],
)
def test_names_left_by_writers_are_ignored(name: str) -> None:
    assert is_ignored_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        "Report.PDF",
        "part.pdf",
        "tmp report.pdf",
        "notes.tmp.pdf",
        "a~$b.pdf",
        "my.report.pdf",
        "eaDir.pdf",
        "Thumbs.db.pdf",
    ],
)
def test_ordinary_names_are_not_ignored(name: str) -> None:
    assert not is_ignored_name(name)


def test_extra_globs_ignore_matching_names_only() -> None:
    globs = ["*.bak", "draft-*"]

    assert is_ignored_name("old.bak", globs)
    assert is_ignored_name("draft-minutes.pdf", globs)
    assert not is_ignored_name("minutes.pdf", globs)


@pytest.mark.parametrize(
    "parts",
    [
        ("@eaDir", "report.pdf"),
        ("scans", "@eaDir", "report.pdf@SynoEAStream"),
        (".git", "objects", "x.pdf"),
        ("scans", "report.pdf.part"),
        ("scans", ".hidden", "report.pdf"),
    ],
)
def test_a_path_with_an_ignored_component_is_ignored(parts: tuple[str, ...]) -> None:
    assert is_ignored_path(parts)


def test_an_ordinary_nested_path_is_not_ignored() -> None:
    assert not is_ignored_path(("scans", "2024", "report.pdf"))


def test_extra_globs_match_components_and_whole_relative_paths() -> None:
    globs = ["private/*", "*/drafts/*.pdf", "*.bak"]

    assert is_ignored_path(("private", "salary.pdf"), globs)
    assert is_ignored_path(("team", "drafts", "plan.pdf"), globs)
    assert is_ignored_path(("team", "old.bak"), globs)
    assert not is_ignored_path(("team", "plan.pdf"), globs)
    assert not is_ignored_path(("public", "salary.pdf"), globs)


# --- display: one printable line -------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


@pytest.mark.parametrize(
    ("name", "must_contain"),
    [
        ("two\nlines.pdf", "\\n"),
        ("tab\there.pdf", "\\t"),
        ("esc\x1b[31mred.pdf", "\\u001b"),
        ("del\x7f.pdf", "\\u007f"),
        ("c1\x85next.pdf", "\\u0085"),
        ("csi\x9b.pdf", "\\u009b"),
        ("back\\slash.pdf", "\\\\"),
        ("cr\rreturn.pdf", "\\r"),
        (NON_UTF8, "\\xe9"),
    ],
)
def test_display_escapes_what_a_terminal_would_interpret(name: str, must_contain: str) -> None:
    shown = display(name)

    assert must_contain in shown
    assert not _has_control(shown)
    assert "\n" not in shown
    shown.encode("utf-8")  # printable in a UTF-8 log line without surrogates


def test_display_keeps_readable_unicode_as_is() -> None:
    assert display("Ärger über café – 日本.pdf") == "Ärger über café – 日本.pdf"


def test_display_of_different_names_differs() -> None:
    # A literal backslash sequence must not look like an escaped control character.
    assert display("a\\nb.pdf") != display("a\nb.pdf")
    assert display("caf\\xe9.pdf") != display(NON_UTF8)


# --- json_name and record encoding -----------------------------------------------------------


def test_json_name_of_a_utf8_name_has_no_b64() -> None:
    assert json_name("café.pdf", "filename") == {"filename": "café.pdf"}


def test_json_name_of_a_non_utf8_name_carries_the_exact_bytes() -> None:
    fields = json_name(NON_UTF8, "filename")

    assert set(fields) == {"filename", "filename_b64"}
    assert base64.b64decode(fields["filename_b64"]) == b"caf\xe9.pdf"
    assert "\\xe9" in fields["filename"]
    json.dumps(fields, ensure_ascii=False).encode("utf-8")  # serialisable as UTF-8 JSON


def test_is_valid_utf8() -> None:
    assert is_valid_utf8("café.pdf")
    assert not is_valid_utf8(NON_UTF8)


@pytest.mark.parametrize(
    "raw",
    [
        b"caf\xe9.pdf",
        b"\xff\xfe\x02\x01.pdf",
        "Ärger/über.pdf".encode(),
        b"line\nbreak\x1b.pdf",
        bytes(range(1, 256)).replace(b"/", b""),
        b"",
    ],
)
def test_record_encoding_round_trips_the_exact_bytes(raw: bytes) -> None:
    name = os.fsdecode(raw)

    record = encode_for_record(name)

    assert record.isascii()
    assert decode_from_record(record) == name
    assert os.fsencode(decode_from_record(record)) == raw


# --- collisions and suffixes -----------------------------------------------------------------


def test_collision_key_ignores_case() -> None:
    assert collision_key("Report.PDF") == collision_key("report.pdf")


def test_collision_key_treats_nfc_and_nfd_as_equal() -> None:
    composed = unicodedata.normalize("NFC", "résumé.md")
    decomposed = unicodedata.normalize("NFD", "résumé.md")
    assert composed != decomposed

    assert collision_key(composed) == collision_key(decomposed)
    assert collision_key("RÉSUMÉ.md") == collision_key(decomposed)


def test_collision_key_tells_different_names_apart() -> None:
    assert collision_key("report.md") != collision_key("report (2).md")
    assert collision_key("resume.md") != collision_key("résumé.md")


def test_collision_key_never_fails_on_non_utf8_names() -> None:
    assert collision_key(NON_UTF8) == collision_key(os.fsdecode(b"CAF\xe9.PDF"))
    assert collision_key(NON_UTF8) != collision_key("café.pdf")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", ("report", ".pdf")),
        ("a.PDF", ("a", ".PDF")),
        ("my.report.v2.pdf", ("my.report.v2", ".pdf")),
        ("noext", ("noext", "")),
        (".pdf", (".pdf", "")),
        ("trailing.", ("trailing", ".")),
    ],
)
def test_split_suffix(name: str, expected: tuple[str, str]) -> None:
    assert split_suffix(name) == expected
