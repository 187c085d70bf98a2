"""A ZIP's table of contents read by hand: the end record found past a comment and past false
signatures, each entry's declared unpacked size (ZIP64 included), and the cap on entries."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from harness.documents import zip_bytes
from sir_convert_a_lot import zipdir


def _directory(tmp_path: Path, data: bytes) -> zipdir.Directory | str:
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        end = zipdir.find_end(fd, len(data))
        return end if isinstance(end, str) else zipdir.read_directory(fd, end)
    finally:
        os.close(fd)


def test_the_directory_declares_names_and_unpacked_sizes(tmp_path: Path) -> None:
    found = _directory(tmp_path, zip_bytes({"a.xml": b"a" * 5000, "b/c.bin": b"\0" * 70_000}))
    assert isinstance(found, zipdir.Directory)
    assert found.names == ("a.xml", "b/c.bin")
    assert (found.unpacked_bytes, found.entries, found.over_limit) == (75_000, 2, False)


def test_a_comment_after_the_end_record_is_read_past(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.txt", "x")
        archive.comment = b"PK\x05\x06 looks like an end record, but is a comment" * 10
    found = _directory(tmp_path, out.getvalue())
    assert isinstance(found, zipdir.Directory) and found.names == ("x.txt",)


def test_a_comment_not_yet_arrived_is_an_unfinished_end(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.txt", "x")
        archive.comment = b"c" * 200
    assert _directory(tmp_path, out.getvalue()[:-100]) == zipdir.DIRECTORY_NOT_ARRIVED


def test_an_end_record_pointing_outside_the_file_is_not_taken(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"x.txt": b"x"}))
    end = data.rindex(b"PK\x05\x06")
    data[end + 16 : end + 20] = (len(data) * 4).to_bytes(4, "little")  # directory offset
    assert _directory(tmp_path, bytes(data)) == zipdir.DIRECTORY_NOT_ARRIVED


def test_zip64_sizes_come_from_the_extra_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    found = _directory(tmp_path, zip_bytes({"big.xml": b"y" * 3000, "small": b"z" * 10}))
    assert isinstance(found, zipdir.Directory)
    assert (found.names, found.unpacked_bytes) == (("big.xml", "small"), 3010)


def test_a_bomb_declares_its_unpacked_size_without_being_inflated(tmp_path: Path) -> None:
    data = zip_bytes({"zeros.xml": b"\0" * (64 << 20)})
    assert len(data) < 200_000
    found = _directory(tmp_path, data)
    assert isinstance(found, zipdir.Directory) and found.unpacked_bytes == 64 << 20


def test_more_entries_than_the_cap_are_not_all_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipdir, "MAX_ENTRIES", 5)
    found = _directory(tmp_path, zip_bytes({f"part{n}.xml": b"x" for n in range(8)}))
    assert isinstance(found, zipdir.Directory)
    assert (len(found.names), found.entries, found.over_limit) == (5, 8, True)
