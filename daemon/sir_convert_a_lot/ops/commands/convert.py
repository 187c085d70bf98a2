"""``sir-convert convert``: files converted once, through the same engine, lock and outputs as
the daemon. What it is given is checked up front, since the converter takes seconds to start."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from sir_convert_a_lot.ops.base import (
    EXIT_FAILURE,
    EXIT_OK,
    Command,
    RuntimeFailure,
    UsageError,
    load_config,
    os_problem,
    refuse_environment_unlock,
)
from sir_convert_a_lot.source_file import file_kind


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--out", type=Path, help="output folder (default: the config's outbox)")
    parser.add_argument(
        "--gpu-wait",
        type=_seconds,
        metavar="SECONDS",
        help="give up when another process holds the GPU this long (default: wait, saying who "
        "holds it every minute)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _execute(args: argparse.Namespace) -> int:
    refuse_environment_unlock()
    config = load_config(args)
    from sir_convert_a_lot.engine.supervisor import EngineStartError
    from sir_convert_a_lot.jobs.oneshot import convert_files

    for file in args.files:
        _check_input(file)
    out = args.out if args.out is not None else config.paths.outbox
    _check_output_folder(out, given=args.out is not None)
    try:
        outcomes = convert_files(config, list(args.files), out, device_wait_seconds=args.gpu_wait)
    except EngineStartError as exc:
        print(f"sir-convert: the converter could not start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for file, outcome in zip(args.files, outcomes, strict=True):
        where = ", ".join(str(p) for p in outcome.outputs.values())
        code = f" ({outcome.code})" if outcome.code else ""
        print(f"{file}: {outcome.status}{code} -> {where}")
    return EXIT_OK if all(o.status == "succeeded" for o in outcomes) else EXIT_FAILURE


def _check_input(file: Path) -> None:
    """A file named on the command line must be a regular file this user can read: anything
    else is refused before the converter starts, with what to name instead."""
    try:
        info = os.lstat(file)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"convert: {file}: no such file; check the name and the folder") from None
    except OSError as exc:
        raise RuntimeFailure(f"convert: {os_problem(exc)}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(
            f"convert: {file} is a symbolic link, which is never followed; name the file itself "
            f"({os.path.realpath(file)})"
        )
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"convert: {file} is a folder; name the PDF files in it ({file}/*.pdf)")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(
            f"convert: {file} is a {file_kind(info.st_mode)}, not a regular file; save the PDF "
            "to a file and name that"
        )
    if not os.access(file, os.R_OK):
        raise RuntimeFailure(
            f"convert: {file}: this user (uid {os.getuid()}) may not read it; make it readable "
            "(chmod g+r or o+r) or run as a user who may"
        )


def _check_output_folder(out: Path, *, given: bool) -> None:
    """The output folder must be a folder this user can write, or creatable: said up front,
    since the converter takes seconds to start."""
    option = "--out" if given else "the outbox (paths.outbox)"
    choose = "pass --out a folder you may write" if not given else "choose a folder you may write"
    existing = next((p for p in (out, *out.parents) if os.path.lexists(p)), Path("/"))
    if not existing.is_dir():
        raise UsageError(f"convert: {option} {out}: {existing} is not a folder; {choose}")
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write into" if existing == out else f"create {out} in"
        raise RuntimeFailure(
            f"convert: {option}: this user (uid {os.getuid()}) may not {verb} {existing}; {choose}"
        )


COMMAND = Command(
    "convert",
    "convert files once, through the same engine, lock and outputs",
    _add_arguments,
    _execute,
)
