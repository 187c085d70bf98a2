"""Placing committed outputs: each staged member is moved once, in order, and nothing is replaced
(``jobs.placing``); the stage is per job and holder, and discarding it removes only it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sir_convert_a_lot.jobs.placing import discard, fresh_stage, place, stage_name, taken
from sir_convert_a_lot.jobs.publish import write_outputs, write_pictures
from sir_convert_a_lot.sharefs import ShareDir

JOB = "job_0123456789abcdef0123456789abcdef"
MEMBERS = ("report_artifacts", "report.md", "report.json")


def _staged(outbox: Path, instance: str = "alpha") -> str:
    """A committed-looking stage holding a picture, the Markdown and the sidecar."""
    name = stage_name(JOB, instance)
    stage = fresh_stage(ShareDir(outbox), name)
    write_pictures(stage, "report", JOB, (("picture-0001.png", b"png"),))
    write_outputs(stage, "report", JOB, [(".md", b"# md\n"), (".json", b"{}\n")])
    return name


def test_a_stage_is_hidden_private_and_named_by_job_and_instance(tmp_path: Path) -> None:
    name = _staged(tmp_path)
    assert name.startswith(".sca-tmp-" + JOB) and name.endswith("-alpha.stage")
    assert os.stat(tmp_path / name).st_mode & 0o777 == 0o700
    assert stage_name(JOB, "beta") != name


def test_place_moves_every_member_and_removes_the_stage(tmp_path: Path) -> None:
    name = _staged(tmp_path)
    assert place(ShareDir(tmp_path), name, MEMBERS, False, "report.pdf") == []
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md", "report_artifacts"]
    assert os.listdir(tmp_path / "report_artifacts") == ["picture-0001.png"]
    assert (tmp_path / "report.md").read_bytes() == b"# md\n"


def test_a_second_finisher_after_the_first_places_nothing_twice(tmp_path: Path) -> None:
    """Two holders finishing one committed job (the stale one woke after its commit)."""
    name = _staged(tmp_path)
    os.rename(tmp_path / name / "report.md", tmp_path / "report.md")  # the first got this far
    first_inode = os.stat(tmp_path / "report.md").st_ino
    assert place(ShareDir(tmp_path), name, MEMBERS, False, "report.pdf") == []
    assert place(ShareDir(tmp_path), name, MEMBERS, False, "report.pdf") == []
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md", "report_artifacts"]
    assert os.stat(tmp_path / "report.md").st_ino == first_inode


def test_a_name_taken_after_the_commit_is_never_replaced(tmp_path: Path) -> None:
    name = _staged(tmp_path)
    (tmp_path / "report.md").write_bytes(b"someone else's")
    renamed = place(ShareDir(tmp_path), name, MEMBERS, False, "report.pdf")
    assert renamed == ["report (2).md"]
    assert (tmp_path / "report.md").read_bytes() == b"someone else's"
    assert (tmp_path / "report (2).md").read_bytes() == b"# md\n"


def test_replace_mode_replaces_and_drops_pictures_the_new_result_lacks(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_bytes(b"old")
    (tmp_path / "report_artifacts").mkdir()
    (tmp_path / "report_artifacts" / "picture-0009.png").write_bytes(b"old picture")
    (tmp_path / "report_artifacts" / "notes.txt").write_bytes(b"not ours")
    name = _staged(tmp_path)
    place(ShareDir(tmp_path), name, MEMBERS, True, "report.pdf")
    assert (tmp_path / "report.md").read_bytes() == b"# md\n"
    pictures = sorted(os.listdir(tmp_path / "report_artifacts"))
    assert pictures == ["notes.txt", "picture-0001.png"]
    assert not (tmp_path / name).exists()


def test_an_earlier_error_envelope_of_the_same_source_is_superseded(tmp_path: Path) -> None:
    earlier = {"source": {"relative_path": "report.pdf"}}
    (tmp_path / "report.error.json").write_text(json.dumps(earlier), encoding="utf-8")
    name = stage_name(JOB, "alpha")
    stage = fresh_stage(ShareDir(tmp_path), name)
    write_outputs(stage, "report", JOB, [(".error.json", b'{"new": 1}')])
    assert place(ShareDir(tmp_path), name, ("report.error.json",), False, "report.pdf") == []
    assert (tmp_path / "report.error.json").read_bytes() == b'{"new": 1}'


def test_taken_compares_names_as_a_case_insensitive_client_would(tmp_path: Path) -> None:
    (tmp_path / "REPORT.md").write_bytes(b"x")
    assert taken(ShareDir(tmp_path), MEMBERS, "report.pdf") == ["REPORT.md"]


def test_discard_removes_only_that_stage(tmp_path: Path) -> None:
    mine, theirs = _staged(tmp_path, "alpha"), _staged(tmp_path, "beta")
    discard(ShareDir(tmp_path), mine)
    assert os.listdir(tmp_path) == [theirs]


def test_placing_a_stage_that_is_gone_is_a_no_op(tmp_path: Path) -> None:
    assert place(ShareDir(tmp_path), stage_name(JOB, "alpha"), MEMBERS, False, "x.pdf") == []
    assert os.listdir(tmp_path) == []
