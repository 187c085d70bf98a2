"""``sir-convert retry``: failed originals moved back into the inbox, each only after its
failure record is proven trustworthy and every path it names lies inside its folder.

It reads only the shared folders, so it works from any host that mounts them, whether or not a
daemon runs there.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError, ErrorCode
from sir_convert_a_lot.folders import state_problem
from sir_convert_a_lot.fsutil import (
    OutsideFolder,
    inside_folder,
    make_dirs_no_symlinks,
    move_to_free_name,
)
from sir_convert_a_lot.jobs.spool import Spool
from sir_convert_a_lot.names import decode_from_record, display


@dataclass(frozen=True)
class Retried:
    source: str
    back_in_inbox: str | None
    problem: str | None = None  # could not be moved (refused, gone)
    skipped: str | None = None  # deliberately left in failed/ (why)


@dataclass(frozen=True)
class RetrySelection:
    """Which failures ``retry`` moves. Names pick files whatever their code; ``--all`` picks
    every failure whose code is retryable (the same file may succeed later), or every one with
    ``include_permanent``; ``codes`` narrows either to those codes (and alone means ``--all``
    of those codes, permanent ones included: the operator named them)."""

    names: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    include_permanent: bool = False

    def reaches(self, code: str | None) -> bool:
        return not self.codes or code in self.codes

    def skip_reason(self, code: str | None) -> str | None:
        """Why a failure that was reached stays in failed/ (None: it is moved)."""
        if self.names or self.codes or self.include_permanent:
            return None
        if code is None or code not in _CODES:
            return "its record names no known error code; retry it by name"
        if not ErrorCode(code).retryable:
            return (
                f"{code} is permanent (the file itself must change); retry it by name, with "
                f"--code {code}, or pass --include-permanent"
            )
        return None


_CODES = frozenset(code.value for code in ErrorCode)


def retry(config: Config, selection: RetrySelection) -> list[Retried]:
    """Move the selected failed originals back into the inbox under their original relative
    folder; the others that ``--all`` reached are reported as skipped, with why. Every path a
    record names is proven to lie inside its folder first: a record is data that whoever could
    write the state folder could have forged, and retry often runs as root."""
    spool = Spool(config.paths, instance="retry")
    refuse_untrusted_state(config.paths.state, spool.failures_root)
    results: list[Retried] = []
    for record in spool.failure_records():
        try:
            relative = decode_from_record(record["relative_path_b64"])
            failed_rel = decode_from_record(record["failed_path_b64"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue  # damaged: nothing in it can be matched or moved
        shown = display(relative)
        if selection.names and not selection.names & {
            shown,
            display(Path(relative).name),
            display(failed_rel),
            str(record.get("job_id")),
        }:
            continue
        code = record.get("code")
        code = code if isinstance(code, str) else None
        if not selection.reaches(code):
            continue
        why = selection.skip_reason(code)
        if why is not None:
            results.append(Retried(shown, None, skipped=why))
            continue
        results.append(_retry_one(config, record, relative, failed_rel))
    return results


def refuse_untrusted_state(state: Path, failures: Path) -> None:
    """Records in a state folder others may write could name any file: act on none of them."""
    for folder in (state, failures):
        with contextlib.suppress(FileNotFoundError):
            os.lstat(folder)  # a caller who may not look inside gets the plain PermissionError
        problem = state_problem(folder, owner=None)
        if problem:
            raise ConfigError(f"paths.state: {problem}; retry moved nothing")


def _retry_one(config: Config, record: dict[str, Any], relative: str, failed_rel: str) -> Retried:
    shown = display(relative)
    record_path = Path(record["_record"])
    if not record.get("_trusted"):
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} was not written by the daemon (another "
            "user owns it); nothing was moved",
        )
    try:
        source = inside_folder(config.paths.failed, failed_rel, "its failed_path")
        inside_folder(config.paths.inbox, relative, "its relative_path")
    except OutsideFolder as exc:
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} is forged or damaged: {exc}; "
            "nothing was moved",
        )
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            record_path.unlink()
        return Retried(shown, None, "the failed original is no longer there")
    if not stat.S_ISREG(info.st_mode):
        return Retried(
            shown,
            None,
            "the failed original is not a regular file (a symbolic link?); "
            "retry moves regular files only",
        )
    folder = _inbox_folder(config.paths.inbox, Path(relative).parent.parts)
    target = move_to_free_name(source, folder, Path(relative).name)
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    return Retried(shown, display(str(target.relative_to(config.paths.inbox))))


def _inbox_folder(inbox: Path, parts: tuple[str, ...]) -> Path:
    """``inbox/parts...``; the folders made here take the inbox's owner, group and mode. retry
    often runs as root, and a root-owned 0755 folder would block the very file it brings back:
    the service user could not move it out of there."""
    model = os.stat(inbox)
    current = inbox
    for part in parts:
        created = not os.path.lexists(current / part)
        current = make_dirs_no_symlinks(current, (part,))
        if created:
            with contextlib.suppress(OSError):  # only root may give a folder away
                os.chown(current, model.st_uid, model.st_gid, follow_symlinks=False)
            with contextlib.suppress(OSError):
                os.chmod(current, stat.S_IMODE(model.st_mode))
    return current
