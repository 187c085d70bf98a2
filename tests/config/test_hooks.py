"""``[hooks]``: a hook must be an executable file only its owner may change; a bad one refuses
the start with exit 2 naming the key, and a reload that names one keeps the old config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sir_convert_a_lot.config import HooksSection, load
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.service.reload import read_again
from tests.helpers import write_config


def _script(path: Path, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(mode)
    return path


def test_hooks_are_off_by_default(tmp_path: Path) -> None:
    hooks = load(write_config(tmp_path)).hooks
    assert hooks == HooksSection()
    assert (hooks.on_success, hooks.on_failure, hooks.timeout_seconds) == ("", "", 60)


@pytest.mark.parametrize(
    ("name", "mode", "says"),
    [
        ("relative", None, "must be an absolute path"),
        ("missing", None, "cannot be found or read"),
        ("plain.sh", 0o644, "is not an executable file; fix with: chmod 755"),
        ("folder", None, "is not an executable file"),
        ("shared.sh", 0o775, "shared.sh is writable by group or others"),
        ("open.sh", 0o757, "fix with: chmod go-w"),
        ("share/hook.sh", 0o755, "share is writable by group or others"),
    ],
)
def test_a_hook_that_is_no_safe_executable_is_refused_naming_the_key(
    tmp_path: Path, name: str, mode: int | None, says: str
) -> None:
    value = str(tmp_path / name)
    if name == "relative":
        value = "hooks/notify.sh"
    elif name == "folder":
        (tmp_path / name).mkdir()
    elif name.startswith("share/"):  # a folder share users write: they could swap the hook
        (tmp_path / "share").mkdir(mode=0o775)
        (tmp_path / "share").chmod(0o2775)
        _script(tmp_path / name, mode or 0o755)
    elif mode is not None:
        _script(tmp_path / name, mode)
    for key in ("on_success", "on_failure"):
        with pytest.raises(ConfigError) as refused:
            load(write_config(tmp_path, hooks={key: value}))
        assert str(refused.value).startswith(f"hooks.{key}: ")
        assert says in str(refused.value)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"timeout_seconds": 0.5}, "hooks.timeout_seconds"),
        ({"max_running": 0}, "hooks.max_running"),
    ],
)
def test_the_timeout_and_the_pool_have_floors(
    tmp_path: Path, values: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: must be"):
        load(write_config(tmp_path, hooks=values))


def test_a_hook_in_a_sticky_folder_or_through_a_link_is_checked_where_it_lies(
    tmp_path: Path,
) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: nobody replaces another's entry
    hook = _script(sticky / "hook.sh")
    assert load(write_config(tmp_path, hooks={"on_success": str(hook)})).hooks.on_success
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    target = _script(shared / "real.sh")
    link = tmp_path / "link.sh"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="shared is writable by group or others"):
        load(write_config(tmp_path, hooks={"on_success": str(link)}))


def test_run_with_a_bad_hook_exits_2_before_starting_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sir_convert_a_lot.service.daemon as service

    def must_not_start(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the service started despite a bad hook")

    monkeypatch.setattr(service, "Service", must_not_start)
    hook = _script(tmp_path / "notify.sh", 0o644)
    path = write_config(tmp_path, hooks={"on_failure": str(hook)})

    assert main(["--config", str(path), "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hooks.on_failure:" in err and "chmod 755" in err


def test_a_reload_takes_new_hooks_live_and_keeps_the_old_config_for_a_bad_one(
    tmp_path: Path,
) -> None:
    first = _script(tmp_path / "first.sh")
    current = load(write_config(tmp_path, hooks={"on_success": str(first)}))

    second = _script(tmp_path / "second.sh")
    write_config(tmp_path, hooks={"on_success": str(second), "timeout_seconds": 5})
    reloaded = read_again(current)
    assert reloaded is not None
    assert reloaded.changed == ["hooks.on_success", "hooks.timeout_seconds"]
    assert reloaded.config.hooks.on_success == str(second)

    second.chmod(0o644)  # no longer executable: the reload is refused, whole
    with capture_logs() as logged:
        assert read_again(reloaded.config) is None
    [refusal] = [e for e in logged if e["event"] == "config_reload_refused"]
    assert refusal["reason"].startswith("hooks.on_success: ")
    assert refusal["effect"] == "the old config stays"
