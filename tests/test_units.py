"""The shipped systemd files: the template unit and the drop-in example verify cleanly with
systemd's own checker, the unit holds what the contract (section 8) and the daemon rely on, and
the tmpfiles.d / sysusers.d files create what the unit expects. The example Ray units (head and
GPU worker, for engine.kind = "ray") and the daemon's Ray drop-in verify too, and pin what the
operator's guide tells the firewall."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.ops.cli import _parser
from tests.helpers import REPO, VENV_BIN

pytestmark = pytest.mark.slow  # systemd-analyze and systemd-tmpfiles run as commands

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "sir-convert@.service"
DROP_IN = SYSTEMD / "sir-convert@.service.d" / "10-site.conf.example"
TMPFILES = SYSTEMD / "sir-convert.tmpfiles.conf"
SYSUSERS = SYSTEMD / "sir-convert.sysusers.conf"
SHIPPED_BINARY = "/opt/sir-convert/.venv/bin/sir-convert"
RAY_HEAD = SYSTEMD / "ray-head.service"
RAY_WORKER = SYSTEMD / "ray-worker.service"
RAY_DROP_IN = SYSTEMD / "sir-convert@.service.d" / "20-ray.conf.example"
SHIPPED_RAY = "/opt/sir-convert/.venv/bin/ray"
INSTANCE = "sir-convert@0.service"
DEFAULT_STOP_GRACE = config_module.SCHEMA["service"]["stop_grace_seconds"].default
TRUE = {"yes", "true", "on", "1"}

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys in order (systemd's
    DeviceAllow=, ExecStart= resets) where configparser would merge or reject them."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, [])
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= should be set once, found {found}"
    return found[0]


def seconds(span: str) -> float:
    """A systemd time span ("90", "90s", "1min 30s", "5m") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span.strip())
    assert parts and "".join(f"{n}{u}" for n, u in parts) == span.replace(" ", ""), span
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def exec_start_args(command: str, index: int = 0) -> list[str]:
    """The daemon's arguments from an ExecStart= line, with %i and %H expanded as systemd
    would for instance ``index``."""
    argv = shlex.split(command.replace("%i", str(index)).replace("%H", socket.gethostname()))
    assert argv[0].endswith("/sir-convert"), argv
    return argv[1:]


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


# -- systemd's own checker ---------------------------------------------------------------------


def _instantiate(folder: Path, source: Path, name: str, shipped: str = SHIPPED_BINARY) -> Path:
    """A copy with ExecStart pointing at this checkout's binary (verify checks it exists)."""
    text = source.read_text(encoding="utf-8")
    assert shipped in text, f"{source.name} no longer starts {shipped}"
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    local = VENV_BIN / Path(shipped).name
    target.write_text(text.replace(shipped, str(local)), "utf-8")
    return target


def _verify(unit_file: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_file.parent}:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [tool, "verify", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_the_unit_verifies_without_a_single_warning(tmp_path: Path) -> None:
    unit_file = _instantiate(tmp_path, UNIT, INSTANCE)
    result = _verify(unit_file)
    # verify exits 0 on parse warnings ("Unknown key name", "Failed to parse"): none allowed.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_drop_in_example_verifies_on_top_of_the_unit(tmp_path: Path) -> None:
    # First make sure this systemd reads drop-ins next to a unit given by path, with a drop-in
    # that must draw a warning; otherwise a clean verify below would prove nothing.
    probe_dir = tmp_path / "probe"
    probe_unit = _instantiate(probe_dir, UNIT, INSTANCE)
    probe = probe_dir / f"{INSTANCE}.d" / "99-probe.conf"
    probe.parent.mkdir()
    probe.write_text("[Service]\nTimeoutStopSec=not-a-time-span\n", encoding="utf-8")
    reads_drop_ins = "99-probe.conf" in _verify(probe_unit).stderr

    if reads_drop_ins:
        unit_file = _instantiate(tmp_path / "units", UNIT, INSTANCE)
        _instantiate(unit_file.parent, DROP_IN, f"{INSTANCE}.d/10-site.conf")
        result = _verify(unit_file)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    # Either way (an older systemd may ignore drop-ins given this way), the example's keys must
    # mean what its comments say.
    drop_in = parse_unit(DROP_IN.read_text(encoding="utf-8"))
    assert set(drop_in) <= {"Unit", "Service"}
    assert values(drop_in, "Unit", "RequiresMountsFor")
    assert values(drop_in, "Service", "ReadWritePaths")
    exec_start = values(drop_in, "Service", "ExecStart")
    assert exec_start[0] == "", "a drop-in must reset ExecStart= before replacing it"
    assert len(exec_start) == 2
    args = _parser().parse_args(exec_start_args(exec_start[1]))
    assert (args.command, args.gpu) == ("run", 0)
    assert seconds(one(drop_in, "Service", "TimeoutStopSec")) > DEFAULT_STOP_GRACE


# -- what the contract and the daemon rely on --------------------------------------------------


def test_the_unit_is_a_notify_service_with_a_watchdog(unit: Unit) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") in {"main", "all"}
    assert seconds(one(unit, "Service", "WatchdogSec")) > 0
    # READY=1 waits for warm models: the start timeout must allow it.
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= 300


def test_the_unit_restarts_on_failure_but_not_on_a_bad_config(unit: Unit) -> None:
    assert one(unit, "Service", "Restart") == "on-failure"
    assert "2" in one(unit, "Service", "RestartPreventExitStatus").split()
    # systemd ignores the start limits in [Service]: they belong in [Unit].
    for key in ("StartLimitIntervalSec", "StartLimitBurst"):
        assert values(unit, "Unit", key), f"{key}= missing from [Unit]"
        assert not values(unit, "Service", key), f"{key}= in [Service] is ignored"
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1


def test_the_unit_gives_the_running_job_its_grace_period_on_stop(unit: Unit) -> None:
    assert DEFAULT_STOP_GRACE == 60
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > DEFAULT_STOP_GRACE
    # SIGTERM to the daemon only; the worker is stopped by the daemon, SIGKILL for leftovers.
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "ExecReload").endswith("-HUP $MAINPID")


def test_the_unit_runs_as_its_own_user_with_a_umask_and_a_cache(unit: Unit) -> None:
    assert one(unit, "Service", "User") not in {"", "root", "0"}
    assert one(unit, "Service", "Group") not in {"", "root", "0"}
    assert re.fullmatch(r"0?[0-7]{3}", one(unit, "Service", "UMask"))
    assert one(unit, "Service", "CacheDirectory")


def test_the_unit_is_hardened_without_hiding_the_gpu(unit: Unit) -> None:
    assert one(unit, "Service", "ProtectSystem") == "strict"
    writable = " ".join(values(unit, "Service", "ReadWritePaths")).split()
    assert str(config_module.DEFAULT_ROOT) in writable
    assert "/run/sir-convert" in writable  # the GPU device locks
    assert one(unit, "Service", "NoNewPrivileges").lower() in TRUE
    assert one(unit, "Service", "PrivateTmp").lower() in TRUE
    assert one(unit, "Service", "ProtectHome").lower() in TRUE | {"read-only", "tmpfs"}
    # The two settings that break CUDA: PrivateDevices hides /dev/nvidia*, and the driver and
    # PyTorch need writable-executable memory.
    for key in ("PrivateDevices", "MemoryDenyWriteExecute"):
        assert all(v.lower() not in TRUE for v in values(unit, "Service", key)), key
    assert one(unit, "Service", "DevicePolicy") == "closed"
    allowed = {v.split()[0]: v.split()[1:] for v in values(unit, "Service", "DeviceAllow")}
    for node in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia%i"):
        assert node in allowed, f"DeviceAllow={node} missing"
        assert allowed[node] == ["rw"], f"DeviceAllow={node} must be rw"


def test_the_unit_grants_only_the_lease_capability_for_the_open_writer_check(unit: Unit) -> None:
    """Without CAP_LEASE the service user cannot ask whether smbd still writes a share user's
    file; with anything more it could override file modes."""
    assert one(unit, "Service", "CapabilityBoundingSet").split() == ["CAP_LEASE"]
    assert one(unit, "Service", "AmbientCapabilities").split() == ["CAP_LEASE"]
    assert one(unit, "Service", "NoNewPrivileges").lower() in TRUE


def test_the_unit_starts_one_instance_per_gpu_and_waits_for_the_share(unit: Unit) -> None:
    command = one(unit, "Service", "ExecStart")
    # No --instance: it would silently override instances.name from the config.
    assert "--instance" not in shlex.split(command)
    assert "--gpu %i" in command
    args = _parser().parse_args(exec_start_args(command, index=3))
    assert args.command == "run"
    assert args.gpu == 3
    assert args.instance is None
    assert config_module.default_instance_name(3) == f"{socket.gethostname()}-gpu3"
    assert args.config == config_module.DEFAULT_CONFIG_PATH
    mounts = " ".join(values(unit, "Unit", "RequiresMountsFor")).split()
    assert str(config_module.DEFAULT_ROOT) in mounts


# -- tmpfiles.d and sysusers.d -----------------------------------------------------------------


def _tmpfiles_lines() -> list[list[str]]:
    lines = TMPFILES.read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_tmpfiles_creates_the_lock_and_cache_folders_for_the_service_user(unit: Unit) -> None:
    entries = {fields[1]: fields for fields in _tmpfiles_lines()}
    cache = f"/var/cache/{one(unit, 'Service', 'CacheDirectory')}"
    assert set(entries) == {
        "/run/sir-convert",
        cache,
        str(config_module.DEFAULT_MODELS_PATH),  # where models download puts them
        "/var/lib/sir-convert",  # the service user's home in sysusers.d
    }
    assert str(config_module.DEFAULT_MODELS_PATH).startswith(cache + "/")
    assert entries["/run/sir-convert"][2] == "2770"  # root's lock files keep the group
    user, group = one(unit, "Service", "User"), one(unit, "Service", "Group")
    for path, fields in entries.items():
        assert len(fields) >= 5, fields
        kind, _path, mode, owner, owner_group = fields[:5]
        assert kind == "d", path
        assert re.fullmatch(r"[02][0-7]{3}", mode), (path, mode)
        assert not int(mode, 8) & 0o007, f"{path} must not be open to others"
        assert int(mode, 8) & 0o700 == 0o700, f"{path} must be usable by its owner"
        assert (owner, owner_group) == (user, group), path
    sysusers = [
        line.split()
        for line in SYSUSERS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [fields[:2] for fields in sysusers] == [["u", user]]
    assert sysusers[0][-1] in entries  # the home folder exists


def test_tmpfiles_and_sysusers_apply_cleanly_to_an_empty_root(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    tmpfiles = shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers or systemd-tmpfiles is not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, conf in ((sysusers, SYSUSERS), (tmpfiles, TMPFILES)):
        argv = [tool, f"--root={root}", *(["--create"] if tool == tmpfiles else []), str(conf)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "ignoring" not in result.stderr.lower(), result.stderr
    passwd = (root / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    users = {line.split(":")[0]: int(line.split(":")[2]) for line in passwd}
    uid = users["sir-convert"]
    assert uid != 0
    for fields in _tmpfiles_lines():
        created = root / fields[1].lstrip("/")
        info = created.stat()
        assert stat.S_ISDIR(info.st_mode), created
        assert stat.S_IMODE(info.st_mode) == int(fields[2], 8), created
        assert info.st_uid == uid, created


# -- the example Ray units (engine.kind = "ray") -----------------------------------------------

RAY_UNITS = {"ray-head.service": RAY_HEAD, "ray-worker.service": RAY_WORKER}
# The ports the operator's guide tells the firewall about: the same on every node.
RAY_PORTS = {
    "node_manager_port": 6380,
    "object_manager_port": 6381,
    "dashboard_agent_grpc_port": 6382,
    "dashboard_agent_listen_port": 6383,
    "runtime_env_agent_port": 6384,
    "metrics_export_port": 6385,
    "min_worker_port": 20000,
    "max_worker_port": 20099,
}
RAY_TEMP_DIR = "/var/lib/sir-convert/ray"
GUIDE = REPO / "docs" / "operations.md"


def _ray_start(unit: Unit) -> dict[str, object]:
    """ExecStart='s `ray start` options, parsed by Ray's own command line (an unknown or
    misspelt flag fails here)."""
    scripts = pytest.importorskip("ray.scripts.scripts")
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0] == SHIPPED_RAY and argv[1] == "start", argv
    params: dict[str, object] = scripts.start.make_context("start", argv[2:]).params
    return params


@pytest.mark.parametrize("name", sorted(RAY_UNITS))
def test_the_ray_units_verify_without_a_single_warning(tmp_path: Path, name: str) -> None:
    if not (VENV_BIN / "ray").exists():
        pytest.skip("Ray is not installed in .venv (tools/install includes it)")
    unit_file = _instantiate(tmp_path, RAY_UNITS[name], name, shipped=SHIPPED_RAY)
    result = _verify(unit_file)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_ray_drop_in_verifies_on_top_of_the_unit(tmp_path: Path) -> None:
    units = tmp_path / "units"
    unit_file = _instantiate(units, UNIT, INSTANCE)
    _instantiate(units, RAY_HEAD, "ray-head.service", shipped=SHIPPED_RAY)
    drop_in_file = units / f"{INSTANCE}.d" / "20-ray.conf"
    drop_in_file.parent.mkdir()
    shutil.copyfile(RAY_DROP_IN, drop_in_file)
    result = _verify(unit_file)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    drop_in = parse_unit(RAY_DROP_IN.read_text(encoding="utf-8"))
    assert "ray-head.service" in values(drop_in, "Unit", "After")
    assert one(drop_in, "Service", "EnvironmentFile") == "/etc/sir-convert/ray.env"
    # The daemon is a Ray driver: it needs the head's sockets, and its own /tmp is private.
    assert one(drop_in, "Service", "ReadWritePaths") == RAY_TEMP_DIR


@pytest.mark.parametrize("name", sorted(RAY_UNITS))
def test_the_ray_units_pin_their_ports_and_run_as_the_service_user(name: str) -> None:
    unit = parse_unit(RAY_UNITS[name].read_text(encoding="utf-8"))
    daemon = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert one(unit, "Service", "User") == one(daemon, "Service", "User")
    assert one(unit, "Service", "Group") == one(daemon, "Service", "Group")
    assert one(unit, "Service", "EnvironmentFile") == "/etc/sir-convert/ray.env"
    assert one(unit, "Service", "Restart") == "on-failure"
    for key in ("PrivateDevices", "MemoryDenyWriteExecute"):  # the actors need the GPU
        assert all(v.lower() not in TRUE for v in values(unit, "Service", key)), key
    params = _ray_start(unit)
    assert params["block"] is True  # systemd supervises the node
    assert params["disable_usage_stats"] is True
    assert params["temp_dir"] == RAY_TEMP_DIR
    assert {key: params[key] for key in RAY_PORTS} == RAY_PORTS
    if name == "ray-head.service":
        assert params["head"] is True and params["port"] == 6379
        assert params["num_gpus"] is None  # Ray counts the head host's GPUs
        assert params["num_cpus"] is not None
    else:
        assert not params["head"] and str(params["address"]).endswith(":6379")
    guide = GUIDE.read_text(encoding="utf-8")
    assert "6379" in guide and "20000-20099" in guide and "6380-6385" in guide
