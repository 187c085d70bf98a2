"""Put tools/gpu-bundle's parts back together on the device machine and install them.

Each device call carries one part; the machine keeps /tmp while it stays warm between calls:

    python3 tools/gpu_bundle_install.py add .gpu-bundle/part-1      # first call
    python3 tools/gpu_bundle_install.py add .gpu-bundle/part-2 \\
      && python3 tools/gpu_bundle_install.py install /tmp/sir-site  # last call, then gpu-check

``add`` checks the part's pieces against its manifest and keeps them in the stash
(/tmp/sir-gpu-bundle); ``install`` joins the pieces into wheels, checks each one's sha256, installs
them with ``pip install --no-index --no-deps --target`` and lists any need of theirs that neither
the bundle nor the device meets (a report; the GPU check itself is the verdict). Standard
library and the device's pip (``packaging`` for the report) only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu_bundle_parts import MANIFEST, missing_parts, read_manifest, reassemble, verify_part

STASH = Path("/tmp/sir-gpu-bundle")


def add(part: Path, stash: Path) -> int:
    manifest = read_manifest(part)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if manifest["python_version"] != here:
        print(f"gpu-bundle: built for Python {manifest['python_version']}, this is {here}")
        return 2
    problems = verify_part(part, manifest)
    if problems:
        print("gpu-bundle: " + "; ".join(problems))
        return 1
    if (stash / MANIFEST).is_file() and read_manifest(stash)["files"] != manifest["files"]:
        shutil.rmtree(stash)  # pieces of another build of the bundle
    stash.mkdir(parents=True, exist_ok=True)
    number = int(part.name.rpartition("-")[2])
    for entry in manifest["files"]:
        for piece in entry["pieces"]:
            if piece["part"] == number:
                shutil.copyfile(part / piece["name"], stash / piece["name"])
    shutil.copyfile(part / MANIFEST, stash / MANIFEST)
    missing = missing_parts(stash, manifest)
    left = ", ".join(f"part-{n}" for n in missing) if missing else "none: run install"
    print(
        f"gpu-bundle: part-{number} of {manifest['parts']} kept in {stash}; still to carry: {left}"
    )
    return 0


def install(target: Path, stash: Path) -> int:
    if not (stash / MANIFEST).is_file():
        print(f"gpu-bundle: nothing in {stash}; carry each part and run add first")
        return 1
    manifest = read_manifest(stash)
    missing = missing_parts(stash, manifest)
    if missing:
        names = ", ".join(f"part-{n}" for n in missing)
        print(f"gpu-bundle: {names} not here yet (the machine may have gone back between calls)")
        return 1
    wheels = reassemble(stash, manifest, stash / "wheels")
    command = [sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--no-index"]
    command += ["--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target"]
    subprocess.run([*command, str(target), *map(str, wheels)], check=True)
    report(wheels, manifest)
    print(f"gpu-bundle: {len(wheels)} wheels checked and installed into {target}")
    return 0


def report(wheels: list[Path], manifest: dict[str, Any]) -> None:
    """Say which needs of the installed wheels the device's own packages do not meet."""
    try:
        from gpu_bundle_deps import marker_environment, read_wheel, unmet
    except ImportError as exc:  # no packaging here: the check itself is still the verdict
        print(f"gpu-bundle: needs not checked ({exc})")
        return
    problems = unmet([read_wheel(w) for w in wheels], marker_environment(), _installed)
    left_out = set(manifest.get("left_out", {}))
    for line in problems:
        known = any(f"missing: {name}" in line for name in left_out)
        print(f"gpu-bundle: {line}" + (" (left out on purpose, see manifest)" if known else ""))
    if not problems:
        print("gpu-bundle: every need of the bundle is met by the bundle or this machine")


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stash", type=Path, default=STASH)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("add", help="keep one carried part").add_argument("part", type=Path)
    commands.add_parser("install", help="join, check, install").add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "add":
        return add(args.part, args.stash)
    return install(args.target, args.stash)


if __name__ == "__main__":
    raise SystemExit(main())
