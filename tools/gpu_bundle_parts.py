"""The device bundle's parts: files cut into folders small enough for one device call each, a
manifest that says how to put them back, the size guard, and the reassembly with checksums.

A device call carries at most 64 MiB: the working tree plus what ``carry`` names. So the wheels
the GPU check needs (about 95 MiB, 170 MiB with Ray) travel as ``part-1/``, ``part-2/``, ...
in back-to-back calls. Files are laid end to end and cut at each part's limit, so a file larger
than a part (PyMuPDF's wheel, 66 MiB) becomes pieces in two parts, joined again on the device
and checked against its sha256. Every part holds the whole manifest, so any one part says which
others are still missing.

Standard library only: the device side (tools/gpu_bundle_install.py) imports this module with
the device's bare Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
TRAVEL_LIMIT = 64 * MIB  # the device tool's limit on one call's working tree plus carried paths
PART_LIMIT = 58 * MIB  # a part, manifest included; leaves 6 MiB for the tracked tree (4.4 now)
MANIFEST = "manifest.json"
MANIFEST_ROOM = 256 * 1024  # kept free in every part for its copy of the manifest
FORMAT = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def plan(files: list[Path], part_limit: int = PART_LIMIT) -> list[dict[str, Any]]:
    """Each file's entry for the manifest: name, size, sha256 and its pieces, where each piece
    is (part, piece file name, offset, size). Files are laid end to end in the given order and
    cut every ``part_limit - MANIFEST_ROOM`` bytes, so no part holds more."""
    room = part_limit - MANIFEST_ROOM
    if room <= 0:
        raise ValueError(f"a part of {part_limit} bytes leaves no room beside its manifest")
    entries = []
    part, used = 1, 0
    for path in files:
        size = path.stat().st_size
        pieces: list[dict[str, Any]] = []
        offset = 0
        while offset < size or not pieces:
            if used == room:
                part, used = part + 1, 0
            length = min(size - offset, room - used)
            pieces.append({"part": part, "offset": offset, "size": length})
            offset += length
            used += length
        for index, piece in enumerate(pieces):
            piece["name"] = path.name if len(pieces) == 1 else f"{path.name}.{index:03d}"
        entries.append(
            {"name": path.name, "size": size, "sha256": sha256_of(path), "pieces": pieces}
        )
    return entries


def part_count(entries: list[dict[str, Any]]) -> int:
    return max((piece["part"] for e in entries for piece in e["pieces"]), default=0)


def write_parts(
    files: list[Path], bundle: Path, info: dict[str, Any], part_limit: int = PART_LIMIT
) -> dict[str, Any]:
    """Write ``bundle/part-N/`` folders (removing old ones) with the pieces of ``files`` and
    the manifest (``info`` plus the file entries) in each; returns the manifest."""
    entries = plan(files, part_limit)
    for old in bundle.glob("part-*"):
        shutil.rmtree(old)
    sources = {path.name: path for path in files}
    for entry in entries:
        source = sources[entry["name"]]
        for piece in entry["pieces"]:
            folder = bundle / f"part-{piece['part']}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / piece["name"]
            if len(entry["pieces"]) == 1:
                _link_or_copy(source, target)
            else:
                _copy_range(source, target, piece["offset"], piece["size"])
    manifest = {
        **info,
        "format": FORMAT,
        "part_limit": part_limit,
        "parts": part_count(entries),
        "files": entries,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if len(text.encode()) > MANIFEST_ROOM:
        raise ValueError(f"the manifest ({len(text)} bytes) outgrew its room in a part")
    for index in range(1, manifest["parts"] + 1):
        (bundle / f"part-{index}" / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _copy_range(source: Path, target: Path, offset: int, size: int) -> None:
    with source.open("rb") as reading, target.open("wb") as writing:
        reading.seek(offset)
        left = size
        while left:
            block = reading.read(min(MIB, left))
            if not block:
                raise ValueError(f"{source} ended before byte {offset + size}")
            writing.write(block)
            left -= len(block)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def oversize(bundle: Path, tree_bytes: int = 0, part_limit: int = PART_LIMIT) -> list[str]:
    """The size guard: one line per part over ``part_limit``, or too big to travel beside a
    working tree of ``tree_bytes``. Empty when every part can be carried."""
    problems = []
    parts = sorted(bundle.glob("part-*"))
    if not parts:
        problems.append(f"{bundle} has no part-N folders")
    for part in parts:
        size = folder_bytes(part)
        if size > part_limit:
            problems.append(f"{part.name}: {size} bytes, over the part limit {part_limit}")
        if size + tree_bytes > TRAVEL_LIMIT:
            problems.append(
                f"{part.name}: {size} bytes with the {tree_bytes}-byte tree is over "
                f"{TRAVEL_LIMIT} (64 MiB), the most one device call carries"
            )
    return problems


def read_manifest(part: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((part / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{part / MANIFEST}: format {manifest.get('format')}, want {FORMAT}")
    return manifest


def verify_part(part: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with one part's pieces: missing, or of the wrong size."""
    number = int(part.name.rpartition("-")[2])
    problems = []
    for entry in manifest["files"]:
        for piece in entry["pieces"]:
            if piece["part"] != number:
                continue
            path = part / piece["name"]
            if not path.is_file():
                problems.append(f"{piece['name']} is missing from {part}")
            elif path.stat().st_size != piece["size"]:
                problems.append(
                    f"{piece['name']}: {path.stat().st_size} bytes, want {piece['size']}"
                )
    return problems


def missing_parts(stash: Path, manifest: dict[str, Any]) -> list[int]:
    """The part numbers whose pieces are not all in ``stash`` yet."""
    missing = set()
    for entry in manifest["files"]:
        for piece in entry["pieces"]:
            path = stash / piece["name"]
            if not path.is_file() or path.stat().st_size != piece["size"]:
                missing.add(piece["part"])
    return sorted(missing)


def reassemble(stash: Path, manifest: dict[str, Any], out: Path) -> list[Path]:
    """Join each file's pieces from ``stash`` into ``out`` and check its size and sha256;
    raises ValueError naming the first file that does not match."""
    out.mkdir(parents=True, exist_ok=True)
    joined = []
    for entry in manifest["files"]:
        target = out / entry["name"]
        with target.open("wb") as writing:
            for piece in sorted(entry["pieces"], key=lambda p: p["offset"]):
                with (stash / piece["name"]).open("rb") as reading:
                    shutil.copyfileobj(reading, writing, MIB)
        if target.stat().st_size != entry["size"] or sha256_of(target) != entry["sha256"]:
            raise ValueError(f"{entry['name']}: the joined file does not match the manifest")
        joined.append(target)
    return joined
