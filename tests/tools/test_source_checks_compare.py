"""The comparison of claim-time answers between two checkouts: a snapshot records each file's
answer, and the diff names every PDF whose answer changed."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.documents import docx_bytes
from harness.pdfs import pdf_bytes
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import source_checks_compare


def test_a_snapshot_records_each_answer_and_the_diff_names_changed_pdfs(tmp_path: Path) -> None:
    (tmp_path / "good.pdf").write_bytes(pdf_bytes())
    (tmp_path / "letter.docx").write_bytes(docx_bytes())
    (tmp_path / "notes.txt").write_text("x")
    before = source_checks_compare.snapshot([tmp_path])
    assert before[str(tmp_path / "good.pdf")][0] == "ok"
    assert before[str(tmp_path / "notes.txt")][1]["reason"] == "format_not_accepted"

    after = dict(before)
    after[str(tmp_path / "good.pdf")] = ["pdf_unreadable", {"reason": "x"}, "..."]
    report = source_checks_compare.diff(before, after)
    assert report["changed_pdfs"] == [str(tmp_path / "good.pdf")]
    assert report["changes"] == {"ok -> pdf_unreadable (x)": 1}
    assert source_checks_compare.diff(before, before)["changed"] == 0
