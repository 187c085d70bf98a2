"""``sir-convert doctor``: the host checked before it is trusted; non-zero on a problem. A config
that does not load is itself the first FAIL row, so the table always appears."""

from __future__ import annotations

import argparse
import json
import os
import sys

from sir_convert_a_lot.config import load
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.ops.base import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Command


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--quick", action="store_true", help="skip the torch CUDA check (it takes seconds)"
    )


def _execute(args: argparse.Namespace) -> int:
    from sir_convert_a_lot.ops import doctor

    try:
        config = load(args.config)
    except ConfigError as exc:
        return _unusable_config(args, exc)
    checks = doctor.run_checks(config, dict(os.environ), deep_gpu=not args.quick)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        print(f"OK    config  {args.config} is valid")
        print(doctor.render(checks))
    failed = [c for c in checks if c.status == doctor.FAIL]
    if failed:
        print(
            f"sir-convert: doctor: {len(failed)} problem(s), first {failed[0].name}: "
            f"{failed[0].detail}; each FAIL row says its fix",
            file=sys.stderr,
        )
    return EXIT_FAILURE if failed else EXIT_OK


def _unusable_config(args: argparse.Namespace, exc: ConfigError) -> int:
    from sir_convert_a_lot.ops import doctor

    fix = "correct the named key, or write a default with sir-convert init-config"
    if args.json:
        row = doctor.Check(doctor.FAIL, "config", str(exc), fix)
        print(json.dumps([row.__dict__], indent=2))
    else:
        print(f"FAIL  config  {exc}")
        print(f"      fix: {fix}")
    print(f"sir-convert: doctor: the config cannot be used: {exc}", file=sys.stderr)
    return EXIT_USAGE


COMMAND = Command(
    "doctor",
    "check config, folders, GPU, models and limits; non-zero on a problem",
    _add_arguments,
    _execute,
)
