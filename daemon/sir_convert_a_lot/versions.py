"""Versions of the components that shaped an output, for the sidecar's ``versions``, and the
build id that tells two installs of one package version apart.

The package version changes only on a release, so after a ``git pull`` that does not bump it an
operator could not tell old code from new. The build id is the git commit of the source tree
when the package runs from a checkout (read from ``.git`` directly: no ``git`` process, which
would also refuse a tree owned by another user), else the commit ``tools/install`` recorded in
the virtual environment when it installed the package, else ``"unknown"``.
"""

from __future__ import annotations

import functools
import platform
import re
import sys
from pathlib import Path

_PACKAGES = ("pymupdf", "pymupdf4llm", "pymupdf-layout", "docling", "docling-ibm-models", "torch")

BUILD_RECORD = ".sir-convert-build"  # in the virtual environment (sys.prefix), by tools/install
UNKNOWN = "unknown"
SHORT = 12  # hex digits of a commit shown
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_RECORDED = re.compile(r"[0-9a-f]{7,64}(-modified)?")
_MAX_READ = 1 << 20  # a ref file or packed-refs larger than this is not read


@functools.cache
def package_version() -> str:
    """This package's installed version; ``0.0.0+unknown`` from a tree never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sir-convert-a-lot")
    except PackageNotFoundError:  # pragma: no cover - a source tree without an install
        return "0.0.0+unknown"


def component_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {
        "sir_convert_a_lot": package_version(),
        "sir_convert_a_lot_build": build_id(),
        "python": platform.python_version(),
    }
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


@functools.cache
def build_id() -> str:
    """The commit this process's code came from (12 hex digits), or ``"unknown"``; never
    raises. Worked out once per process: the code a process runs does not change under it."""
    package = Path(__file__).resolve().parent
    return (
        source_commit(package.parent.parent, package)
        or recorded_build(Path(sys.prefix) / BUILD_RECORD)
        or UNKNOWN
    )


def source_commit(root: Path, package: Path) -> str | None:
    """The commit checked out at ``root`` when ``package`` is its ``daemon/sir_convert_a_lot``
    (an editable install or PYTHONPATH). An installed copy under site-packages is not: the
    checkout above a virtual environment may have moved on since it was installed."""
    if package != root / "daemon" / "sir_convert_a_lot":
        return None
    try:
        commit = _head_commit(_git_dir(root / ".git"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return commit[:SHORT] if commit else None


def recorded_build(path: Path) -> str | None:
    """The build id ``tools/install`` wrote, when it is one (a commit, perhaps ``-modified``)."""
    try:
        text = _read(path).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _RECORDED.fullmatch(text) else None


def _git_dir(dot_git: Path) -> Path:
    """``.git`` is the folder, or in a linked worktree a file ``gitdir: PATH``."""
    if dot_git.is_dir():
        return dot_git
    line = _read(dot_git).strip()
    if not line.startswith("gitdir:"):
        raise ValueError("not a git file")
    target = Path(line.removeprefix("gitdir:").strip())
    return target if target.is_absolute() else dot_git.parent / target


def _head_commit(git_dir: Path) -> str | None:
    """HEAD's commit: detached, or through its branch's ref (loose, or in packed-refs; in a
    linked worktree both live in the common folder)."""
    head = _read(git_dir / "HEAD").strip()
    if not head.startswith("ref:"):
        return head if _COMMIT.fullmatch(head) else None
    ref = head.removeprefix("ref:").strip()
    if not ref.startswith("refs/") or ".." in ref.split("/"):
        return None
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = git_dir / _read(git_dir / "commondir").strip()
    for folder in dict.fromkeys((git_dir, common)):
        try:
            loose = _read(folder / ref).strip()
        except FileNotFoundError:
            continue
        if _COMMIT.fullmatch(loose):
            return loose
    return _packed(common / "packed-refs", ref)


def _packed(path: Path, ref: str) -> str | None:
    try:
        lines = _read(path).splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        commit, _, name = line.partition(" ")
        if name.strip() == ref and _COMMIT.fullmatch(commit):
            return commit
    return None


def _read(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(_MAX_READ).decode("utf-8")
