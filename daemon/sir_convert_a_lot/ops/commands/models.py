"""``sir-convert models``: the docling models an offline host needs, checked or downloaded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sir_convert_a_lot.config import DEFAULT_MODELS_PATH, Config
from sir_convert_a_lot.ops.base import EXIT_FAILURE, EXIT_OK, Command, RuntimeFailure, load_config


def _add_arguments(parser: argparse.ArgumentParser, config_after: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    actions.add_parser(
        "download",
        help="fetch the layout, TableFormer and RapidOCR models into gpu.models_path",
        parents=[config_after],
    )
    actions.add_parser(
        "check",
        help="say which models the config needs and which are missing",
        parents=[config_after],
    )


def _execute(args: argparse.Namespace) -> int:
    config = load_config(args)
    target = Path(config.gpu.models_path) if config.gpu.models_path else None
    if args.models_command == "check":
        return _check(config, target, args.config)
    return _download(target)


def _check(config: Config, target: Path | None, config_path: Path) -> int:
    from sir_convert_a_lot.backends import models

    option_sets = [config.defaults, *config.profiles.values()]
    if not models.needed(option_sets):
        print("this config uses no docling backend: it needs no models")
        return EXIT_OK
    if target is None:
        print(
            "gpu.models_path is empty: docling would fetch its models from the Hugging Face "
            "hub at the first start, so nothing can be checked for an offline host; set it "
            f"(the default is {DEFAULT_MODELS_PATH}) and run: sir-convert models download",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    absent = models.missing(target, option_sets)
    for need in models.needed(option_sets):
        state = "MISSING" if need in absent else "ok"
        print(f"{state:8} {need.name}: {target / need.folder} (for {need.needed_for})")
    if absent:
        fetch = f"sir-convert --config {config_path} models download"
        print(f"fetch them with: {fetch}")
        raise RuntimeFailure(
            f"models check: {len(absent)} model folder(s) missing under gpu.models_path "
            f"{target}; fetch them with: {fetch}"
        )
    return EXIT_OK


def _download(target: Path | None) -> int:
    from sir_convert_a_lot.backends import models

    try:
        where = models.download(target)
    except PermissionError as exc:
        print(
            f"sir-convert: may not write the models into {target}: {exc.strerror}; run it as "
            "the service user (runuser -u sir-convert -- sir-convert models download) or root",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - network, hub and disk errors all end here
        print(
            f"sir-convert: could not download the models into "
            f"{target or 'the Hugging Face cache'}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"models ready in {where}")
    return EXIT_OK


COMMAND = Command(
    "models", "manage the docling models (download for offline hosts)", _add_arguments, _execute
)
