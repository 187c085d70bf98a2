"""tools/gpu-bundle: the wheels tools/gpu-check needs on the device travel in parts that each fit
one device call (64 MiB with the working tree), and the device puts them back together exactly,
or says which part is still missing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import gpu_bundle_install
from gpu_bundle import tree_bytes
from gpu_bundle_parts import (
    MANIFEST,
    MANIFEST_ROOM,
    MIB,
    PART_LIMIT,
    TRAVEL_LIMIT,
    missing_parts,
    oversize,
    read_manifest,
    reassemble,
    write_parts,
)

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
SMALL_PART = MIB + MANIFEST_ROOM  # room for 1 MiB of pieces, to split small files


def _file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _wheel(folder: Path, name: str, payload: int) -> Path:
    """A wheel of one module with ``payload`` random bytes beside it (stored, so it stays that
    big), enough for pip to install it offline."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": b"SIZE = %d\n" % payload,
        f"{name}/blob.bin": os.urandom(payload),
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        "Requires-Dist: not-on-this-machine-at-all>=1\n\n".encode(),
        f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{n},sha256={_b64(d)},{len(d)}" for n, d in files.items()]
    files[f"{name}-1.0.dist-info/RECORD"] = (
        "\n".join([*record, f"{name}-1.0.dist-info/RECORD,,"]) + "\n"
    ).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_a_file_bigger_than_a_part_is_cut_and_every_part_stays_under_the_limit(
    tmp_path: Path,
) -> None:
    files = [
        _file(tmp_path / "big.whl", int(2.5 * MIB)),
        _file(tmp_path / "small.whl", 300_000),
        _file(tmp_path / "tiny.whl", 10),
    ]
    bundle = tmp_path / "bundle"
    manifest = write_parts(files, bundle, {"python_version": HERE}, SMALL_PART)
    assert manifest["parts"] == 3  # 2.8 MiB of pieces, 1 MiB a part
    assert oversize(bundle, part_limit=SMALL_PART) == []
    big = manifest["files"][0]
    assert [p["part"] for p in big["pieces"]] == [1, 2, 3]
    for index in (1, 2, 3):
        assert read_manifest(bundle / f"part-{index}") == manifest  # each part says it all


def test_the_size_guard_names_a_part_too_big_alone_or_beside_the_tree(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    write_parts([_file(tmp_path / "a.whl", 3 * MIB)], bundle, {}, PART_LIMIT)
    assert oversize(bundle) == []
    assert oversize(bundle, part_limit=2 * MIB) == [
        f"part-1: {3 * MIB + (bundle / 'part-1' / MANIFEST).stat().st_size} bytes, "
        f"over the part limit {2 * MIB}"
    ]
    crowded = oversize(bundle, tree_bytes=TRAVEL_LIMIT - MIB)
    assert len(crowded) == 1 and "the most one device call carries" in crowded[0]
    assert oversize(tmp_path / "nothing") == [f"{tmp_path / 'nothing'} has no part-N folders"]


def test_the_pieces_join_into_the_same_bytes_and_a_changed_piece_is_refused(
    tmp_path: Path,
) -> None:
    big = _file(tmp_path / "big.whl", int(2.5 * MIB))
    bundle = tmp_path / "bundle"
    manifest = write_parts([big], bundle, {}, SMALL_PART)
    stash = tmp_path / "stash"
    stash.mkdir()
    for part in sorted(bundle.glob("part-*")):
        for piece in part.iterdir():
            (stash / piece.name).write_bytes(piece.read_bytes())
    [joined] = reassemble(stash, manifest, tmp_path / "out")
    assert joined.read_bytes() == big.read_bytes()
    piece = stash / manifest["files"][0]["pieces"][1]["name"]
    data = bytearray(piece.read_bytes())
    data[0] ^= 1
    piece.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the manifest"):
        reassemble(stash, manifest, tmp_path / "out")


@pytest.mark.slow
def test_the_device_side_keeps_each_part_then_installs_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = [
        _wheel(tmp_path / "w", "bundled_big", 2 * MIB),
        _wheel(tmp_path / "w", "bundled_small", 10),
    ]
    bundle = tmp_path / "bundle"
    manifest = write_parts(wheels, bundle, {"python_version": HERE}, SMALL_PART)
    assert manifest["parts"] == 3
    stash, target = tmp_path / "stash", tmp_path / "site"
    assert gpu_bundle_install.add(bundle / "part-1", stash) == 0
    assert "still to carry: part-2, part-3" in capsys.readouterr().out
    assert gpu_bundle_install.install(target, stash) == 1  # the machine went back: say so
    assert "part-2, part-3 not here yet" in capsys.readouterr().out
    for index in (2, 3):
        assert gpu_bundle_install.add(bundle / f"part-{index}", stash) == 0
    assert missing_parts(stash, manifest) == []
    assert gpu_bundle_install.install(target, stash) == 0
    said = capsys.readouterr().out
    assert "missing: not-on-this-machine-at-all>=1 (for bundled-big)" in said
    assert "2 wheels checked and installed" in said
    found = subprocess.run(
        [sys.executable, "-c", "import bundled_big; print(bundled_big.SIZE)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == str(2 * MIB)


def test_a_part_for_another_python_is_refused_before_it_is_kept(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    write_parts([_file(tmp_path / "a.whl", 10)], bundle, {"python_version": "2.7"}, PART_LIMIT)
    assert gpu_bundle_install.add(bundle / "part-1", tmp_path / "stash") == 2
    assert not (tmp_path / "stash").exists()


@pytest.mark.slow
def test_the_real_bundle_fits_the_device_calls(tmp_path: Path) -> None:
    """The real build from requirements/constraints.txt, for the device's Python 3.12: what
    gpu-check needs and the device lacks, in parts that each travel beside this tree."""
    out = tmp_path / "bundle"
    tree = tree_bytes(REPO)
    for extra, parts in (([], 3), (["--with-ray"], 4)):
        subprocess.run(
            [str(REPO / "tools" / "gpu-bundle"), "--output", str(out), *extra],
            check=True,
            timeout=600,
        )
        assert oversize(out, tree) == []
        manifest = read_manifest(out / "part-1")
        assert manifest["parts"] == parts == len(list(out.glob("part-*")))
        packages = set(manifest["packages"])
        assert {"docling", "docling-ibm-models", "pymupdf", "pydantic", "structlog"} <= packages
        assert {"watchdog", "tomli-w"} <= packages
        assert ("ray" in packages) == bool(extra)
        assert not packages & {"torch", "transformers", "safetensors", "torchvision", "numpy"}
        assert "rapidocr" in packages  # gpu-check reads a scanned page
        [pymupdf] = [f for f in manifest["files"] if f["name"].startswith("pymupdf-")]
        assert len(pymupdf["pieces"]) == 2  # 66 MiB: more than a part holds
