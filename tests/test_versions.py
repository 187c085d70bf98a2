"""The build id: after a ``git pull`` that keeps the package version, an operator must still
tell old code from new, so every place that shows the version shows the commit too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import sir_convert_a_lot
from sir_convert_a_lot.versions import (
    build_id,
    component_versions,
    recorded_build,
    source_commit,
)
from tests.helpers import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def _checkout(root: Path, head: str) -> tuple[Path, Path]:
    """A source tree laid out as this repository, with a ``.git`` folder whose HEAD is
    ``head``; returns it and its package folder."""
    package = root / "daemon" / "sir_convert_a_lot"
    package.mkdir(parents=True)
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text(head + "\n")
    return root, package


def test_a_checkout_on_a_branch_gives_its_commit_from_the_loose_ref(tmp_path: Path) -> None:
    root, package = _checkout(tmp_path, "ref: refs/heads/main")
    (root / ".git" / "refs" / "heads" / "main").write_text(COMMIT + "\n")
    assert source_commit(root, package) == COMMIT[:12]


def test_a_packed_branch_and_a_detached_head_give_their_commits(tmp_path: Path) -> None:
    root, package = _checkout(tmp_path / "packed", "ref: refs/heads/main")
    (root / ".git" / "packed-refs").write_text(
        f"# pack-refs with: peeled fully-peeled sorted\n{OTHER} refs/heads/other\n"
        f"{COMMIT} refs/heads/main\n"
    )
    assert source_commit(root, package) == COMMIT[:12]
    root, package = _checkout(tmp_path / "detached", OTHER)
    assert source_commit(root, package) == OTHER[:12]


def test_a_linked_worktree_reads_its_branch_in_the_common_folder(tmp_path: Path) -> None:
    main = tmp_path / "main" / ".git"
    (main / "refs" / "heads").mkdir(parents=True)
    (main / "refs" / "heads" / "fixes").write_text(COMMIT + "\n")
    private = main / "worktrees" / "fixes"
    private.mkdir(parents=True)
    (private / "HEAD").write_text("ref: refs/heads/fixes\n")
    (private / "commondir").write_text("../..\n")
    root = tmp_path / "fixes"
    package = root / "daemon" / "sir_convert_a_lot"
    package.mkdir(parents=True)
    (root / ".git").write_text(f"gitdir: {private}\n")
    assert source_commit(root, package) == COMMIT[:12]


def test_no_commit_from_an_installed_copy_or_a_broken_or_missing_git(tmp_path: Path) -> None:
    root, package = _checkout(tmp_path / "tree", "ref: refs/heads/main")
    (root / ".git" / "refs" / "heads" / "main").write_text(COMMIT)
    # The package copied into a venv under the checkout: the checkout may have moved on since.
    installed = root / ".venv" / "lib" / "python3.11" / "site-packages" / "sir_convert_a_lot"
    installed.mkdir(parents=True)
    assert source_commit(root, installed) is None
    (root / ".git" / "refs" / "heads" / "main").write_text("not a commit")
    assert source_commit(root, package) is None
    (root / ".git" / "HEAD").write_text("ref: refs/heads/../../../etc/passwd")
    assert source_commit(root, package) is None
    (root / ".git" / "HEAD").write_bytes(b"\xff\xfe")
    assert source_commit(root, package) is None
    shutil.rmtree(root / ".git")
    assert source_commit(root, package) is None


def test_the_build_recorded_at_install_is_read_back_and_garbage_is_not(tmp_path: Path) -> None:
    record = tmp_path / ".sir-convert-build"
    assert recorded_build(record) is None
    record.write_text("0123456789ab\n")
    assert recorded_build(record) == "0123456789ab"
    record.write_text("0123456789ab-modified\n")
    assert recorded_build(record) == "0123456789ab-modified"
    record.write_text("$(rm -rf /)\n")
    assert recorded_build(record) is None


@pytest.mark.slow
def test_this_checkout_reports_its_head_everywhere_the_version_is_shown() -> None:
    package = Path(sir_convert_a_lot.__file__).resolve().parent
    if package != REPO / "daemon" / "sir_convert_a_lot" or shutil.which("git") is None:
        pytest.skip("the package under test is not this checkout's source")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert build_id() == head.stdout.strip()[:12]
    assert component_versions()["sir_convert_a_lot_build"] == build_id()
