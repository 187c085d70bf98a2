"""``sir-convert``: the command line. Exit codes: 0 success, 1 runtime failure, 2 usage or
configuration error (one clear line on stderr naming what is wrong)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from sir_convert_a_lot import __version__
from sir_convert_a_lot.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_MODELS_PATH,
    DEFAULT_ROOT,
    Config,
    default_instance_name,
    instance_name_problem,
    load,
    render_default,
)
from sir_convert_a_lot.engine.policy import FORBIDDEN_ENV_PREFIX, forbidden_environment
from sir_convert_a_lot.errors import ConfigError, ErrorCode
from sir_convert_a_lot.folders import check_config_permissions
from sir_convert_a_lot.fsutil import write_file_atomic
from sir_convert_a_lot.intake.preflight import file_kind
from sir_convert_a_lot.ops import logs

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
TRACEBACK_VARIABLE = "SIR_CONVERT_TRACEBACK"


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked. Exit code 2."""


class RuntimeFailure(Exception):
    """The command was right but the host refused (permissions, disk). Exit code 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr that says where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see: {self.prog} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sir-convert",
        description="Watch-folder daemon that converts PDFs to Markdown on the GPU.",
    )
    parser.add_argument("--version", action="version", version=f"sir-convert {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"config file (default {DEFAULT_CONFIG_PATH})",
    )
    # --config is accepted after the command too (`sir-convert run --config X`).
    config_after = _Parser(add_help=False)
    config_after.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[config_after])

    run = command("run", "run the daemon in the foreground (systemd ExecStart)")
    run.add_argument("--instance", help="this instance's name (default <hostname>-gpu<index>)")
    run.add_argument("--gpu", type=int, metavar="INDEX", help="the GPU index (gpu.device_index)")

    convert = command("convert", "convert files once, through the same engine, lock and outputs")
    convert.add_argument("files", nargs="+", type=Path, metavar="FILE")
    convert.add_argument("--out", type=Path, help="output folder (default: the config's outbox)")
    convert.add_argument(
        "--gpu-wait",
        type=_seconds,
        metavar="SECONDS",
        help="give up when another process holds the GPU this long (default: wait, saying who "
        "holds it every minute)",
    )

    status = command("status", "queue counts, live instances, GPU state, recent failures")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    retry = command("retry", "move failed originals back into the inbox")
    retry.epilog = (
        "--all alone moves only failures whose code is retryable (gpu_not_available, "
        "conversion_timeout, worker_crashed, conversion_internal_error); the others need the "
        "same file to change. Names, --code and --include-permanent reach those too."
    )
    retry.add_argument("names", nargs="*", metavar="NAME", help="file name, path or job id")
    retry.add_argument(
        "--all", action="store_true", help="every failed original with a retryable code"
    )
    retry.add_argument(
        "--code",
        action="append",
        default=[],
        choices=[code.value for code in ErrorCode],
        metavar="CODE",
        help="only failures with this error code (repeatable; alone: all of them): "
        + ", ".join(code.value for code in ErrorCode),
    )
    retry.add_argument(
        "--include-permanent",
        action="store_true",
        help="with --all: also failures whose code says the file itself must change",
    )

    models_command = command("models", "manage the docling models (download for offline hosts)")
    models_sub = models_command.add_subparsers(
        dest="models_command", metavar="ACTION", required=True
    )
    models_sub.add_parser(
        "download",
        help="fetch the layout, TableFormer and RapidOCR models into gpu.models_path",
        parents=[config_after],
    )
    models_sub.add_parser(
        "check",
        help="say which models the config needs and which are missing",
        parents=[config_after],
    )

    doctor = command(
        "doctor", "check config, folders, GPU, models and limits; non-zero on a problem"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--quick", action="store_true", help="skip the torch CUDA check (it takes seconds)"
    )

    init = command("init-config", "write a complete default config (TOML)")
    init.add_argument("--output", type=Path, help="where to write (default: the --config path)")
    init.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"folder holding inbox, outbox, state, failed, archive (default {DEFAULT_ROOT})",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except (ConfigError, UsageError) as exc:
        print(f"sir-convert: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as exc:
        print(f"sir-convert: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except OSError as exc:
        print(f"sir-convert: {args.command}: {_os_problem(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        if args.command == "run":  # the journal keeps the whole story for the bug report
            logs.get().error("daemon_crashed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        print(
            f"sir-convert: {args.command}: unexpected error ({type(exc).__name__}: {exc}); "
            f"this is a bug: please report it, with the output of {TRACEBACK_VARIABLE}=1 "
            f"sir-convert {args.command} ...",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _os_problem(exc: OSError) -> str:
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


def _load_config(args: argparse.Namespace) -> Config:
    config = load(args.config)
    logs.configure(config.logging.level, config.logging.format)
    return config


def _refuse_environment_unlock() -> None:
    found = forbidden_environment(dict(os.environ))
    if found:
        raise ConfigError(
            f"{found[0]}: the GPU-first lock cannot be lifted by environment variables "
            f"({FORBIDDEN_ENV_PREFIX}*); unset it and use governance.decision_record instead"
        )


def _cmd_run(args: argparse.Namespace) -> int:
    _refuse_environment_unlock()
    config = _load_config(args)
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


def _cmd_convert(args: argparse.Namespace) -> int:
    _refuse_environment_unlock()
    config = _load_config(args)
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
        raise RuntimeFailure(f"convert: {_os_problem(exc)}") from None
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


def _cmd_status(args: argparse.Namespace) -> int:
    config = _load_config(args)
    from sir_convert_a_lot.ops.operations import gather_status, render_status

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
    return EXIT_OK


def _cmd_retry(args: argparse.Namespace) -> int:
    if not args.names and not args.all and not args.code:
        raise UsageError("retry: name the failed files to retry, or pass --all or --code CODE")
    if args.include_permanent and not args.all:
        raise UsageError("retry: --include-permanent goes with --all")
    config = _load_config(args)
    from sir_convert_a_lot.ops.operations import RetrySelection, retry

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


def _cmd_models(args: argparse.Namespace) -> int:
    config = _load_config(args)
    from sir_convert_a_lot.backends import models

    option_sets = [config.defaults, *config.profiles.values()]
    target = Path(config.gpu.models_path) if config.gpu.models_path else None
    if args.models_command == "check":
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
            fetch = f"sir-convert --config {args.config} models download"
            print(f"fetch them with: {fetch}")
            raise RuntimeFailure(
                f"models check: {len(absent)} model folder(s) missing under gpu.models_path "
                f"{target}; fetch them with: {fetch}"
            )
        return EXIT_OK
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    from sir_convert_a_lot.ops import doctor

    try:
        config = load(args.config)
    except ConfigError as exc:
        fix = "correct the named key, or write a default with sir-convert init-config"
        if args.json:
            row = doctor.Check(doctor.FAIL, "config", str(exc), fix)
            print(json.dumps([row.__dict__], indent=2))
        else:
            print(f"FAIL  config  {exc}")
            print(f"      fix: {fix}")
        print(f"sir-convert: doctor: the config cannot be used: {exc}", file=sys.stderr)
        return EXIT_USAGE
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


def _cmd_init_config(args: argparse.Namespace) -> int:
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


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _cmd_run,
    "convert": _cmd_convert,
    "status": _cmd_status,
    "retry": _cmd_retry,
    "init-config": _cmd_init_config,
    "models": _cmd_models,
    "doctor": _cmd_doctor,
}
