"""``sir-convert``: the command line, its parser and dispatch. Each command's arguments and code
live in ``ops/commands/<command>.py``; exit codes and the refusals they map from in
``ops/base.py`` (0 success, 1 runtime failure, 2 usage or configuration error, with one clear
line on stderr naming what is wrong)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import DEFAULT_CONFIG_PATH
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.ops.base import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Command,
    RuntimeFailure,
    UsageError,
    os_problem,
)
from sir_convert_a_lot.ops.commands import convert, doctor, init_config, models, retry, run, status
from sir_convert_a_lot.versions import build_id, package_version

TRACEBACK_VARIABLE = "SIR_CONVERT_TRACEBACK"

# In the order ``sir-convert --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    convert.COMMAND,
    status.COMMAND,
    retry.COMMAND,
    models.COMMAND,
    doctor.COMMAND,
    init_config.COMMAND,
)
_BY_NAME = {command.name: command for command in COMMANDS}


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr that says where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see: {self.prog} --help\n")


class _ShowVersion(argparse.Action):
    """``--version``, worked out only when asked: argparse's own version action wants the
    text when the parser is built, on every command."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        sys.stdout.write(f"sir-convert {package_version()} (build {build_id()})\n")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sir-convert",
        description="Watch-folder daemon that converts PDFs to Markdown on the GPU.",
    )
    parser.add_argument(
        "--version", action=_ShowVersion, help="show the version and build, then exit"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"config file (default {DEFAULT_CONFIG_PATH})",
    )
    # --config is accepted after the command too (`sir-convert run --config X`).
    config_after = _Parser(add_help=False)
    config_after.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config file")
    # Not required here: main asks for a command after naming any option it does not know.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, parents=[config_after])
        command.add_arguments(sub, config_after)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # `sir-convert --versoin`: the typo, not "COMMAND is required"
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    command = _BY_NAME[args.command]
    try:
        return command.execute(args)
    except (ConfigError, UsageError) as exc:
        print(f"sir-convert: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as exc:
        print(f"sir-convert: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:
        print(f"sir-convert: {args.command}: {os_problem(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        return _unexpected(args.command, exc)


def _reader_went_away() -> int:
    """``sir-convert status | head``: the reader stopped reading, which is not a problem of
    ours. Later writes to stdout (the interpreter's flush at exit) go nowhere instead of
    failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _unexpected(command: str, exc: Exception) -> int:
    """A bug: said as one, with how to get the traceback for the report."""
    if command == "run":  # the journal keeps the whole story for the bug report
        logs.get().error("daemon_crashed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    print(
        f"sir-convert: {command}: unexpected error ({type(exc).__name__}: {exc}); "
        f"this is a bug: please report it, with the output of {TRACEBACK_VARIABLE}=1 "
        f"sir-convert {command} ...",
        file=sys.stderr,
    )
    return EXIT_FAILURE
