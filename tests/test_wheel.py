"""The wheel a GPU server installs: the package and nothing of the tests' harness."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_the_package_and_no_test_harness(tmp_path: Path) -> None:
    # Built from a copy, so the build's egg-info and build/ never land in the working tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("daemon", "harness", "tests"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sir_convert_a_lot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert "sir_convert_a_lot" in top
    assert {"harness", "tests", "testing"} & top == set()
    assert not [n for n in names if "/testing/" in n or "samba" in n or "stand_in" in n]
    assert "sir_convert_a_lot/py.typed" in names
    assert "sir_convert_a_lot/__main__.py" in names
