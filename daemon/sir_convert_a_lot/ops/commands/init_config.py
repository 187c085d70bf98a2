"""``sir-convert init-config``: a complete default config (TOML) written where it is asked."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sir_convert_a_lot.config import DEFAULT_ROOT, render_default
from sir_convert_a_lot.fsutil import write_file_atomic
from sir_convert_a_lot.ops.base import EXIT_OK, Command, RuntimeFailure, UsageError


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="where to write (default: the --config path)")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"folder holding inbox, outbox, state, failed, archive (default {DEFAULT_ROOT})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")


def _execute(args: argparse.Namespace) -> int:
    target: Path = args.output or args.config
    if target.is_dir():
        raise UsageError(
            f"init-config: {target} is a folder; name the file to write "
            f"(--output {target / 'config.toml'})"
        )
    if os.path.lexists(target) and not args.force:
        raise UsageError(f"init-config: {target} exists; pass --force to replace it")
    root = args.root.absolute() if args.root else DEFAULT_ROOT
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, and never through a link: --force replaces a symlink, not the file it names.
        write_file_atomic(target, render_default(root).encode("utf-8"))
    except OSError as exc:
        raise RuntimeFailure(
            f"init-config: cannot write {target} ({exc.strerror}); choose a folder this user "
            "may write with --output, or run as root"
        ) from None
    print(f"wrote {target}")
    return EXIT_OK


COMMAND = Command("init-config", "write a complete default config (TOML)", _add_arguments, _execute)
