"""A private Samba server on 127.0.0.1 for tests and tools: the inbox shared the way operators
share it.

smbd runs in the foreground with every folder it writes under the test's own temporary folder,
on a free loopback port, and is stopped with its whole process group when the test ends. The
client is smbprotocol's ``smbclient``: an SMB2/3 client in Python, so a test can write half a
file, pause with the handle open, preallocate the size as Windows Explorer does, and finish.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

USER = "root"
PASSWORD = "sir-convert-test"  # noqa: S105 - a throwaway account of a loopback-only test server

_CONFIG = """\
[global]
  server role = standalone server
  smb ports = {port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  server min protocol = SMB2
  pid directory = {root}/run
  lock directory = {root}/lock
  state directory = {root}/state
  cache directory = {root}/cache
  private dir = {root}/private
  ncalrpc dir = {root}/run/ncalrpc
  binddns dir = {root}/private/bind-dns
  passdb backend = tdbsam:{root}/private/passdb.tdb
  log file = {root}/smbd.log
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[inbox]
  path = {share}
  read only = no
"""


def missing() -> str | None:
    """Why no Samba test can run here, or None when smbd and the client are available."""
    if shutil.which("smbd") is None or shutil.which("smbpasswd") is None:
        return "smbd is not installed (as root, tools/test installs Debian's samba package)"
    try:
        import smbclient  # noqa: F401
    except ImportError:
        return "the smbprotocol client is not installed (tools/install installs the dev extras)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SambaShare:
    """One share, ``inbox``, exporting ``share`` over SMB on a loopback port."""

    def __init__(self, root: Path, share: Path) -> None:
        self.root = root
        self.share = share
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SambaShare:
        for folder in ("run", "lock", "state", "cache", "private"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        config = self.root / "smb.conf"
        config.write_text(_CONFIG.format(port=self.port, root=self.root, share=self.share))
        subprocess.run(
            ["smbpasswd", "-c", str(config), "-s", "-a", USER],
            input=f"{PASSWORD}\n{PASSWORD}\n".encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.process = subprocess.Popen(
            [
                "smbd",
                "--foreground",
                "--no-process-group",
                f"--configfile={config}",
                "--debug-stdout",
                "--debuglevel=1",
            ],
            stdout=(self.root / "smbd.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children share this group, so one killpg ends all
        )
        self._wait_listening()
        import smbclient

        smbclient.register_session("127.0.0.1", username=USER, password=PASSWORD, port=self.port)
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.root / "smbd.out").read_text(errors="replace")
        raise RuntimeError(f"smbd did not start listening on port {self.port}:\n{log[-2000:]}")

    def open(self, name: str, mode: str) -> BinaryIO:
        import smbclient

        handle: Any = smbclient.open_file(rf"\\127.0.0.1\inbox\{name}", mode=mode, port=self.port)
        return handle  # type: ignore[no-any-return]

    def stop(self) -> None:
        import smbclient

        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache()
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # any connection child left behind


@contextlib.contextmanager
def samba_share(root: Path, share: Path) -> Iterator[SambaShare]:
    server = SambaShare(root, share)
    try:
        yield server.start()
    finally:
        server.stop()
