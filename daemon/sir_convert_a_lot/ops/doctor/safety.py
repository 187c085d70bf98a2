"""What could lift the GPU-first lock or forge the records the daemon acts on: the environment,
the governance switches, the config file's mode and the state folder's owner and mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.policy import OCR_OFF_GPU, forbidden_environment, ocr_left_on_cpu
from sir_convert_a_lot.folders import state_folders
from sir_convert_a_lot.ops.doctor.report import FAIL, OK, WARN, Check


def environment(environ: dict[str, str]) -> Iterator[Check]:
    found = forbidden_environment(environ)
    if found:
        yield Check(
            FAIL,
            "environment",
            f"{', '.join(found)} set: the daemon refuses to start",
            "unset it; the GPU-first lock is lifted only by governance.decision_record",
        )
    else:
        yield Check(OK, "environment", "no SIR_CONVERT_A_LOT_ALLOW_CPU_* variables")


def governance(config: Config) -> Iterator[Check]:
    governance = config.governance
    if governance.unlocked:
        yield Check(
            WARN,
            "gpu-first lock",
            f"unlocked by {governance.decision_record} (cpu_only={governance.allow_cpu_only}, "
            f"fallback={governance.allow_cpu_fallback})",
            "remove the governance switches once the decision no longer applies",
        )
    else:
        yield Check(OK, "gpu-first lock", "holds: jobs run on the GPU or fail visibly")
    if ocr_left_on_cpu(config):
        yield Check(WARN, "gpu-first lock for ocr", OCR_OFF_GPU["message"], OCR_OFF_GPU["fix"])
    if governance.cpu_stages:
        yield Check(
            WARN,
            "gpu-first lock per stage",
            f"{', '.join(governance.cpu_stages)} may run on the CPU, by "
            f"{governance.decision_record}",
            "remove governance.cpu_stages once the decision no longer applies",
        )


def config_file(config: Config) -> Iterator[Check]:
    if config.source is None:
        return
    try:
        mode = os.stat(config.source).st_mode
    except OSError as exc:
        yield Check(FAIL, "config file", f"{config.source}: {exc.strerror}")
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        yield Check(
            FAIL,
            "config file",
            f"{config.source} is writable by group or others: they could unlock the CPU path",
            f"chmod go-w {config.source}",
        )
    else:
        yield Check(OK, "config file", f"{config.source} (not writable by group or others)")


def state_permissions(config: Config) -> Iterator[Check]:
    """paths.state must be writable by the service user alone: whoever else can write it can
    forge the records that the daemon and ``retry`` (often run as root) act on."""
    state = config.paths.state
    if not state.is_dir():
        return
    name = "state permissions"
    me = os.geteuid()
    owner = os.lstat(state).st_uid if me == 0 else me  # root checks for the state's owner
    for folder in state_folders(state):
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue  # a job folder that a running instance just finished
        if info.st_uid != owner:
            yield Check(
                FAIL,
                name,
                f"{folder} is owned by uid {info.st_uid}, not by the service user (uid {owner})",
                f"chown -R {owner} {state}",
            )
            return
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            yield Check(
                FAIL,
                name,
                f"{folder} is writable by group or others: they could forge the records that "
                "the daemon and retry act on",
                f"chmod -R go-w {state} (the daemon also does this at start)",
            )
            return
    parent = state.resolve().parent
    parent_mode = os.stat(parent).st_mode
    if parent_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent_mode & stat.S_ISVTX:
        yield Check(
            WARN,
            name,
            f"{parent}, which holds the state folder, is writable by group or others: they "
            "could rename the state folder away and put their own in its place",
            f"chmod go-w {parent}",
        )
        return
    yield Check(OK, name, f"{state} is writable by its owner (uid {owner}) alone")
