"""``sir-convert status``: queue counts, live instances, GPU state, recent failures."""

from __future__ import annotations

import argparse
import json
import sys

from sir_convert_a_lot.ops.base import EXIT_FAILURE, EXIT_OK, Command, load_config


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _execute(args: argparse.Namespace) -> int:
    config = load_config(args)
    from sir_convert_a_lot.ops.status import gather_status, render_status

    try:
        status = gather_status(config)
    except PermissionError as exc:
        # paths.state is the service user's (0750): others may not read it, by design.
        print(
            f"sir-convert: status: cannot read {exc.filename}: run it as the service user or "
            "a member of its group",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(status, sort_keys=True, indent=2))
    else:
        print(render_status(status))
    if missing := status["missing"]:
        # Counts of a folder that is not there read 0: say so, as a runtime failure.
        key, path = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more folder(s))" if len(missing) > 1 else ""
        print(
            f"sir-convert: status: {key} {path} is missing{more}: create it or mount the "
            "share that holds it; sir-convert doctor gives each fix",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


COMMAND = Command(
    "status", "queue counts, live instances, GPU state, recent failures", _add_arguments, _execute
)
