"""Running the real daemon as a subprocess, the way systemd does, and reading its JSON log.

The ``sir-convert`` it runs is the one installed beside the Python running this (the same
environment); ``bin_dir`` and ``cwd`` say otherwise where a caller needs to."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.waiting import wait_for
from sir_convert_a_lot.config import load

# The scripts of the environment this Python runs in (a venv's bin/, where sir-convert is).
SCRIPTS = Path(sys.executable).parent

_PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore file modes.
_PERMISSION_OVERRIDES = (1, 2, 3)
_CAP_SETPCAP = 8
CAP_LEASE = 28


def can_obey_permissions() -> bool:
    """Whether a daemon started here can be made subject to file modes: any non-root user is;
    root is once it drops its override capabilities, which needs CAP_SETPCAP."""
    if os.geteuid() != 0:
        return True
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_SETPCAP & 1)
    return False


def dropping(*capabilities: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child drops these capabilities from its bounding set before exec,
    so root's program runs without them (e.g. the permission overrides, so that a read-only
    folder stops it for real, or CAP_LEASE)."""

    def drop() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in capabilities:
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


drop_permission_override = dropping(*_PERMISSION_OVERRIDES)


class Daemon:
    """``sir-convert --config CFG run`` in a subprocess with its log in a file: the one way the
    tests and the tools start a daemon."""

    def __init__(
        self,
        config: Path,
        *,
        instance: str | None = None,
        harness: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log_name: str = "daemon",
        obey_permissions: bool = False,
        drop_capabilities: tuple[int, ...] = (),
        cwd: Path | None = None,
        bin_dir: Path = SCRIPTS,
        command: list[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.config = config
        self.instance = instance
        self.log_path = log_path or config.parent / f"{log_name}-{instance or 'default'}.log"
        self.cwd = cwd if cwd is not None else Path.cwd()
        argv = [str(bin_dir / "sir-convert"), "--config", str(config), "run"]
        if command is not None:
            # A daemon of the caller's own (a tool's no-op engine, another tree's package, the
            # module where no console script is installed): its whole command line.
            argv = list(command)
        elif harness:
            # A module (run with -m from cwd) that wraps the daemon's own functions, then runs
            # its CLI.
            argv = [str(bin_dir / "python"), "-m", *harness, *argv[1:]]
        if instance and command is None:
            argv += ["--instance", instance]
        self.argv = argv
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if obey_permissions:
            drop_capabilities += _PERMISSION_OVERRIDES
        self.preexec = (
            dropping(*drop_capabilities) if drop_capabilities and os.geteuid() == 0 else None
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self, wait_ready: bool = True, timeout: float = 60, by_lease: bool = False) -> Daemon:
        """Start it; with ``wait_ready``, return once it is ready (models warm, start-up scan
        done): by its ``daemon_ready`` event, or with ``by_lease`` by its lease saying so, which
        holds at any log level."""
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=self.preexec,
        )
        if wait_ready:
            try:
                if by_lease:
                    self.wait_lease_ready(timeout)
                else:
                    self.wait_event("daemon_ready", timeout=timeout)
            except BaseException:  # a wait cut short (Ctrl-C, SIGTERM) takes the daemon with it
                self.stop()
                raise
        return self

    def wait_lease_ready(self, timeout: float) -> None:
        config = load(self.config)
        lease = config.paths.state / "instances" / f"{self.instance or config.instances.name}.lease"

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before it was ready:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            try:
                return bool(json.loads(lease.read_text()).get("state") == "ready")
            except (OSError, ValueError):
                return False

        wait_for(ready, timeout=timeout, interval=0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        assert self.process is not None
        return self.process.poll()

    def stop(self, timeout: float = 60) -> int | None:
        """Asked to stop (SIGTERM), then killed if it has not within ``timeout``; its exit code
        (None if it never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.wait(30)

    def events(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def wait_event(self, name: str, timeout: float = 60, count: int = 1) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]] | None:
            matching = [e for e in self.events() if e.get("event") == name]
            if len(matching) >= count:
                return matching
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before {count}x {name}:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            return None

        result: list[dict[str, Any]] = wait_for(seen, timeout=timeout)
        return result

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait(30)


def run_cli(
    *args: str,
    config: Path | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    bin_dir: Path = SCRIPTS,
) -> subprocess.CompletedProcess[str]:
    argv = [str(bin_dir / "sir-convert")]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        [*argv, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
