"""Claims: a file in the inbox becomes a job folder in the spool, in one rename.

A claim is built in ``tmp/<instance>/`` (the record first, then the original taken from the
share by its identity) and renamed whole into ``claimed/<instance>/``, so a crash leaves either
a half-built claim, which recovery finishes or removes, or a whole one.
"""

from __future__ import annotations

import contextlib
import os

from sir_convert_a_lot import sharefs
from sir_convert_a_lot.fsutil import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    fsync_dir,
    make_private_dirs,
    open_dir,
    remove_tree,
    write_json_atomic,
)
from sir_convert_a_lot.jobs.job import Job, new_job_id
from sir_convert_a_lot.jobs.source_blocked import SOURCE_SIDE_ERRNOS, SourceBlocked
from sir_convert_a_lot.jobs.spool_folders import RECORD, SOURCE, SpoolFolders
from sir_convert_a_lot.options import ConversionOptions


class Claims(SpoolFolders):
    """Takes files from the inbox into job folders (dispatch holds it). Apart from the records
    and disposal because a claim is the one move from the share into the spool, and the one
    that races other instances and users for the same file."""

    def claim(
        self,
        relative_path: str,
        profile: str | None,
        options: ConversionOptions,
        size: int,
        mtime_ns: int,
        identity: sharefs.FileId,
    ) -> Job | None:
        """Move ``inbox/relative_path`` into a new job folder, only when it is still the very
        file that was seen (``identity``; else ``sharefs.Swapped``). None when another
        instance (or the user) took the file first."""
        job = Job(
            job_id=new_job_id(),
            relative_path=relative_path,
            profile=profile,
            options=options,
            claimed_at=self.clock(),
            claimed_size=size,
            claimed_mtime_ns=mtime_ns,
            instance=self.instance,
        )
        building = self.my_tmp / job.job_id
        moving = False
        try:
            make_private_dirs(self.my_tmp)
            os.mkdir(building, PRIVATE_DIR_MODE)
            write_json_atomic(building / RECORD, job.to_record(), PRIVATE_FILE_MODE)
            moving = True
            with open_dir(building) as building_fd:
                sharefs.take(self.paths.inbox, relative_path, identity, building_fd, SOURCE)
        except sharefs.Swapped:
            remove_tree(building)  # nothing was moved out of the share
            raise
        except OSError as exc:
            remove_tree(building)  # the source never left the inbox
            if moving and isinstance(exc, FileNotFoundError):
                return None  # another instance took it
            if moving and exc.errno in SOURCE_SIDE_ERRNOS:
                # The job folder was just written, so the rename failed on the inbox's side.
                folder = self.paths.inbox.joinpath(*job.folder_parts)
                raise SourceBlocked(relative_path, folder, exc) from exc
            raise
        try:
            fsync_dir(building)
            make_private_dirs(self.my_claims)
            os.rename(building, self.job_folder(job))
        except OSError:
            # Give the file back rather than strand it until the next start's recovery.
            with contextlib.suppress(OSError):  # never over a newer file of the same name
                self._give_back(building, job.folder_parts, job.name)
                remove_tree(building)
            raise
        fsync_dir(self.my_claims)
        fsync_dir(self.my_tmp)
        return job
