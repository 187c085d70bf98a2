"""Start-up refuses folder layouts that would loop, split a claim across filesystems, or fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sir_convert_a_lot.ops.cli import main
from tests.helpers import write_config


def _run(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(config), "run"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("key", ["outbox", "state", "failed", "archive"])
def test_a_folder_inside_the_inbox_is_refused(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, paths={key: str(tmp_path / "inbox" / key)})
    code, err = _run(config, capsys)
    assert code == 2
    assert err.startswith(f"sir-convert: paths.{key}:")
    assert "inside the inbox" in err
    assert len(err.strip().splitlines()) == 1


def test_the_inbox_inside_another_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, paths={"inbox": str(tmp_path / "outbox" / "drop")})
    code, err = _run(config, capsys)
    assert code == 2 and "paths.inbox" in err


def test_two_keys_naming_one_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, paths={"failed": str(tmp_path / "archive")})
    code, err = _run(config, capsys)
    assert code == 2
    assert "paths.failed" in err and "paths.archive" in err


def test_state_on_another_filesystem_than_the_inbox_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine to put the state on")
    state = other / f"sca-state-{os.getpid()}"
    try:
        config = write_config(tmp_path, paths={"state": str(state)})
        code, err = _run(config, capsys)
    finally:
        if state.exists():
            state.rmdir()
    assert code == 2
    assert err.startswith("sir-convert: paths.state:")
    assert "another filesystem" in err


def test_an_uncreatable_folder_is_refused_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    config = write_config(tmp_path, paths={"archive": str(blocker / "archive")})
    code, err = _run(config, capsys)
    assert code == 2 and err.startswith("sir-convert: paths.archive:")


def test_an_unmounted_share_is_refused_before_any_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()  # the share is not mounted: its mount point is an empty folder
    paths = {name: str(mount_point / name) for name in ("inbox", "outbox", "state")}
    config = write_config(tmp_path / "etc", paths=paths, watch={"sentinel": ".sir-convert-share"})
    code, err = _run(config, capsys)
    assert code == 1, err
    assert list(mount_point.iterdir()) == []
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "share_missing" in lines[0] and ".sir-convert-share" in lines[0], err
    assert "mount it" in lines[0], err
