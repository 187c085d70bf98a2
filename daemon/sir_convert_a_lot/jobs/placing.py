"""Outputs are staged, committed, then placed: the fence that lets only a job's holder publish.

A job's outputs are first written into a hidden stage folder beside their final place
(``.sca-tmp-<job_id>-<instance>.stage/`` in the job's outbox folder, 0700). The commit point is
the job record's rename in ``state/claimed/<instance>/<job_id>/`` saying which members were
staged (``jobs.endings``): a takeover renames that job folder away, so a stale instance's commit
fails and it places nothing. After the commit, whoever holds the job moves each staged member
to its final name, in order and sidecar last; every member can be moved only once, so two
holders finishing together (the stale one woke after its commit) still publish it once.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable

from sir_convert_a_lot.folders import RESULT_FOLDER_MODE
from sir_convert_a_lot.fsutil import fsync_dir_fd
from sir_convert_a_lot.jobs.publish import (
    ARTIFACTS,
    ERROR,
    TMP_PREFIX,
    drop_other_pictures,
    remove_entry,
    same_source_in,
)
from sir_convert_a_lot.names import collision_key
from sir_convert_a_lot.sharefs import DIR_FLAGS, ShareDir, place_in, rename_no_replace

STAGE_SUFFIX = ".stage"
_STAGE_MODE = 0o700  # the share reads nothing half-done


def stage_name(job_id: str, instance: str) -> str:
    """One stage folder per job and holder: a stale holder never writes into the new one's."""
    return f"{TMP_PREFIX}{job_id}-{instance}{STAGE_SUFFIX}"


def fresh_stage(folder: ShareDir, name: str) -> ShareDir:
    """An empty stage folder ``name`` in ``folder`` (a leftover of an earlier try goes)."""
    with folder.open() as fd:
        _remove(fd, name)
        os.mkdir(name, _STAGE_MODE, dir_fd=fd)
        os.chmod(name, _STAGE_MODE, dir_fd=fd, follow_symlinks=False)
    return folder.child(name)


def discard(folder: ShareDir, name: str) -> None:
    """Remove a stage folder that will never be committed (its holder lost the job)."""
    with contextlib.suppress(OSError), folder.open() as fd:
        _remove(fd, name)


def taken(folder: ShareDir, members: Iterable[str], relative_path: str) -> list[str]:
    """The members whose final name (compared as names are) is already there, but for an
    earlier error envelope of this same source (``relative_path``), which a new result
    supersedes."""
    with folder.open() as fd:
        present = {collision_key(name): name for name in os.listdir(fd)}
        found = [present[collision_key(m)] for m in members if collision_key(m) in present]
        return [
            name
            for name in found
            if not (name.endswith(ERROR) and same_source_in(fd, name, relative_path))
        ]


def place(
    folder: ShareDir, stage: str, members: tuple[str, ...], replacing: bool, relative_path: str
) -> list[str]:
    """Move each staged member to its final name in ``folder``, in order. A member already gone
    from the stage was moved by an earlier try or by another holder. Without ``replacing``
    nothing is ever replaced but an earlier error envelope of the same source (``relative_path``),
    which the new result supersedes: a name taken after the commit (by something outside the
    naming protocol) gets the next free number instead, and is returned so it can be reported."""
    renamed: list[str] = []
    with folder.open() as fd:
        try:
            stage_fd = os.open(stage, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            return renamed  # all placed already, and the stage removed
        try:
            for member in members:
                superseded = member.endswith(ERROR) and same_source_in(fd, member, relative_path)
                placed = _move(stage_fd, fd, member, replacing or superseded)
                if placed is not None and placed != member:
                    renamed.append(placed)
                fsync_dir_fd(fd)
        finally:
            os.close(stage_fd)
        with contextlib.suppress(OSError):
            os.rmdir(stage, dir_fd=fd)
    return renamed


def _move(stage_fd: int, fd: int, member: str, replacing: bool) -> str | None:
    """Move one member; the name it got, or None when it had been moved already."""
    try:
        info = os.stat(member, dir_fd=stage_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if replacing:
        if stat.S_ISDIR(info.st_mode) and member.endswith(ARTIFACTS):
            _merge_pictures(stage_fd, fd, member)
        else:
            os.rename(member, member, src_dir_fd=stage_fd, dst_dir_fd=fd)
        return member
    try:
        rename_no_replace(stage_fd, member, fd, member)
        return member
    except FileNotFoundError:
        return None  # another holder moved it just now
    except FileExistsError:
        if _same_file(fd, member, info):  # a link fallback that stopped half-way
            with contextlib.suppress(FileNotFoundError):
                os.unlink(member, dir_fd=stage_fd)
            return member
    return place_in(stage_fd, member, fd, member)


def _merge_pictures(stage_fd: int, fd: int, member: str) -> None:
    """``replace``: the staged pictures replace the folder's (same names), and pictures of the
    replaced result that this one has not go."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(member, RESULT_FOLDER_MODE, dir_fd=fd)
    target = os.open(member, DIR_FLAGS, dir_fd=fd)
    staged = os.open(member, DIR_FLAGS, dir_fd=stage_fd)
    try:
        os.fchmod(target, RESULT_FOLDER_MODE)
        pictures = set(os.listdir(staged))
        for picture in pictures:
            os.rename(picture, picture, src_dir_fd=staged, dst_dir_fd=target)
        drop_other_pictures(target, pictures)
    finally:
        os.close(staged)
        os.close(target)
    os.rmdir(member, dir_fd=stage_fd)


def _same_file(fd: int, name: str, info: os.stat_result) -> bool:
    try:
        there = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (info.st_dev, info.st_ino)


def _remove(fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        remove_entry(fd, name)
