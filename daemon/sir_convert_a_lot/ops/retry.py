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

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError, ErrorCode
from sir_convert_a_lot.folders import state_problem
from sir_convert_a_lot.fsutil import OutsideFolder, check_relative
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
    refuse_other_users(config.paths.state)
    refuse_untrusted_state(config.paths.state, spool.failures_root)
    results: list[Retried] = []
    for record in spool.disposal.failure_records():
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


def refuse_other_users(state: Path) -> None:
    """Only root and the service user (the owner of the state folder) may move failed
    originals: anyone else, a share-group member included, is refused before anything moves."""
    me = os.geteuid()
    try:
        owner = os.lstat(state).st_uid
    except OSError as exc:
        raise ConfigError(f"paths.state: {state}: {exc.strerror}; retry moved nothing") from None
    if me not in (0, owner):
        raise ConfigError(
            f"retry runs as root or as the service user (uid {owner}, the owner of {state}), "
            f"not as uid {me}; ask the operator (sudo -u <service user> sir-convert retry); "
            "nothing was moved"
        )


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
        source_parts = tuple(check_relative(failed_rel, "its failed_path"))
        inbox_parts = tuple(check_relative(relative, "its relative_path"))
    except OutsideFolder as exc:
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} is forged or damaged: {exc}; "
            "nothing was moved",
        )
    try:
        with sharefs.folder(config.paths.failed, source_parts[:-1]) as failed_fd:
            return _move_back(config, record_path, shown, failed_fd, source_parts[-1], inbox_parts)
    except sharefs.NotAFolder as exc:
        return Retried(
            shown,
            None,
            f"refused: the failure record {record_path} leads through failed/, where "
            f"{exc.strerror}; nothing was moved",
        )
    except FileNotFoundError:
        return _gone(record_path, shown)


def _gone(record_path: Path, shown: str) -> Retried:
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    return Retried(shown, None, "the failed original is no longer there")


def _move_back(
    config: Config,
    record_path: Path,
    shown: str,
    failed_fd: int,
    name: str,
    inbox_parts: tuple[str, ...],
) -> Retried:
    """The original (``name`` in the failed folder ``failed_fd``) back to its inbox folder,
    every folder of the way walked without following a link: a share user may have swapped one
    for a link to anywhere, and retry often runs as root."""
    try:
        info = os.stat(name, dir_fd=failed_fd, follow_symlinks=False)
    except FileNotFoundError:
        return _gone(record_path, shown)
    if not stat.S_ISREG(info.st_mode):
        return Retried(
            shown,
            None,
            "the failed original is not a regular file (a symbolic link?); "
            "retry moves regular files only",
        )
    model = os.stat(config.paths.inbox)
    # Folders made here take the inbox's owner, group and mode: retry often runs as root, and
    # a root-owned 0755 folder would block the very file it brings back.
    like_inbox = sharefs.FolderMode(stat.S_IMODE(model.st_mode), (model.st_uid, model.st_gid))
    try:
        placed = sharefs.place(
            failed_fd, name, config.paths.inbox, inbox_parts[:-1], inbox_parts[-1], like_inbox
        )
    except sharefs.NotAFolder as exc:
        return Retried(
            shown,
            None,
            f"refused: in the inbox, {exc.strerror} (swapped by someone on the share?); "
            "nothing was moved",
        )
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    return Retried(shown, display(placed))
