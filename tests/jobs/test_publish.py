"""Publishing into the outbox: free names, atomic writes, redo, clean-up, no symlink escapes."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import pytest

from sir_convert_a_lot.jobs.publish import (
    ERROR,
    MARKDOWN,
    SIDECAR,
    choose_stem,
    folder_key,
    output_folder,
    remove_superseded_error,
    remove_temporaries,
    write_outputs,
    write_pictures,
)
from sir_convert_a_lot.jobs.reservations import Reservations
from sir_convert_a_lot.sharefs import ShareDir
from tests.helpers import files_under

JOB = "job_" + "a" * 32
OTHER_JOB = "job_" + "b" * 32


def _free(_folder: str, _key: str) -> bool:
    return True


def _stem(
    folder: Path, name: str = "report.pdf", relative: str = "report.pdf", **kw: object
) -> str:
    options: dict[str, object] = {"on_collision": "suffix", "reserve": _free}
    options.update(kw)
    return choose_stem(folder, name, relative, **options)  # type: ignore[arg-type]


def _error_json(path: Path, relative_path: str) -> None:
    document = {"status": "failed", "source": {"relative_path": relative_path}}
    path.write_text(json.dumps(document), encoding="utf-8")


# -- choose_stem ------------------------------------------------------------------------------


def test_choose_stem_in_an_empty_folder_is_the_source_stem(tmp_path: Path) -> None:
    assert _stem(tmp_path) == "report"


def test_choose_stem_keeps_inner_dots_and_drops_only_the_suffix(tmp_path: Path) -> None:
    assert _stem(tmp_path, "minutes.2024-01.PDF", "minutes.2024-01.PDF") == "minutes.2024-01"


def test_choose_stem_numbers_when_the_markdown_exists(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("earlier", encoding="utf-8")

    assert _stem(tmp_path) == "report (2)"
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == "earlier"


def test_choose_stem_compares_names_case_insensitively(tmp_path: Path) -> None:
    (tmp_path / "REPORT.json").write_text("{}", encoding="utf-8")

    assert _stem(tmp_path) == "report (2)"


def test_choose_stem_compares_names_after_nfc(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    (tmp_path / f"{decomposed}.md").write_text("earlier", encoding="utf-8")

    assert _stem(tmp_path, f"{composed}.pdf", f"{composed}.pdf") == f"{composed} (2)"


def test_choose_stem_skips_every_taken_number(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("1", encoding="utf-8")
    (tmp_path / "Report (2).json").write_text("{}", encoding="utf-8")
    (tmp_path / "report (3).error.json").write_text("{}", encoding="utf-8")

    assert _stem(tmp_path) == "report (4)"


def test_an_earlier_error_of_the_same_source_does_not_block(tmp_path: Path) -> None:
    _error_json(tmp_path / "report.error.json", "scans/report.pdf")

    assert _stem(tmp_path, "report.pdf", "scans/report.pdf") == "report"


def test_an_error_of_another_source_blocks(tmp_path: Path) -> None:
    _error_json(tmp_path / "report.error.json", "other/report.pdf")

    assert _stem(tmp_path, "report.pdf", "scans/report.pdf") == "report (2)"


def test_an_unreadable_error_json_blocks(tmp_path: Path) -> None:
    (tmp_path / "report.error.json").write_text("not json", encoding="utf-8")

    assert _stem(tmp_path, "report.pdf", "scans/report.pdf") == "report (2)"


def test_a_same_source_error_does_not_free_a_stem_whose_markdown_exists(tmp_path: Path) -> None:
    _error_json(tmp_path / "report.error.json", "report.pdf")
    (tmp_path / "report.md").write_text("someone else's", encoding="utf-8")

    assert _stem(tmp_path) == "report (2)"


@pytest.mark.parametrize("member", ["report.docling.json", "Report_artifacts"])
def test_a_docling_json_or_an_artifacts_folder_blocks_the_stem(tmp_path: Path, member: str) -> None:
    if member.endswith(".json"):
        (tmp_path / member).write_text("{}", encoding="utf-8")
    else:
        (tmp_path / member).mkdir()

    assert _stem(tmp_path) == "report (2)"


def test_a_long_stem_keeps_room_for_the_docling_json_only_when_it_is_written(
    tmp_path: Path,
) -> None:
    name = "x" * 240 + ".pdf"

    plain = _stem(tmp_path, name, name)
    with_json = _stem(tmp_path, name, name, longest=".docling.json")

    assert len(plain) + len(" (9999)") + len(ERROR) == 255
    assert len(with_json) + len(" (9999)") + len(".docling.json") == 255


def test_replace_returns_the_base_stem_even_when_taken(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("earlier", encoding="utf-8")
    (tmp_path / "report.json").write_text("{}", encoding="utf-8")

    assert _stem(tmp_path, on_collision="replace") == "report"


def test_a_refused_reservation_moves_on_to_the_next_number(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def reserve(folder: str, key: str) -> bool:
        asked.append((folder, key))
        return key != "report"

    assert (
        _stem(tmp_path, "Report.pdf", "Report.pdf", reserve=reserve, where="team") == "Report (2)"
    )
    assert asked == [("team", "report"), ("team", "report (2)")]


def test_a_taken_name_is_never_offered_for_reservation(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("earlier", encoding="utf-8")
    asked: list[str] = []

    def reserve(_folder: str, key: str) -> bool:
        asked.append(key)
        return True

    assert _stem(tmp_path, reserve=reserve) == "report (2)"
    assert asked == ["report (2)"]


# -- write_outputs ----------------------------------------------------------------------------


class Crash(Exception):
    """Stands in for the process being killed at this exact point."""


def killed_attempt(
    folder: Path, stem: str, job_id: str, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> list[str]:
    """Run write_outputs and let it die just before its first rename, as a SIGKILL would:
    returns the names it left behind."""
    before = set(os.listdir(folder))

    def dying_rename(*_args: object, **_kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", dying_rename)
        with pytest.raises(Crash):
            write_outputs(folder, stem, job_id, [(MARKDOWN, content)])
    return sorted(set(os.listdir(folder)) - before)


def test_write_outputs_writes_each_file_and_reports_sizes_and_digests(tmp_path: Path) -> None:
    markdown = "# Résumé\n\nText.\n".encode()
    sidecar = b'{"status": "succeeded"}\n'

    published = write_outputs(tmp_path, "report", JOB, [(MARKDOWN, markdown), (SIDECAR, sidecar)])

    assert published.stem == "report"
    assert published.paths == {MARKDOWN: tmp_path / "report.md", SIDECAR: tmp_path / "report.json"}
    assert (tmp_path / "report.md").read_bytes() == markdown
    assert (tmp_path / "report.json").read_bytes() == sidecar
    assert published.sizes == {MARKDOWN: len(markdown), SIDECAR: len(sidecar)}
    assert published.sha256 == {
        MARKDOWN: hashlib.sha256(markdown).hexdigest(),
        SIDECAR: hashlib.sha256(sidecar).hexdigest(),
    }
    # Nothing else is left in the folder: no temporary, hidden or not.
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]


def test_write_outputs_renames_hidden_temporaries_in_order_sidecar_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename
    renames: list[tuple[str, str, bool, bytes]] = []

    def recording_rename(src: str, dst: str, **kwargs: object) -> None:
        # At the moment each output appears: was the sidecar already there, and was the
        # temporary complete?
        complete = (tmp_path / str(src)).read_bytes()
        renames.append((str(src), str(dst), (tmp_path / "report.json").exists(), complete))
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", recording_rename)
    write_outputs(tmp_path, "report", JOB, [(MARKDOWN, b"# md\n"), (SIDECAR, b"{}\n")])
    monkeypatch.undo()

    assert [dst for _src, dst, _, _ in renames] == ["report.md", "report.json"]
    for src, _dst, _, _ in renames:
        assert src.startswith(".")  # hidden: the watcher and users' tools ignore it
        assert JOB in src  # one job's temporary cannot clash with another's
    assert renames[0][2] is False  # the Markdown was in place before any sidecar
    assert [content for *_, content in renames] == [b"# md\n", b"{}\n"]


def test_a_redo_with_the_same_stem_and_job_replaces_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_outputs(tmp_path, "report", JOB, [(MARKDOWN, b"first\n")])
    assert killed_attempt(tmp_path, "report", JOB, monkeypatch, b"killed\n")

    published = write_outputs(
        tmp_path, "report", JOB, [(MARKDOWN, b"second\n"), (SIDECAR, b'{"done": true}\n')]
    )

    assert (tmp_path / "report.md").read_bytes() == b"second\n"
    assert (tmp_path / "report.json").read_bytes() == b'{"done": true}\n'
    assert published.sizes[MARKDOWN] == len(b"second\n")
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]


def test_write_outputs_does_not_follow_a_symlink_planted_at_the_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    [temporary] = killed_attempt(outbox, "report", JOB, monkeypatch, b"killed\n")
    (outbox / temporary).unlink()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (outbox / temporary).symlink_to(victim)

    write_outputs(outbox, "report", JOB, [(MARKDOWN, b"# md\n")])

    assert victim.read_bytes() == b"precious"
    assert (outbox / "report.md").read_bytes() == b"# md\n"
    assert not (outbox / "report.md").is_symlink()


# -- write_pictures ---------------------------------------------------------------------------

PICTURES = (("picture-0001.png", b"one"), ("picture-0002.png", b"two"))


def test_a_redo_of_the_pictures_replaces_its_own_half_done_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dying_rename(*_args: object, **_kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", dying_rename)
        with pytest.raises(Crash):
            write_pictures(tmp_path, "report", JOB, PICTURES)
    assert files_under(tmp_path) == [f"report_artifacts/.sca-tmp-{JOB}-picture-0001.png"]

    assert remove_temporaries(tmp_path, JOB, "report") == 1
    write_pictures(tmp_path, "report", JOB, PICTURES)

    assert files_under(tmp_path) == [
        "report_artifacts/picture-0001.png",
        "report_artifacts/picture-0002.png",
    ]
    assert (tmp_path / "report_artifacts" / "picture-0002.png").read_bytes() == b"two"


def test_pictures_replacing_a_set_remove_its_other_pictures_and_nothing_else(
    tmp_path: Path,
) -> None:
    write_pictures(tmp_path, "report", JOB, PICTURES)
    (tmp_path / "report_artifacts" / "notes.txt").write_text("a user's", encoding="utf-8")

    write_pictures(tmp_path, "report", OTHER_JOB, PICTURES[:1])

    assert files_under(tmp_path) == [
        "report_artifacts/notes.txt",
        "report_artifacts/picture-0001.png",
    ]
    write_pictures(tmp_path, "memo", JOB, ())  # no pictures: no folder
    assert not (tmp_path / "memo_artifacts").exists()


def test_write_pictures_refuses_a_symlink_planted_as_the_artifacts_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "report_artifacts").symlink_to(outside)

    with pytest.raises(NotADirectoryError):
        write_pictures(outbox, "report", JOB, PICTURES)

    assert os.listdir(outside) == []


# -- clean-up ---------------------------------------------------------------------------------


def test_remove_temporaries_deletes_only_that_jobs_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = killed_attempt(tmp_path, "report", JOB, monkeypatch, b"ours")
    theirs = killed_attempt(tmp_path, "memo", OTHER_JOB, monkeypatch, b"theirs")
    assert ours and theirs
    (tmp_path / "report.md").write_bytes(b"published")
    (tmp_path / f"{JOB}.pdf").write_bytes(b"a user's file that mentions the id")

    assert remove_temporaries(tmp_path, JOB) == len(ours)

    assert sorted(os.listdir(tmp_path)) == sorted([*theirs, "report.md", f"{JOB}.pdf"])


def test_remove_temporaries_in_a_missing_folder_removes_nothing(tmp_path: Path) -> None:
    assert remove_temporaries(tmp_path / "gone", JOB) == 0


def test_remove_superseded_error_removes_a_same_source_error(tmp_path: Path) -> None:
    _error_json(tmp_path / f"report{ERROR}", "scans/report.pdf")

    assert remove_superseded_error(tmp_path, "report", "scans/report.pdf") is True
    assert not (tmp_path / f"report{ERROR}").exists()


def test_remove_superseded_error_keeps_another_sources_error(tmp_path: Path) -> None:
    _error_json(tmp_path / f"report{ERROR}", "other/report.pdf")

    assert remove_superseded_error(tmp_path, "report", "scans/report.pdf") is False
    assert (tmp_path / f"report{ERROR}").exists()


def test_remove_superseded_error_without_an_error_is_a_no_op(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_bytes(b"published")

    assert remove_superseded_error(tmp_path, "report", "report.pdf") is False
    assert files_under(tmp_path) == ["report.md"]


# -- output_folder ----------------------------------------------------------------------------


def test_output_folder_creates_nested_real_folders(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    folder = output_folder(outbox, ("scans", "2024", "march"))

    assert folder.path == outbox / "scans" / "2024" / "march"
    assert folder.path.is_dir()
    assert output_folder(outbox, ("scans", "2024", "march")) == folder  # again: no error


@pytest.mark.parametrize("depth", [0, 1], ids=["first-level", "second-level"])
def test_output_folder_refuses_a_planted_symlink_to_a_folder_outside(
    tmp_path: Path, depth: int
) -> None:
    outbox = tmp_path / "outbox"
    outside = tmp_path / "outside"
    outbox.mkdir()
    outside.mkdir()
    parts = ("scans", "2024", "march")
    planted_parent = outbox.joinpath(*parts[:depth])
    planted_parent.mkdir(parents=True, exist_ok=True)
    (planted_parent / parts[depth]).symlink_to(outside, target_is_directory=True)

    with pytest.raises(OSError):
        folder = output_folder(outbox, parts)
        write_outputs(folder, "report", JOB, [(MARKDOWN, b"# md\n")])

    assert list(outside.iterdir()) == []


def test_output_folder_refuses_a_dangling_symlink_and_creates_nothing_at_its_target(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    target = tmp_path / "not-yet"
    (outbox / "scans").symlink_to(target)

    with pytest.raises(OSError):
        output_folder(outbox, ("scans", "2024"))

    assert not target.exists()


def test_output_folder_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "scans").write_bytes(b"a file, not a folder")

    with pytest.raises(NotADirectoryError):
        output_folder(outbox, ("scans", "2024"))


@pytest.mark.parametrize("bad", ["..", ".", ""])
def test_output_folder_refuses_components_that_leave_the_outbox(tmp_path: Path, bad: str) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    with pytest.raises(ValueError):
        output_folder(outbox, ("scans", bad, "x"))

    assert not (tmp_path / "x").exists()


# -- one share, two mount paths, no replacing ---------------------------------------------------


def test_two_mount_paths_of_one_outbox_hold_the_same_names(tmp_path: Path) -> None:
    """Instances mounting the share at different paths (here a second path by a link) share
    the state folder; a name one holds is refused to the other, whatever the case."""
    outbox = tmp_path / "outbox"
    (outbox / "Team").mkdir(parents=True)
    other_mount = tmp_path / "other-mount"
    other_mount.symlink_to(outbox, target_is_directory=True)
    held = Reservations(tmp_path / "state" / "reservations")
    first = output_folder(outbox, ("Team",))
    second = output_folder(other_mount, ("Team",))

    def stem(folder: ShareDir, name: str, job: str, parts: tuple[str, ...]) -> str:
        return choose_stem(
            folder,
            name,
            f"{parts[0]}/{name}",
            on_collision="suffix",
            reserve=lambda where, key: held.reserve(where, key, job),
            where=folder_key(parts),
        )

    assert stem(first, "report.pdf", JOB, ("Team",)) == "report"
    assert stem(second, "Report.pdf", OTHER_JOB, ("team",)) == "Report (2)"
