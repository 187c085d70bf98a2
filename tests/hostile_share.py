"""A hostile share user: seeded, bounded, random attacks on a running daemon's inbox, and the
ledger of what it did, so the test can tell what the daemon still owes it.

The user's choices come from the seed alone (its picture of the inbox never reads the disk),
so one seed replays the same operations; what each one met (the daemon may have taken the file
first) is logged beside it. It acts only under the inbox: every folder on an operation's way is
one it made itself and checked to be no link, and files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.pdfs import pdf_bytes
from tests import hostile_calls as calls
from tests.hostile_calls import sha256

FILE_NAMES = (
    "report.pdf",
    "Report.pdf",
    "REPORT.pdf",
    unicodedata.normalize("NFC", "café.pdf"),
    unicodedata.normalize("NFD", "café.pdf"),
    "secret.pdf",
    "scan 01.pdf",
    "notes.PDF",
    "a.pdf",
)
FOLDER_NAMES = ("team", "Team", "scans", "hr", "deep", "Ablage")


@dataclass
class Placed:
    """One file (inode) the user made, with every content it ever had. ``owed`` says what the
    daemon owes it: ``exact`` (one result, at the path it was made at), ``once`` (one result,
    wherever it was moved to) or ``""`` (at most one: the user itself spoiled it)."""

    path: str
    content: bytes
    pdf: bool  # its first content was a whole, well-formed PDF
    versions: list[str] = field(default_factory=list)
    done: bool = False  # every byte written, closed and under its name
    moved: bool = False  # renamed, or a folder above it renamed or swapped
    spoiled: str = ""  # why the user itself changed or removed it

    def __post_init__(self) -> None:
        self.versions.append(sha256(self.content))

    @property
    def sha256(self) -> str:
        return self.versions[-1]

    @property
    def owed(self) -> str:
        if not self.pdf or not self.done or self.spoiled:
            return ""
        return "once" if self.moved else "exact"


class ShareUser:
    """Acts on ``inbox`` only; ``targets`` are folders outside the share that a swapped folder
    may point at, ``secrets`` files outside it that a planted link may point at."""

    def __init__(
        self, inbox: Path, seed: int, targets: dict[str, Path], secrets: list[Path]
    ) -> None:
        self.inbox = inbox
        self.seed = seed
        self.rng = random.Random(seed)
        self.targets = targets
        self.secrets = secrets
        self.folders: set[str] = set()  # real folders it made (where they are now)
        self.files: dict[str, Placed] = {}  # its regular files by name (hard links share one)
        self.specials: dict[str, str] = {}  # FIFOs and links by name: what each is
        self.swapped: dict[str, str] = {}  # a folder's name, now a link -> where the folder went
        self.placed: list[Placed] = []
        self.log: list[str] = []
        self.unsafe: list[str] = []  # operations refused because a folder on the way was a link
        self._lock = threading.Lock()
        self._writers: list[threading.Thread] = []
        self._count = 0
        self._start = time.monotonic()

    # -- the loop -----------------------------------------------------------------------------

    def run(self, seconds: float, max_ops: int) -> None:
        """Random operations for ``seconds`` (at most ``max_ops``), then every slow writer is
        let finish."""
        self._start = time.monotonic()
        operations = list(OPERATIONS)
        weights = [OPERATIONS[name][1] for name in operations]
        for _ in range(max_ops):
            if time.monotonic() - self._start > seconds:
                break
            name = self.rng.choices(operations, weights)[0]
            OPERATIONS[name][0](self)
            time.sleep(self.rng.uniform(0.02, 0.2))
        for writer in self._writers:
            writer.join()

    def note(self, text: str) -> None:
        with self._lock:
            self.log.append(f"{len(self.log):04d} {time.monotonic() - self._start:6.2f}s {text}")

    def _next(self) -> int:
        self._count += 1
        return self._count

    # -- the user's picture of the inbox (never read from the disk) ---------------------------

    def _taken(self, path: str) -> bool:
        return path in self.folders or path in self.files or path in self.specials

    def _folder(self) -> str:
        return self.rng.choice(["", *sorted(self.folders)])

    def _fresh(self, parent: str, pool: tuple[str, ...], fallback: str) -> str:
        """A name in ``parent`` that the user has not used there, from ``pool`` if it can."""
        free = [n for n in pool if not self._taken(_join(parent, n))]
        name = self.rng.choice(free) if free else fallback.format(self._next())
        return _join(parent, name)

    def _pick_file(self) -> str | None:
        return self.rng.choice(sorted(self.files)) if self.files else None

    def _moved(self, old: str, new: str) -> None:
        """Rewrites every name at or below ``old`` to lie below ``new`` (a folder rename)."""

        def move(path: str) -> str:
            return new + path[len(old) :] if path == old or path.startswith(old + "/") else path

        self.folders = {move(p) for p in self.folders}
        self.files = {move(p): placed for p, placed in self.files.items()}
        self.specials = {move(p): what for p, what in self.specials.items()}
        self.swapped = {move(p): move(q) for p, q in self.swapped.items()}

    def _below(self, folder: str) -> list[Placed]:
        return [p for path, p in self.files.items() if path.startswith(folder + "/")]

    def _safe(self, path: str) -> bool:
        """Every folder above ``path`` is a real folder (a missing one fails the operation on
        its own); a link there would mean the user's picture is wrong: refused and counted."""
        here = self.inbox
        for part in path.split("/")[:-1]:
            here = here / part
            try:
                info = os.lstat(here)
            except FileNotFoundError:
                return True
            if not stat.S_ISDIR(info.st_mode):
                self.unsafe.append(path)
                return False
        return True

    def _do(self, what: str, path: str, action: Callable[[], object]) -> bool:
        """Runs ``action`` on ``path`` (refused when unsafe) and logs what it met."""
        if not self._safe(path):
            self.note(f"{what} -> REFUSED: a folder on the way is a link")
            return False
        try:
            action()
        except OSError as exc:
            self.note(f"{what} -> {type(exc).__name__}: {exc.strerror}")
            return False
        self.note(f"{what} -> ok")
        return True

    def _abs(self, path: str) -> str:
        return str(self.inbox / path)

    def _mv(self, old: str, new: str, act: Callable[[str, str], None] = os.rename) -> None:
        """``act`` (a rename, or a hard link) from ``old`` to ``new``, both checked."""
        if not self._safe(old):
            raise OSError(errno.ELOOP, "a folder on the way is a link")
        act(self._abs(old), self._abs(new))

    # -- making files -------------------------------------------------------------------------

    def create(self) -> None:
        """A new, well-formed PDF: in one write, slowly in chunks, or under a hidden name
        renamed into place."""
        path = self._fresh(self._folder(), FILE_NAMES, "doc-{}.pdf")
        number = self._next()
        content = pdf_bytes(self.rng.randint(1, 2), f"Hostile seed {self.seed} file {number}.")
        how = self.rng.choices(("write", "chunks", "rename"), (5, 3, 2))[0]
        placed = Placed(path, content, pdf=True)
        self.placed.append(placed)
        self.files[path] = placed
        what = f"create {path!r} {len(content)} B by {how}"
        if how == "chunks":
            self._slowly(what, placed)
        elif how == "rename":
            hidden = _join(_parent(path), f".upload-{number}")
            if self._do(f"{what} via {hidden!r}", path, lambda: self._upload(hidden, placed)):
                placed.done = True
        elif self._do(what, path, lambda: calls.write_new(self._abs(path), content)):
            placed.done = True

    def _upload(self, hidden: str, placed: Placed) -> None:
        calls.write_new(self._abs(hidden), placed.content)
        os.rename(self._abs(hidden), self._abs(placed.path))

    def _slowly(self, what: str, placed: Placed) -> None:
        cuts = sorted(self.rng.sample(range(1, len(placed.content)), self.rng.randint(2, 5)))
        pauses = [self.rng.uniform(0.1, 0.6) for _ in cuts]
        holder: list[int] = []

        def begin() -> None:
            holder.append(calls.create(self._abs(placed.path)))

        if not self._do(f"{what} in {len(cuts) + 1} chunks", placed.path, begin):
            return
        writer = threading.Thread(target=self._write_chunks, args=(holder[0], placed, cuts, pauses))
        self._writers.append(writer)
        writer.start()

    def _write_chunks(self, fd: int, placed: Placed, cuts: list[int], pauses: list[float]) -> None:
        content, start = placed.content, 0
        try:
            for cut, pause in zip([*cuts, len(content)], [*pauses, 0.0], strict=True):
                os.write(fd, content[start:cut])
                start = cut
                time.sleep(pause)
        finally:
            os.close(fd)
        with self._lock:
            placed.done = True
        self.note(f"chunks of {placed.sha256[:12]} all written and closed")

    def garbage(self) -> None:
        """A ``.pdf`` that is not one: empty, random bytes, or a whole PDF's first half."""
        path = self._fresh(self._folder(), FILE_NAMES, "junk-{}.pdf")
        kind = self.rng.choice(("empty", "random", "half"))
        whole = pdf_bytes(1, f"Half of seed {self.seed} file {self._next()}.")
        content = {"empty": b"", "random": self.rng.randbytes(600), "half": whole[:300]}[kind]
        placed = Placed(path, content, pdf=False)
        self.placed.append(placed)
        self.files[path] = placed
        if self._do(
            f"garbage {path!r} ({kind})", path, lambda: calls.write_new(self._abs(path), content)
        ):
            placed.done = True

    def mkdir(self) -> None:
        parent = self.rng.choice(["", *sorted(f for f in self.folders if f.count("/") < 2)])
        path = self._fresh(parent, FOLDER_NAMES, "dir{}")
        self.folders.add(path)
        self._do(f"mkdir {path!r}", path, lambda: os.mkdir(self._abs(path)))

    # -- moving things ------------------------------------------------------------------------

    def rename_file(self) -> None:
        source = self._pick_file()
        if source is None:
            return
        target = self._fresh(self._folder(), FILE_NAMES, "moved-{}.pdf")
        placed = self.files.pop(source)
        self.files[target] = placed
        if self._do(f"rename {source!r} -> {target!r}", target, lambda: self._mv(source, target)):
            placed.moved, placed.path = True, target

    def rename_folder(self) -> None:
        if not self.folders:
            return
        old = self.rng.choice(sorted(self.folders))
        new = self._fresh(_parent(old), FOLDER_NAMES, "renamed{}")
        below = self._below(old)
        self._moved(old, new)
        if self._do(f"rename folder {old!r} -> {new!r}", new, lambda: self._mv(old, new)):
            for placed in below:
                placed.moved = True

    def swap(self) -> None:
        """The folder moved aside and a link to a folder outside the share put in its place."""
        if not self.folders:
            return
        folder = self.rng.choice(sorted(self.folders))
        aside = self._fresh(_parent(folder), (), folder.rsplit("/", 1)[-1] + ".moved{}")
        label = self.rng.choice(sorted(self.targets))
        below = self._below(folder)
        self._moved(folder, aside)
        self.specials[folder] = f"link to {label}"
        self.swapped[folder] = aside

        def act() -> None:
            self._mv(folder, aside)
            for placed in below:
                placed.moved = True
            os.symlink(self.targets[label], self._abs(folder), target_is_directory=True)

        self._do(f"swap {folder!r} for a link to {label} (real one: {aside!r})", folder, act)

    def unswap(self) -> None:
        if not self.swapped:
            return
        link = self.rng.choice(sorted(self.swapped))
        aside = self.swapped.pop(link)
        del self.specials[link]
        below = self._below(aside)
        self._moved(aside, link)
        self._do(f"remove link {link!r}", link, lambda: os.unlink(self._abs(link)))
        if self._do(f"rename {aside!r} back -> {link!r}", link, lambda: self._mv(aside, link)):
            for placed in below:
                placed.moved = True

    # -- the rest of what a share allows ------------------------------------------------------

    def hard_link(self) -> None:
        source = self._pick_file()
        if source is None:
            return
        target = self._fresh(self._folder(), FILE_NAMES, "hard-{}.pdf")
        placed = self.files[source]
        self.files[target] = placed
        link = f"hard link {target!r} -> {source!r}"
        if self._do(link, target, lambda: self._mv(source, target, calls.hard_link)):
            placed.spoiled = placed.spoiled or "hard-linked"

    def fifo(self) -> None:
        path = self._fresh(self._folder(), FILE_NAMES, "fifo-{}.pdf")
        self.specials[path] = "fifo"
        self._do(f"mkfifo {path!r}", path, lambda: os.mkfifo(self._abs(path)))

    def symlink(self) -> None:
        """A file link: to a secret outside the share, to one of the user's files, or to
        nothing at all."""
        path = self._fresh(self._folder(), FILE_NAMES, "link-{}.pdf")
        kind = self.rng.choice(("secret", "own", "dangling"))
        own = self._pick_file() if kind == "own" else None
        if kind == "secret":
            target = str(self.rng.choice(self.secrets))
        else:
            target = self._abs(own) if own else self._abs("nowhere/at-all.pdf")
        self.specials[path] = f"link to {target}"
        self._do(
            f"symlink {path!r} -> {target!r}", path, lambda: os.symlink(target, self._abs(path))
        )

    def chmod(self) -> None:
        path = self._pick_file()
        if path is None:
            return
        mode = self.rng.choice((0o000, 0o200, 0o444, 0o600, 0o666))
        placed = self.files[path]
        if self._do(f"chmod {mode:04o} {path!r}", path, lambda: calls.chmod(self._abs(path), mode)):
            placed.spoiled = placed.spoiled or "chmod"

    def truncate(self) -> None:
        path = self._pick_file()
        if path is None:
            return
        placed = self.files[path]
        fraction = self.rng.random()
        with self._lock:
            busy = not placed.done
        if busy:
            self.note(f"truncate {path!r} -> skipped: still being written")
            return
        size = int(len(placed.content) * fraction)
        if self._do(
            f"truncate {path!r} to {size} B", path, lambda: calls.truncate(self._abs(path), size)
        ):
            placed.content = placed.content[:size]
            placed.versions.append(sha256(placed.content))
            placed.spoiled = placed.spoiled or "truncated"

    def overwrite(self) -> None:
        """The same file (inode) written anew with another whole PDF."""
        path = self._pick_file()
        if path is None:
            return
        placed = self.files[path]
        content = pdf_bytes(1, f"Rewritten by seed {self.seed}, number {self._next()}.")
        with self._lock:
            busy = not placed.done
        if busy:
            self.note(f"overwrite {path!r} -> skipped: still being written")
            return
        if self._do(
            f"overwrite {path!r}", path, lambda: calls.truncate(self._abs(path), 0, content)
        ):
            placed.content = content
            placed.versions.append(sha256(content))
            placed.spoiled = placed.spoiled or "overwritten"

    def delete(self) -> None:
        names = sorted([*self.files, *(p for p in self.specials if p not in self.swapped)])
        if not names:
            return
        path = self.rng.choice(names)
        placed = self.files.pop(path, None)
        self.specials.pop(path, None)
        if self._do(f"delete {path!r}", path, lambda: os.unlink(self._abs(path))) and placed:
            placed.spoiled = placed.spoiled or "deleted"

    def remove_folder(self) -> None:
        """``rm -r`` of one of its folders (links in it are removed, never followed)."""
        if not self.folders:
            return
        folder = self.rng.choice(sorted(self.folders))
        below = self._below(folder)
        inside = folder + "/"
        self.folders = {f for f in self.folders if f != folder and not f.startswith(inside)}
        self.files = {p: v for p, v in self.files.items() if not p.startswith(inside)}
        self.specials = {p: v for p, v in self.specials.items() if not p.startswith(inside)}
        self.swapped = {p: q for p, q in self.swapped.items() if not p.startswith(inside)}
        for placed in below:  # whatever was still there, even if rm -r stopped half-way
            placed.spoiled = placed.spoiled or "folder removed"
        self._do(
            f"rm -r {folder!r}",
            folder,
            lambda: shutil.rmtree(self._abs(folder), onerror=calls.taken_first),
        )


OPERATIONS: dict[str, tuple[Callable[[ShareUser], None], int]] = {
    "create": (ShareUser.create, 26),
    "garbage": (ShareUser.garbage, 4),
    "mkdir": (ShareUser.mkdir, 6),
    "rename_file": (ShareUser.rename_file, 8),
    "rename_folder": (ShareUser.rename_folder, 3),
    "swap": (ShareUser.swap, 6),
    "unswap": (ShareUser.unswap, 5),
    "hard_link": (ShareUser.hard_link, 4),
    "fifo": (ShareUser.fifo, 3),
    "symlink": (ShareUser.symlink, 5),
    "chmod": (ShareUser.chmod, 3),
    "truncate": (ShareUser.truncate, 3),
    "overwrite": (ShareUser.overwrite, 2),
    "delete": (ShareUser.delete, 4),
    "remove_folder": (ShareUser.remove_folder, 1),
}


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""
