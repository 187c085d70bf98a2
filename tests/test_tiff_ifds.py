"""A TIFF has arrived when its chain of directories, and each page's data, lie inside the file:
past the end, looping, ten thousand pages long, BigTIFF."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from harness.documents import tiff_chain
from sir_convert_a_lot.source_file import missing_part
from sir_convert_a_lot.tiff_ifds import DATA_NOT_ARRIVED, IFD_NOT_ARRIVED


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_tiff_directory_past_the_end_has_not_arrived(tmp_path: Path) -> None:
    data = tiff_chain(3, last_next=10_000)
    assert missing_part(_write(tmp_path, "scan.tif", data)) == IFD_NOT_ARRIVED


def test_a_tiff_page_whose_pixels_lie_past_the_end_has_not_arrived(tmp_path: Path) -> None:
    data = tiff_chain(3, strip_at=50_000)
    assert missing_part(_write(tmp_path, "scan.tif", data)) == DATA_NOT_ARRIVED


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_whose_chain_loops_is_not_waited_for(tmp_path: Path, order: str) -> None:
    """A loop is damage for the worker to report, not an unfinished file: no endless walk."""
    data = tiff_chain(3, order=order, last_next=8 + 2)  # back to the first directory
    assert missing_part(_write(tmp_path, "loop.tiff", data)) is None


@pytest.mark.timeout(30)
def test_a_ten_thousand_page_tiff_is_walked_whole(tmp_path: Path) -> None:
    path = _write(tmp_path, "archive.tif", tiff_chain(10_000))
    started = time.perf_counter()
    assert missing_part(path) is None
    print(f"10,000-page TIFF walked in {time.perf_counter() - started:.3f} s")
    cut = path.read_bytes()[:-200]
    assert missing_part(_write(tmp_path, "cut.tif", cut)) == IFD_NOT_ARRIVED


def test_a_bigtiff_is_walked_like_a_classic_one(tmp_path: Path) -> None:
    frames = [Image.new("L", (40, 30), 255) for _ in range(2)]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", big_tiff=True, save_all=True, append_images=frames[1:])
    data = out.getvalue()
    assert data[:4] == b"II+\x00"
    assert missing_part(_write(tmp_path, "big.tif", data)) is None
    assert missing_part(_write(tmp_path, "cut.tif", data[: len(data) // 3])) is not None
