"""What every command shares: its exit codes, the two ways it refuses, and how it loads the
config. Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (one clear
line on stderr naming what is wrong)."""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config, load
from sir_convert_a_lot.engine.policy import FORBIDDEN_ENV_PREFIX, forbidden_environment
from sir_convert_a_lot.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked. Exit code 2."""


class RuntimeFailure(Exception):
    """The command was right but the host refused (permissions, disk). Exit code 1."""


def os_problem(exc: OSError) -> str:
    """One sentence for an operating-system refusal: what, where, and what to do about it."""
    where = f"{exc.filename}: " if exc.filename else ""
    if isinstance(exc, PermissionError):
        return (
            f"{where}permission denied; run it as a user who may (for the spool: the service "
            "user: runuser -u sir-convert -- ...), or fix the owner or mode of that path"
        )
    if isinstance(exc, FileNotFoundError):
        return f"{where}no such file or folder; check the path (and that the share is mounted)"
    if exc.errno == errno.ENOSPC:
        return f"{where}no space left on the device; free some space and try again"
    if exc.errno == errno.EROFS:
        return f"{where}the filesystem is read-only; remount it writable or choose another path"
    return f"{where}{exc.strerror or exc}; check that path"


def load_config(args: argparse.Namespace) -> Config:
    """The config named by ``--config``, with logging set up the way it asks."""
    config = load(args.config)
    logs.configure(config.logging.level, config.logging.format)
    return config


def refuse_environment_unlock() -> None:
    """Commands that convert refuse to start while an environment variable claims to lift the
    GPU-first lock: only a decision record in the config can."""
    found = forbidden_environment(dict(os.environ))
    if found:
        raise ConfigError(
            f"{found[0]}: the GPU-first lock cannot be lifted by environment variables "
            f"({FORBIDDEN_ENV_PREFIX}*); unset it and use governance.decision_record instead"
        )


@dataclass(frozen=True)
class Command:
    """One ``sir-convert`` command: its name and help line, the arguments it takes (given the
    parent parser that accepts ``--config`` after the command too) and what it does."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser, argparse.ArgumentParser], None]
    execute: Callable[[argparse.Namespace], int]
