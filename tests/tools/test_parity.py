"""The parity tool's judgement: which files count as differences, and where two outputs first
part."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import parity


def test_the_first_differing_line_is_named_with_both_versions() -> None:
    assert parity.first_difference(b"# A\n\nsame\n", b"# A\n\nsame\n") is None
    found = parity.first_difference(b"# A\n\nours\nend\n", b"# A\n\ntheirs\nend\n")
    assert found == {"line": 3, "daemon": "ours", "docling": "theirs"}
    shorter = parity.first_difference(b"one\ntwo", b"one\ntwo\nthree")
    assert shorter == {"line": 3, "daemon": None, "docling": "three"}


def test_the_first_differing_byte_of_the_json_is_named_with_what_surrounds_it() -> None:
    assert parity.first_byte_difference(b'{"a":1}', b'{"a":1}') is None
    found = parity.first_byte_difference(b'{"name":"document-3"}', b'{"name":"document-2"}')
    assert found == {
        "offset": 18,
        "daemon": '{"name":"document-3"}',
        "docling": '{"name":"document-2"}',
    }
    ended = parity.first_byte_difference(b"ab", b"abc")
    assert ended == {"offset": 2, "daemon": "ab", "docling": "abc"}


def test_only_a_different_output_or_a_daemon_only_failure_counts_as_a_difference(
    tmp_path: Path,
) -> None:
    same, other, lossless = tmp_path / "same.md", tmp_path / "other.md", tmp_path / "doc.json"
    same.write_bytes(b"text\n")
    other.write_bytes(b"text \n")
    lossless.write_bytes(b"{}")
    converted = {"status": "converted", "markdown": str(same), "docling_json": str(lossless)}
    docling = {"status": "success", "markdown": str(same), "docling_json": str(lossless)}
    encrypted = {"status": "failed", "error_code": "pdf_encrypted"}
    crashed = {"status": "failed", "error_code": "worker_crashed"}
    docling_failed = {"status": "failure", "errors": ["docling-parse could not load"]}
    assert parity.verdict(converted, docling) == ("identical", {})
    assert parity.verdict(converted, {**docling, "markdown": str(other)}) == (
        "different",
        {"markdown": {"line": 1, "daemon": "text", "docling": "text "}},
    )
    json_differs = parity.verdict(converted, {**docling, "docling_json": str(same)})
    assert json_differs[0] == "different" and list(json_differs[1]) == ["docling_json"]
    drifted = tmp_path / "drifted.json"
    lossless.write_bytes(b'{"bbox": {"l": 363.375, "t": 10}, "text": "a"}')
    drifted.write_bytes(b'{"bbox": {"l": 363.3750305175781, "t": 10}, "text": "a"}')
    noise = parity.verdict(converted, {**docling, "docling_json": str(drifted)})
    assert noise[0] == "float_noise"
    assert noise[1]["docling_json"]["max_drift"] == pytest.approx(3.05e-5, rel=1e-2)
    assert parity.verdict(encrypted, docling)[0] == "refused_by_contract"
    assert parity.verdict(converted, docling_failed)[0] == "docling_failed"
    assert parity.verdict(crashed, docling)[0] == "daemon_failed"
    rows = [{"verdict": v} for v in ("identical", "refused_by_contract", "docling_failed")]
    different = {"verdict": "different", "first_difference": {"docling_json": {}}}
    assert parity.summary([*rows, different, {"verdict": "daemon_failed"}]) == {
        "files": 5,
        "compared": 2,
        "differences": 2,
        "markdown_different": 0,
        "docling_json_different": 1,
        "identical": 1,
        "different": 1,
        "refused_by_contract": 1,
        "docling_failed": 1,
        "daemon_failed": 1,
    }


def test_json_that_differs_in_more_than_numbers_has_no_drift() -> None:
    assert parity.numeric_drift({"a": [1.0, 2.5]}, {"a": [1.0, 2.5001]}) == pytest.approx(1e-4)
    assert parity.numeric_drift({"a": 1}, {"b": 1}) is None
    assert parity.numeric_drift([1, 2], [1, 2, 3]) is None
    assert parity.numeric_drift({"text": "x"}, {"text": "y"}) is None
    assert parity.numeric_drift({"flag": True}, {"flag": 1}) is None
