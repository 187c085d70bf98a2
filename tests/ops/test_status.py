"""``sir-convert status`` on a spool whose folders are not all there: a missing folder is shown
as missing, never counted as 0 files (an unmounted share looked like an empty queue)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sir_convert_a_lot import __version__
from sir_convert_a_lot.folders import prepare
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.versions import build_id
from tests.helpers import load_config, write_config


def test_status_says_the_inbox_is_missing_in_text_and_json_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    paths = load_config(tmp_path).paths
    prepare(paths)
    shutil.rmtree(paths.inbox)

    code = main(["--config", str(config), "status"])

    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines()[0].startswith("inbox: MISSING ")
    assert f"missing: paths.inbox {paths.inbox}" in out
    assert "0 waiting" not in out
    (line,) = err.splitlines()
    assert f"paths.inbox {paths.inbox} is missing" in line and "mount the share" in line

    code = main(["--config", str(config), "status", "--json"])

    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["missing"] == {"paths.inbox": str(paths.inbox)}
    assert len(err.splitlines()) == 1


def test_status_with_every_folder_there_lists_none_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    prepare(load_config(tmp_path).paths)

    code = main(["--config", str(config), "status", "--json"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["missing"] == {} and report["queue"]["inbox"] == 0


def test_status_into_a_reader_that_stopped_reading_is_quiet_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sir-convert status | head -3``: head leaves early; that is no error to report."""
    import os

    config = write_config(tmp_path)
    prepare(load_config(tmp_path).paths)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    with os.fdopen(write_end, "w", buffering=1) as closed_pipe:  # a line at a time
        monkeypatch.setattr("sys.stdout", closed_pipe)
        code = main(["--config", str(config), "status"])
        monkeypatch.undo()
    assert code == 0
    assert capsys.readouterr().err == ""


def test_status_shows_each_instances_build_and_the_one_installed_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Instances on one package version, one on the build before a ``git pull``: only the
    build tells the operator which has not been restarted."""
    config = write_config(tmp_path)
    paths = load_config(tmp_path).paths
    prepare(paths)
    Spool(paths, instance="gpu-old").ensure_layout()
    Spool(paths, instance="gpu-old").instances.heartbeat(
        {"state": "ready", "version": "0.1.0", "build": "0123456789ab"}
    )
    Spool(paths, instance="gpu-older").instances.heartbeat({"state": "ready", "version": "0.1.0"})

    assert main(["--config", str(config), "status"]) == 0

    out = capsys.readouterr().out
    (old,) = [line for line in out.splitlines() if "gpu-old:" in line]
    assert "version 0.1.0, build 0123456789ab," in old
    (older,) = [line for line in out.splitlines() if "gpu-older:" in line]
    assert "version 0.1.0, build unknown," in older  # a lease from before builds were kept
    assert f"installed here: version {__version__}, build {build_id()}" in out

    assert main(["--config", str(config), "status", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    builds = {inst["instance"]: inst["build"] for inst in report["instances"]}
    assert builds["gpu-old"] == "0123456789ab" and builds["gpu-older"] is None
    assert report["installed"] == {"version": __version__, "build": build_id()}
