"""The daemon's side of two small systemd protocols: sd_notify and journald's native protocol.

Both are a datagram to a Unix socket (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/, sd_notify(3)),
written here in a few lines rather than through a binding of libsystemd: the bindings with wheels
(cysystemd) send the journal to the fixed /run/systemd/journal/socket, so the wire format could
not be tested against a socket of the test's own, and a C library is more to trust in the one
process that must never die. Everything here is a no-op outside systemd.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# Tests and unusual containers can point the journal elsewhere.
JOURNAL_SOCKET_ENV = "SIR_CONVERT_JOURNAL_SOCKET"


def _address(path: str) -> str:
    # A leading "@" names a socket in the abstract namespace.
    return "\0" + path[1:] if path.startswith("@") else path


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; silent when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.path = env.get("NOTIFY_SOCKET") or None
        watchdog_usec = env.get("WATCHDOG_USEC")
        watchdog_pid = env.get("WATCHDOG_PID")
        self.watchdog_seconds: float | None = None
        if watchdog_usec and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            with contextlib.suppress(ValueError):
                self.watchdog_seconds = int(watchdog_usec) / 1_000_000
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def send(self, **fields: Any) -> bool:
        """``send(READY=1, STATUS="idle")`` sends ``READY=1\\nSTATUS=idle``."""
        if self.path is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, _address(self.path))
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def watchdog(self) -> None:
        self.send(WATCHDOG=1)

    def stopping(self, status: str) -> None:
        self.send(STOPPING=1, STATUS=status)

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec, STATUS="reloading the config")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when systemd connected our stderr to the journal (``$JOURNAL_STREAM`` names the
    device and inode of that stream, and stderr still is it)."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        info = os.fstat(fd)
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def journal_field_name(key: str) -> str:
    """Journal field names: upper-case letters, digits and underscores, not starting with an
    underscore or digit (those are trusted fields journald sets itself), at most 64 bytes."""
    cleaned = "".join(c if c.isascii() and c.isalnum() else "_" for c in key.upper())
    cleaned = cleaned.lstrip("_0123456789") or "FIELD"
    return cleaned[:64]


def encode_journal_entry(fields: Mapping[str, str]) -> bytes:
    """The native protocol: ``KEY=value\\n``, or for values holding a newline
    ``KEY\\n<64-bit little-endian length><value>\\n``."""
    parts: list[bytes] = []
    for key, value in fields.items():
        name = key.encode("ascii")
        data = value.encode("utf-8", errors="surrogateescape")
        if b"\n" in data:
            parts.append(name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name + b"=" + data + b"\n")
    return b"".join(parts)


class JournalWriter:
    """Sends encoded entries to journald; entries too big for one datagram go through a sealed
    memfd, as the protocol specifies."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get(JOURNAL_SOCKET_ENV) or JOURNAL_SOCKET
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def write(self, entry: bytes) -> None:
        try:
            self._socket.sendto(entry, _address(self.path))
        except OSError as exc:
            if exc.errno not in (90, 105):  # EMSGSIZE, ENOBUFS
                raise
            self._send_memfd(entry)

    def _send_memfd(self, entry: bytes) -> None:
        fd = os.memfd_create("sir-convert-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            with contextlib.suppress(OSError):
                import fcntl

                seals = (
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                )
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            socket.send_fds(self._socket, [b""], [fd], 0, _address(self.path))
        finally:
            os.close(fd)
