"""Rehearse the device calls of docs/gpu-check.md here, on a Python that has only what the
device has.

Usage (from the repository root, after ``tools/gpu-bundle --python-version 3.11 [--with-ray]``;
the bundle must be built for this machine's Python):

    .venv/bin/python tools/gpu_bundle_rehearse.py --work /tmp/rehearsal -- --allow-cpu ...

It makes a stand-in for the device's Python: a fresh virtual environment (no access to this
project's .venv) whose one ``.pth`` line adds a folder of links to the distributions of the
source environment (``--source``, default .venv) that the device image also has (``DEVICE_HAS``:
torch, transformers, safetensors, numpy, ...), and nothing else. Then, as on the device, it
``add``s each part of the bundle with that Python and ``install``s it into WORK/site, and runs
tools/gpu-check with that Python and ``PYTHONPATH=daemon:.:WORK/site``, passing the arguments after
``--``. Run it under ``unshare -n`` to be sure nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.utils import canonicalize_name

from gpu_bundle import DEVICE_HAS
from toolkit import REPO

LACKS = ("docling", "pymupdf", "pydantic", "structlog", "watchdog", "ray", "rapidocr")


def device_links(source: Path, folder: Path) -> list[str]:
    """Link into ``folder`` the top-level entries of each distribution in the ``source``
    site-packages that the device has; returns their names. Entries shared with a distribution
    the device does not have are refused, so nothing else slips in."""
    owners: dict[str, set[str]] = {}
    for info in source.glob("*.dist-info"):
        record = info / "RECORD"
        if not record.is_file():
            continue
        name = canonicalize_name(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for line in record.read_text(encoding="utf-8").splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.startswith("..") and top != "__pycache__":
                owners.setdefault(top, set()).add(name)
    folder.mkdir(parents=True)
    linked = set()
    for top, names in sorted(owners.items()):
        if names & DEVICE_HAS and not names & {"pip", "setuptools"}:
            strangers = names - DEVICE_HAS
            if strangers:
                raise SystemExit(f"{top} is shared with {sorted(strangers)}, not on the device")
            if (source / top).exists():
                (folder / top).symlink_to(source / top)
                linked |= names
    return sorted(linked)


def device_python(work: Path, source: Path) -> Path:
    """A virtual environment that sees only the device's packages from ``source``."""
    subprocess.run([sys.executable, "-m", "venv", str(work / "device")], check=True)
    python = work / "device" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    linked = device_links(source, work / "device-site")
    Path(purelib, "device-packages.pth").write_text(f"{work / 'device-site'}\n")
    print(f"rehearse: device Python {python} sees {len(linked)} distributions: {' '.join(linked)}")
    found = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.util as u; print([n for n in {LACKS} if u.find_spec(n)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if found != "[]":
        raise SystemExit(f"rehearse: the device Python should lack these but has {found}")
    print(f"rehearse: and, like the device, lacks {', '.join(LACKS)}", flush=True)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a fresh folder")
    parser.add_argument("--bundle", type=Path, default=REPO / ".gpu-bundle")
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument("check", nargs="*", help="tools/gpu-check's arguments, after --")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    python = device_python(args.work, args.source)
    stash = ["--stash", str(args.work / "stash")]
    install = [str(python), str(REPO / "tools" / "gpu_bundle_install.py"), *stash]
    for part in sorted(args.bundle.glob("part-*"), key=lambda p: int(p.name.split("-")[1])):
        subprocess.run([*install, "add", str(part)], check=True)
    subprocess.run([*install, "install", str(args.work / "site")], check=True)
    env = {
        **os.environ,
        "PYTHON": str(python),
        "PYTHONPATH": os.pathsep.join((str(REPO / "daemon"), str(REPO), str(args.work / "site"))),
    }
    command = [str(REPO / "tools" / "gpu-check"), *args.check]
    print("rehearse: PYTHONPATH=" + env["PYTHONPATH"] + " " + " ".join(command), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
