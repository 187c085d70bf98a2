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
    engines = models.ocr_engines(config.gpu.ocr_backend, _devices_anywhere(config))
    if not models.needed(option_sets, engines):
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
    absent = models.missing(target, option_sets, engines)
    for need in models.needed(option_sets, engines):
        state = "MISSING" if need in absent else "ok"
        where = models.describe_absent(need, target) if need in absent else need.folder
        print(f"{state:8} {need.name}: {target / where} (for {need.needed_for})")
    if absent:
        fetch = f"sir-convert --config {config_path} models download"
        print(f"fetch them with: {fetch}")
        raise RuntimeFailure(
            f"models check: {len(absent)} model(s) missing under gpu.models_path "
            f"{target}; fetch them with: {fetch}"
        )
    return EXIT_OK


def _devices_anywhere(config: Config) -> set[str]:
    """The devices docling may load on with this config, on a host with a usable GPU or on one
    without: a models folder is checked (and copied between hosts) for either."""
    from sir_convert_a_lot.backends import models
    from sir_convert_a_lot.engine.gpu import GpuProbe
    from sir_convert_a_lot.engine.startup import load_plan

    option_sets = [config.defaults, *config.profiles.values()]
    devices: set[str] = set()
    for usable in (True, False):
        host = GpuProbe(usable, None, "models check: either host", "", "")
        devices |= models.loading_devices(load_plan(option_sets, host, config.governance))
    return devices or {"cuda"}


def _download(target: Path | None) -> int:
    try:
        if target is not None:  # an unusable folder fails at once, not after docling's import
            target.mkdir(parents=True, exist_ok=True)
        from sir_convert_a_lot.backends import models

        where = models.download(target)
    except PermissionError as exc:
        print(
            f"sir-convert: may not write the models into {target}: {exc.strerror}; run it as "
            "the service user (runuser -u sir-convert -- sir-convert models download) or root",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - network, hub and disk errors all end here
        print(f"sir-convert: {_download_failed(target, exc)}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"models ready in {where}")
    return EXIT_OK


def _download_failed(target: Path | None, exc: Exception) -> str:
    """One line: why the download failed, and the fix for a folder or for the network."""
    where = target or "the Hugging Face cache"
    if isinstance(exc, OSError) and exc.filename is not None:
        # The folder: a parent that does not exist and cannot be made, a read-only or full disk.
        return (
            f"could not download the models into {where}: {exc.strerror}: {exc.filename}; "
            "set gpu.models_path to a folder the service user may create (the default is "
            f"{DEFAULT_MODELS_PATH}), or run it as that user: "
            "runuser -u sir-convert -- sir-convert models download"
        )
    why = " ".join(f"{type(exc).__name__}: {exc}".split())  # a hub error may span lines
    return (
        f"could not download the models into {where}: {why}; check that this host reaches "
        "the Hugging Face hub, or download them on a host that does and copy the folder here"
    )


COMMAND = Command(
    "models", "manage the docling models (download for offline hosts)", _add_arguments, _execute
)
