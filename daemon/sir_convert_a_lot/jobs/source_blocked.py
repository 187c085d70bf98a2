"""A claim refused on the inbox's side: the service user may not move that one file.

Only that file waits (the intake backs off per file); the rest of the inbox goes on.
"""

from __future__ import annotations

import errno
from pathlib import Path

from sir_convert_a_lot.names import display

# A claim's rename that fails with one of these, right after the job folder was written, failed
# on the side of the inbox file: its folder's permissions (EACCES; EPERM with a sticky bit or an
# immutable file), a mount point inside the inbox (EXDEV, EBUSY), a path that changed shape.
SOURCE_SIDE_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EXDEV,
        errno.EBUSY,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
    }
)


class SourceBlocked(Exception):
    """The service user cannot move this inbox file: only this file must wait, not the inbox."""

    def __init__(self, relative_path: str, folder: Path, error: OSError) -> None:
        super().__init__(f"{display(relative_path)}: {error.strerror}")
        self.relative_path = relative_path
        self.folder = folder
        self.errno = error.errno or 0
        self.error = error

    @property
    def errno_name(self) -> str:
        return errno.errorcode.get(self.errno, str(self.errno))

    @property
    def fix(self) -> str:
        """What an operator does about it, in one sentence."""
        folder = display(str(self.folder))
        if self.errno == errno.EACCES:
            return (
                f"the folder {folder} is not writable by the service user; make it "
                "group-writable for the share group and setgid (chmod 2775, chgrp to the "
                "service group; Samba: force group, directory mask = 2775)"
            )
        if self.errno == errno.EPERM:
            return (
                f"the folder {folder} does not let the service user move this file (a sticky "
                "bit, or an immutable file): chmod -t the folder, or chattr -i the file"
            )
        if self.errno in (errno.EXDEV, errno.EBUSY):
            return (
                f"the file or {folder} is on another filesystem mounted inside the inbox; "
                "drop files onto the share itself"
            )
        return f"the file cannot be moved out of {folder} ({self.error.strerror}); check it"
