"""``sir-convert status`` on a spool whose folders are not all there: a missing folder is shown
as missing, never counted as 0 files (an unmounted share looked like an empty queue)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sir_convert_a_lot.folders import prepare
from sir_convert_a_lot.ops.cli import main
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
