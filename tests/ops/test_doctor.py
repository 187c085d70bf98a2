"""``sir-convert doctor``: a good host passes, and each broken set-up an operator can meet fails
with a FAIL row that names the problem and a ``fix:`` line that says what to do about it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.engine import gpu as engine_gpu
from sir_convert_a_lot.engine.gpu import GpuDevice, probe_nvml
from sir_convert_a_lot.ops import doctor
from sir_convert_a_lot.ops.cli import main
from sir_convert_a_lot.ops.doctor import gpu as doctor_gpu
from sir_convert_a_lot.ops.doctor import storage as doctor_storage
from tests.helpers import load_config, write_config

FOLDERS = ("inbox", "outbox", "state", "failed", "archive")
RUNNING_AS_ROOT = os.geteuid() == 0


def _make_folders(root: Path) -> None:
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)


def _good_setup(root: Path, **sections: dict[str, Any]) -> Path:
    config = write_config(root, **sections)
    config.chmod(0o600)
    _make_folders(root)
    return config


def _doctor(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["--config", str(config), "doctor", "--quick", *extra])
    return code, capsys.readouterr().out


def _rows(output: str) -> list[dict[str, str]]:
    """The table as rows: status, name, detail and the fix printed under it (if any)."""
    rows: list[dict[str, str]] = []
    for line in output.splitlines():
        match = re.match(r"^(OK|WARN|FAIL) {2,}(.*?) {2,}(.*)$", line)
        if match:
            status, name, detail = match.groups()
            rows.append({"status": status, "name": name, "detail": detail, "fix": ""})
        elif line.strip().startswith("fix:"):
            assert rows, f"a fix line with no row above it: {line!r}"
            rows[-1]["fix"] = line.strip().removeprefix("fix:").strip()
    return rows


def _row(output: str, name: str) -> dict[str, str]:
    found = [r for r in _rows(output) if r["name"] == name]
    assert len(found) == 1, f"expected one {name!r} row in:\n{output}"
    return found[0]


def _check(checks: list[doctor.Check], name: str) -> doctor.Check:
    found = [c for c in checks if c.name == name]
    assert len(found) == 1, f"expected one {name!r} check in {checks}"
    return found[0]


def test_a_good_setup_passes_with_an_ok_row_for_every_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path)
    code, output = _doctor(config, capsys)
    assert code == 0, output
    assert _row(output, "config")["status"] == "OK"
    for name in FOLDERS:
        row = _row(output, f"paths.{name}")
        assert row["status"] == "OK", output
        assert row["detail"] == str(tmp_path / name)
    assert _row(output, "config file")["status"] == "OK"
    assert _row(output, "no watch loop")["status"] == "OK"
    assert not [r for r in _rows(output) if r["status"] == "FAIL"], output
    assert re.search(r"^0 failed, \d+ warnings, \d+ ok$", output, re.MULTILINE), output


def test_a_folder_the_daemon_cannot_use_fails_with_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path)
    outbox = tmp_path / "outbox"
    if RUNNING_AS_ROOT:
        # root may write anywhere, so a permission check cannot fail: use a path that no user
        # can use as a folder instead.
        outbox.rmdir()
        outbox.write_text("not a folder\n", encoding="utf-8")
        expected_detail, expected_fix = "is not a folder", f"mkdir {outbox}"
    else:
        outbox.chmod(0o500)
        expected_detail, expected_fix = "is not writable", "chown"
    try:
        code, output = _doctor(config, capsys)
    finally:
        if not RUNNING_AS_ROOT:
            outbox.chmod(0o700)
    assert code == 1, output
    row = _row(output, "paths.outbox")
    assert row["status"] == "FAIL", output
    assert str(outbox) in row["detail"] and expected_detail in row["detail"], row
    assert expected_fix in row["fix"], row
    assert _row(output, "paths.inbox")["status"] == "OK"


def test_the_state_folder_inside_the_inbox_fails_as_a_watch_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "inbox" / "state"
    config = _good_setup(tmp_path, paths={"state": str(state)})
    state.mkdir(parents=True)
    code, output = _doctor(config, capsys)
    assert code == 1, output
    row = _row(output, "no watch loop")
    assert row["status"] == "FAIL", output
    assert "paths.state" in row["detail"] and "inside the inbox" in row["detail"], row
    assert "change the paths" in row["fix"], row


def test_a_missing_share_sentinel_fails_until_the_share_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path, watch={"sentinel": ".share"})
    sentinel = tmp_path / "inbox" / ".share"
    code, output = _doctor(config, capsys)
    assert code == 1, output
    row = _row(output, "share sentinel")
    assert row["status"] == "FAIL", output
    assert str(sentinel) in row["detail"] and "missing" in row["detail"], row
    assert f"touch {sentinel}" in row["fix"], row

    sentinel.touch()
    code, output = _doctor(config, capsys)
    assert code == 0, output
    assert _row(output, "share sentinel")["status"] == "OK", output


def test_a_group_writable_config_file_fails_with_chmod_as_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path)
    config.chmod(0o664)
    code, output = _doctor(config, capsys)
    assert code == 1, output
    row = _row(output, "config file")
    assert row["status"] == "FAIL", output
    assert str(config) in row["detail"] and "writable by group or others" in row["detail"]
    assert row["fix"] == f"chmod go-w {config}"


def test_a_forbidden_environment_variable_fails(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    _make_folders(tmp_path)
    unlocking = {"PATH": "/usr/bin", "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY": "1"}
    found = _check(doctor.run_checks(config, unlocking, deep_gpu=False), "environment")
    assert found.status == doctor.FAIL
    assert "SIR_CONVERT_A_LOT_ALLOW_CPU_ONLY" in found.detail
    assert found.fix and "unset" in found.fix

    clean = _check(doctor.run_checks(config, {"PATH": "/usr/bin"}, deep_gpu=False), "environment")
    assert clean.status == doctor.OK


def test_docling_with_an_empty_models_folder_fails_until_the_models_are_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sir_convert_a_lot.backends.models import LAYOUT, TABLEFORMER

    models_path = tmp_path / "models"
    models_path.mkdir()
    config = _good_setup(
        tmp_path,
        conversion={
            "backend_strategy": "docling",
            "acceleration_policy": "gpu_prefer",
            "ocr_mode": "off",
        },
        governance={
            "allow_cpu_only": False,
            "allow_cpu_fallback": True,
            "decision_record": "docs/decisions/0003-cpu-fallback-for-tests.md",
        },
        gpu={"models_path": str(models_path)},
    )
    code, output = _doctor(config, capsys)
    assert code == 1, output
    row = _row(output, "models")
    assert row["status"] == "FAIL", output
    assert str(models_path) in row["detail"] and LAYOUT in row["detail"], row
    assert row["fix"] == "sir-convert models download"

    # What `models download` leaves behind: the layout model and TableFormer (accurate).
    for folder in (LAYOUT, f"{TABLEFORMER}/accurate"):
        (models_path / folder).mkdir(parents=True)
        (models_path / folder / "model.safetensors").write_bytes(b"weights")
    _code, output = _doctor(config, capsys)
    assert _row(output, "models")["status"] == "OK", output


def test_an_invalid_config_exits_2_with_a_fail_config_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path, watch={"bogus_key": 1})
    code, output = _doctor(config, capsys)
    assert code == 2, output
    lines = output.splitlines()
    assert lines[0].startswith("FAIL  config") and "watch.bogus_key" in lines[0], output
    assert lines[1].strip().startswith("fix:"), output


def test_json_output_is_a_list_of_checks_with_status_name_detail_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path, watch={"sentinel": ".share"})
    code, output = _doctor(config, capsys, "--json")
    assert code == 1
    checks = json.loads(output)
    assert isinstance(checks, list) and checks
    for check in checks:
        assert set(check) == {"status", "name", "detail", "fix"}, check
        assert check["status"] in {"OK", "WARN", "FAIL"}
        assert all(isinstance(v, str) for v in check.values())
    by_name = {c["name"]: c for c in checks}
    assert by_name["paths.inbox"] == {
        "status": "OK",
        "name": "paths.inbox",
        "detail": str(tmp_path / "inbox"),
        "fix": "",
    }
    assert by_name["share sentinel"]["status"] == "FAIL"
    assert "touch" in by_name["share sentinel"]["fix"]


def _default_locked_config(root: Path) -> config_module.Config:
    config = config_module.parse(config_module.default_document(root), base_dir=root)
    assert config.defaults.acceleration_policy == "gpu_required"
    assert not config.governance.unlocked
    _make_folders(root)
    return config


def test_a_gpu_found_by_nvml_shows_as_ok_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = GpuDevice(
        index=0, name="NVIDIA H200", driver_version="550.54.15", memory_total_bytes=141 * 1024**3
    )
    monkeypatch.setattr(doctor_gpu, "probe_nvml", lambda index: ("ok", device))
    checks = doctor.run_checks(_default_locked_config(tmp_path), {}, deep_gpu=False)
    row = _check(checks, "GPU (NVML)")
    assert row.status == doctor.OK
    assert "NVIDIA H200" in row.detail and "550.54.15" in row.detail
    assert _check(checks, "gpu-first lock").status == doctor.OK


def test_the_real_probe_reports_this_hosts_gpu_under_the_locked_default(tmp_path: Path) -> None:
    checks = doctor.run_checks(_default_locked_config(tmp_path), {}, deep_gpu=False)
    row = _check(checks, "GPU (NVML)")
    status, device = probe_nvml(0)
    if device is None:
        # No NVIDIA driver here: the GPU-first lock holds, so a missing GPU is a failure.
        assert row.status == doctor.FAIL, row
        assert status in row.detail
        assert "NVIDIA driver" in row.fix
    else:
        assert row.status == doctor.OK, row
        assert device.name in row.detail


def test_right_after_init_config_every_missing_folder_is_a_problem_with_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    root = tmp_path / "srv"
    assert main(["init-config", "--output", str(config), "--root", str(root)]) == 0
    capsys.readouterr()
    code, output = _doctor(config, capsys)
    assert code == 1, output
    for name in FOLDERS:
        row = _row(output, f"paths.{name}")
        assert row["status"] == "FAIL", output
        assert row["detail"] == f"{root / name} does not exist", row
        # the state: the service's alone; results: read by the share, written by the service
        mode = {"state": "0750", "inbox": "2775"}.get(name, "0755")
        assert f"-g sir-convert -m {mode} {root / name}" in row["fix"], row
    assert "Traceback" not in output


def test_an_unmounted_share_fails_on_the_inbox_and_the_sentinel_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    share = tmp_path / "share"
    config = _good_setup(
        tmp_path,
        paths={"inbox": str(share / "inbox"), "state": str(share / "state")},
        watch={"sentinel": ".sir-convert-share"},
    )
    assert not share.exists()  # the share is not mounted: nothing of it is there
    code, output = _doctor(config, capsys)
    assert code == 1, output
    inbox = _row(output, "paths.inbox")
    assert inbox["status"] == "FAIL" and "does not exist" in inbox["detail"], output
    assert "mount the share" in inbox["fix"], inbox
    sentinel = _row(output, "share sentinel")
    assert sentinel["status"] == "FAIL" and "is the share mounted" in sentinel["detail"]
    assert _row(output, "paths.outbox")["status"] == "OK", output


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_gpu, "probe_nvml", lambda index: ("nvml_unavailable", None))


def test_no_gpu_under_the_lock_says_every_file_fails_and_how_to_lift_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpu(monkeypatch)
    checks = doctor.run_checks(_default_locked_config(tmp_path), {}, deep_gpu=False)
    row = _check(checks, "backend (conversion)")
    assert row.status == doctor.FAIL
    assert "no usable GPU" in row.detail and "gpu_not_available" in row.detail, row
    for key in (
        "governance.allow_cpu_only",
        "governance.decision_record",
        'conversion.acceleration_policy = "cpu_only"',
        'conversion.backend_strategy = "pymupdf"',
        'conversion.ocr_mode = "off"',
    ):
        assert key in row.fix, row


def test_cpu_only_while_the_lock_holds_fails_even_with_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = GpuDevice(index=0, name="GPU", driver_version="1", memory_total_bytes=1024**3)
    monkeypatch.setattr(doctor_gpu, "probe_nvml", lambda index: ("ok", device))
    locked = {"allow_cpu_only": False, "decision_record": ""}
    config = load_config(tmp_path, governance=locked, profiles={"scans": {"ocr_mode": "off"}})
    _make_folders(tmp_path)
    checks = doctor.run_checks(config, {}, deep_gpu=False)
    for name in ("backend (conversion)", "backend (profiles.scans)"):
        row = _check(checks, name)
        assert row.status == doctor.FAIL, row
        assert '"cpu_only" while the GPU-first lock holds' in row.detail, row
        assert "governance.allow_cpu_only = true" in row.fix, row


def test_the_unlocked_cpu_backend_can_run_without_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpu(monkeypatch)
    checks = doctor.run_checks(load_config(tmp_path), {}, deep_gpu=False)
    row = _check(checks, "backend (conversion)")
    assert (row.status, row.detail) == (doctor.OK, "pymupdf on cpu")


def test_docling_without_models_path_or_hub_cache_fails_when_offline(tmp_path: Path) -> None:
    config = config_module.parse(
        {
            **config_module.default_document(tmp_path),
            "conversion": {"acceleration_policy": "gpu_required", "backend_strategy": "docling"},
            "gpu": {"models_path": ""},  # docling's own Hugging Face cache
        },
        base_dir=tmp_path,
    )
    _make_folders(tmp_path)
    cache = tmp_path / "hub"
    environ = {"HF_HUB_CACHE": str(cache)}
    online = _check(doctor.run_checks(config, environ, deep_gpu=False), "models")
    assert online.status == doctor.WARN and str(cache) in online.detail, online
    offline = {**environ, "HF_HUB_OFFLINE": "1"}
    row = _check(doctor.run_checks(config, offline, deep_gpu=False), "models")
    assert row.status == doctor.FAIL and "docling cannot load" in row.detail, row
    assert "gpu.models_path" in row.fix and "models download" in row.fix, row

    for repo in ("docling-layout-heron", "docling-models"):
        (cache / f"models--docling-project--{repo}" / "snapshots" / "abc").mkdir(parents=True)
    cached = _check(doctor.run_checks(config, offline, deep_gpu=False), "models")
    assert cached.status == doctor.OK, cached


def test_a_check_that_breaks_is_a_fail_row_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(root: Path) -> int:
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr(doctor_storage, "count_folders", broken)
    checks = doctor.run_checks(load_config(tmp_path), {}, deep_gpu=False)
    row = _check(checks, "inotify limits")
    assert row.status == doctor.FAIL and "Permission denied" in row.detail, row


def test_pymupdf_with_a_gpu_policy_fails_the_config_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path, conversion={"acceleration_policy": "gpu_required"})
    code, output = _doctor(config, capsys)
    assert code == 2, output
    first = output.splitlines()[0]
    assert first.startswith("FAIL  config") and "conversion.acceleration_policy" in first
    assert 'use acceleration_policy = "cpu_only"' in first, first


def test_json_output_stays_json_when_the_config_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _good_setup(tmp_path, watch={"bogus_key": 1})
    code, output = _doctor(config, capsys, "--json")
    assert code == 2
    (row,) = json.loads(output)
    assert row["status"] == "FAIL" and row["name"] == "config", row
    assert "watch.bogus_key" in row["detail"] and row["fix"], row


def test_an_unusable_device_lock_folder_fails_saying_why_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _default_locked_config(tmp_path / "spool")  # uses the GPU: the row is there

    def lock_row(folder: Path) -> doctor.Check:
        monkeypatch.setattr(engine_gpu, "LOCK_FOLDER", folder)
        return _check(doctor.run_checks(config, {}, deep_gpu=False), "device lock folder")

    row = lock_row(tmp_path / "run-sir-convert")
    assert row.status == doctor.FAIL
    assert "does not exist" in row.detail and "systemd-tmpfiles --create" in row.fix

    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)
    row = lock_row(public)
    assert row.status == doctor.FAIL
    assert "writable by anyone" in row.detail and "mode 0777" in row.detail, row
    assert "remove it" in row.fix

    link = tmp_path / "link"
    link.symlink_to(public)
    row = lock_row(link)
    assert row.status == doctor.FAIL and "not a folder: a link" in row.detail, row

    private = tmp_path / "private"
    private.mkdir(mode=0o2770)
    private.chmod(0o2770)
    row = lock_row(private)
    assert row.status == doctor.OK and "mode 2770" in row.detail, row


def test_a_failed_folder_the_share_may_write_fails_doctor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    assert main(["init-config", "--output", str(config), "--root", str(tmp_path / "srv")]) == 0
    for name in FOLDERS:
        (tmp_path / "srv" / name).mkdir(parents=True, mode=0o750 if name == "state" else 0o755)
    (tmp_path / "srv" / "failed").chmod(0o2775)
    capsys.readouterr()

    code, output = _doctor(config, capsys)

    row = _row(output, "paths.failed")
    assert code == 1
    assert row["status"] == "FAIL" and "writable by group or others" in row["detail"], row
    assert row["fix"] == f"chmod go-w {tmp_path / 'srv' / 'failed'}"


def test_the_legacy_formats_row_says_what_is_missing_and_where_libreoffice_is(
    tmp_path: Path,
) -> None:
    config = load_config(tmp_path)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    row = _check(doctor.run_checks(config, {"PATH": str(empty)}, deep_gpu=False), "legacy formats")
    assert row.status == doctor.WARN
    assert "LibreOffice (soffice) is not installed" in row.detail
    assert ".doc, .ppt, .xls, .rtf" in row.detail and "converter_missing" in row.detail
    assert "apt-get install" in row.fix and "conversion.formats" in row.fix
    soffice = empty / "soffice"
    soffice.write_text("#!/bin/sh\n")
    soffice.chmod(0o755)
    row = _check(doctor.run_checks(config, {"PATH": str(empty)}, deep_gpu=False), "legacy formats")
    assert row.status == doctor.OK and str(soffice) in row.detail
