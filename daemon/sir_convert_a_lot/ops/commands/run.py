"""``sir-convert run``: the daemon in the foreground, as systemd starts it."""

from __future__ import annotations

import argparse

from sir_convert_a_lot import logs
from sir_convert_a_lot.config import default_instance_name, instance_name_problem
from sir_convert_a_lot.folders import check_config_permissions
from sir_convert_a_lot.ops.base import (
    Command,
    UsageError,
    load_config,
    refuse_environment_unlock,
)


def _add_arguments(parser: argparse.ArgumentParser, _config_after: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance", help="this instance's name (default <hostname>-gpu<index>)")
    parser.add_argument("--gpu", type=int, metavar="INDEX", help="the GPU index (gpu.device_index)")


def _execute(args: argparse.Namespace) -> int:
    refuse_environment_unlock()
    config = load_config(args)
    check_config_permissions(args.config)
    if args.gpu is not None:
        if args.gpu < 0:
            raise UsageError("run: --gpu must be 0 or more")
        config = config.with_device_index(args.gpu)
        if not config.source_has_instance_name:
            config = config.with_instance_name(default_instance_name(args.gpu))
    if args.instance is not None:
        problem = instance_name_problem(args.instance)
        if problem:
            raise UsageError(f"run --instance: {args.instance!r} is {problem}")
        if config.source_has_instance_name and config.instances.name != args.instance:
            logs.get().warning(
                "instance_name_from_command_line",
                instance=args.instance,
                configured=config.instances.name,
                effect="--instance wins over instances.name",
            )
        config = config.with_instance_name(args.instance)
    from sir_convert_a_lot.service.daemon import Service

    return Service(config).run()


COMMAND = Command(
    "run", "run the daemon in the foreground (systemd ExecStart)", _add_arguments, _execute
)
