"""``sir-convert retry``: failed originals moved back into the inbox."""

from __future__ import annotations

import argparse

from sir_convert_a_lot.errors import ErrorCode
from sir_convert_a_lot.ops.base import (
    EXIT_FAILURE,
    EXIT_OK,
    Command,
    RuntimeFailure,
    UsageError,
    load_config,
)

_EPILOG = (
    "--all alone moves only failures whose code is retryable (gpu_not_available, "
    "conversion_timeout, worker_crashed, conversion_internal_error); the others need the "
    "same file to change. Names, --code and --include-permanent reach those too."
)


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.add_argument("names", nargs="*", metavar="NAME", help="file name, path or job id")
    parser.add_argument(
        "--all", action="store_true", help="every failed original with a retryable code"
    )
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        choices=[code.value for code in ErrorCode],
        metavar="CODE",
        help="only failures with this error code (repeatable; alone: all of them): "
        + ", ".join(code.value for code in ErrorCode),
    )
    parser.add_argument(
        "--include-permanent",
        action="store_true",
        help="with --all: also failures whose code says the file itself must change",
    )


def _execute(args: argparse.Namespace) -> int:
    if not args.names and not args.all and not args.code:
        raise UsageError("retry: name the failed files to retry, or pass --all or --code CODE")
    if args.include_permanent and not args.all:
        raise UsageError("retry: --include-permanent goes with --all")
    config = load_config(args)
    from sir_convert_a_lot.ops.retry import RetrySelection, retry

    selection = RetrySelection(
        names=frozenset(args.names),
        codes=frozenset(args.code),
        include_permanent=args.include_permanent,
    )
    results = retry(config, selection)
    if not results:
        if args.names:
            raise RuntimeFailure(
                f"retry: no failed file matches {', '.join(args.names)}; sir-convert status "
                "lists the recent failures (name, path or job id)"
            )
        print("nothing to retry")
        return EXIT_OK
    moved = [r for r in results if r.back_in_inbox]
    skipped = [r for r in results if r.skipped]
    for result in results:
        if result.back_in_inbox is not None:
            print(f"{result.source}: back in the inbox as {result.back_in_inbox}")
        elif result.skipped is not None:
            print(f"{result.source}: skipped: {result.skipped}")
        else:
            print(f"{result.source}: not retried: {result.problem}")
    failed = len(results) - len(moved) - len(skipped)
    print(f"moved {len(moved)}, skipped {len(skipped)}, not retried {failed}")
    return EXIT_OK if not failed else EXIT_FAILURE


COMMAND = Command("retry", "move failed originals back into the inbox", _add_arguments, _execute)
