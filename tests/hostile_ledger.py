"""What must hold after a hostile share user (tests/hostile_share.py) had its go: the sentinels
outside the share untouched, every file owed a result has exactly one, no output ever replaced,
no two output names alike. Each check returns the problems it found, in words."""

from __future__ import annotations

import json
import os
import stat
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.pdfs import pdf_bytes
from tests.hostile_calls import sha256
from tests.hostile_share import Placed

MARK = "SENTINEL"  # in every sentinel's text: a Markdown holding it was read through a link


@dataclass(frozen=True)
class Sentinel:
    path: Path
    sha256: str
    inode: int


def plant(folder: Path, label: str) -> list[Sentinel]:
    """A PDF that a swapped link would make tempting (``secret.pdf``) and a plain file, in a
    folder outside the share."""
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    planted = []
    for name, content in (
        ("secret.pdf", pdf_bytes(2, f"{MARK} {label}: never to be read by the daemon.")),
        (f"sentinel-{label}", f"{MARK} {label}\n".encode() * 64),
    ):
        path = folder / name
        path.write_bytes(content)
        planted.append(Sentinel(path, sha256(content), path.stat().st_ino))
    return planted


def sentinel_damage(sentinels: Iterable[Sentinel]) -> list[str]:
    problems = []
    for sentinel in sentinels:
        try:
            info = os.lstat(sentinel.path)
            intact = (
                stat.S_ISREG(info.st_mode)
                and info.st_ino == sentinel.inode
                and _digest(sentinel.path) == sentinel.sha256
            )
        except OSError as exc:
            intact, info = False, exc  # type: ignore[assignment]
        if not intact:
            problems.append(f"sentinel {sentinel.path} changed or moved: {info}")
    return problems


def _digest(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        return sha256(file.read())


def regular_files(root: Path, hidden: bool = True) -> Iterator[tuple[Path, os.stat_result]]:
    """Every regular file below ``root`` with its lstat, links never followed; with ``hidden``
    false, none under a hidden name (the daemon's temporaries and stage folders)."""
    for folder, names in _walk(root, hidden):
        for name in names:
            path = Path(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info


class Watch(threading.Thread):
    """Polls, while the daemon runs, every output in the outbox (inode, size, mtime and hash
    when first seen: none may change or vanish) and the folders a sentinel's bytes must never
    reach (outbox, archive, failed, state/claimed), so that a passing state is caught too.

    The one change allowed is design.md's ("Collisions"): a later result of the same source
    (same relative path) supersedes its earlier ``.error.json``."""

    def __init__(self, outbox: Path, guarded: list[Path], forbidden: dict[str, Path]) -> None:
        super().__init__(daemon=True)
        self.outbox = outbox
        self.guarded = guarded
        self.forbidden = forbidden  # sentinel sha256 -> its path
        self.outputs: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self.sources: dict[Path, str | None] = {}  # an error envelope's source relative path
        self.changed: dict[Path, str] = {}
        self.problems: list[str] = []
        self._hashed: set[tuple[Path, int, int, int]] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            self.poll()

    def poll(self) -> None:
        present = set()
        for path, info in regular_files(self.outbox, hidden=False):
            present.add(path)
            key = (info.st_ino, info.st_size, info.st_mtime_ns)
            first = self.outputs.get(path)
            if first is None:
                self.outputs[path] = (key, self._hash(path))
                if path.name.endswith(".error.json"):
                    self.sources[path] = _source_of(path)
            elif first[0] != key:
                self.changed.setdefault(path, f"replaced: (inode, size, mtime) {first[0]} -> {key}")
        for path in set(self.outputs) - present:
            self.changed.setdefault(path, "vanished")
        for folder in self.guarded:
            for path, info in regular_files(folder):
                seen = (path, info.st_ino, info.st_size, info.st_mtime_ns)
                if seen not in self._hashed:
                    self._hashed.add(seen)
                    self._hash(path)

    def _hash(self, path: Path) -> str:
        try:
            digest = _digest(path)
        except OSError:
            return ""
        if digest in self.forbidden:
            text = f"{path} holds the bytes of sentinel {self.forbidden[digest]}"
            if text not in self.problems:
                self.problems.append(text)
        return digest

    def finish(self) -> list[str]:
        """Stops polling, looks once more, hashes every output again, and says which changed
        outputs were not superseded error envelopes."""
        self._halt.set()
        self.join()
        self.poll()
        for path, (_key, digest) in self.outputs.items():
            if path not in self.changed and path.exists() and self._hash(path) != digest:
                self.changed[path] = "has other bytes than when it was first seen"
        for path, what in sorted(self.changed.items()):
            if not self._superseded(path):
                self.problems.append(f"output {path} {what}")
        return self.problems

    def _superseded(self, path: Path) -> bool:
        source = self.sources.get(path)
        if source is None:
            return False
        stem = path.name[: -len(".error.json")]
        later = (path, path.with_name(stem + ".json"))
        return any(p.is_file() and _source_of(p) == source for p in later)


def _source_of(path: Path) -> str | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    relative = (document.get("source") or {}).get("relative_path")
    return relative if isinstance(relative, str) else None


@dataclass(frozen=True)
class Result:
    """A sidecar or error envelope in the outbox."""

    path: Path
    status: str
    sha256: str | None
    relative_path: str | None
    markdown: Path | None


def results(outbox: Path) -> list[Result]:
    found = []
    for path, _info in regular_files(outbox, hidden=False):
        if path.suffix != ".json":
            continue
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        source = document.get("source") or {}
        artifact = (document.get("result") or {}).get("artifact") or {}
        markdown = artifact.get("markdown_filename")
        found.append(
            Result(
                path,
                document.get("status", ""),
                source.get("sha256"),
                source.get("relative_path"),
                path.parent / markdown if markdown else None,
            )
        )
    return found


def owed_results(
    placed: list[Placed], found: list[Result], archive: Path, failed: Path
) -> list[str]:
    """Every file owed a result has exactly one success (at its path, for ``exact``), with its
    Markdown, its original archived once and nothing in failed/."""
    archived = Counter(_hashes(archive))
    failed_too = Counter(_hashes(failed))
    problems = []
    for item in placed:
        if not item.owed:
            continue
        mine = [r for r in found if r.sha256 == item.sha256]
        wins = [r for r in mine if r.status == "succeeded"]
        what = f"{item.owed} file {item.path!r} ({item.sha256[:12]})"
        if len(wins) != 1 or len(mine) != 1:
            problems.append(f"{what}: {len(wins)} successes in {[str(r.path) for r in mine]}")
            continue
        [win] = wins
        if item.owed == "exact" and win.relative_path != item.path:
            problems.append(f"{what}: converted as {win.relative_path!r}")
        if win.markdown is None or not win.markdown.is_file():
            problems.append(f"{what}: its Markdown {win.markdown} is missing")
        if archived[item.sha256] != 1 or failed_too[item.sha256]:
            problems.append(
                f"{what}: {archived[item.sha256]}x in archive/, {failed_too[item.sha256]}x in "
                "failed/"
            )
    return problems


def _hashes(folder: Path) -> Iterator[str]:
    for path, _info in regular_files(folder):
        try:
            yield _digest(path)
        except OSError:
            continue


def every_result(found: list[Result], known: set[str], forbidden: set[str]) -> list[str]:
    """No content converted twice; nothing published from bytes the user never wrote in full
    (a file caught half-written); no result of a sentinel's bytes, nor Markdown with its text."""
    problems = []
    wins = Counter(r.sha256 for r in found if r.status == "succeeded")
    for digest, count in wins.items():
        if count > 1:
            problems.append(f"content {digest} converted {count} times")
        if digest not in known:
            problems.append(f"content {digest} published, but the user never wrote it whole")
    for result in found:
        if result.sha256 in forbidden:
            problems.append(f"{result.path} describes a sentinel's bytes")
        if MARK in _text(result.markdown):
            problems.append(f"{result.markdown} holds a sentinel's text")
    return problems


def _text(path: Path | None) -> str:
    return path.read_text("utf-8", "replace") if path is not None and path.is_file() else ""


def names_alike(outbox: Path) -> list[str]:
    """Two outputs in one folder whose names are equal after NFC and case folding."""
    problems = []
    for folder, names in _walk(outbox, hidden=False):
        keys = Counter(unicodedata.normalize("NFC", n).casefold() for n in names)
        problems += [f"{folder}: {key!r} {count}x" for key, count in keys.items() if count > 1]
    return problems


def leftovers(inbox: Path) -> list[str]:
    """What still waits in the inbox: every entry but folders and hidden names, links not
    followed (a link is itself an entry the daemon must dispose of)."""
    left = []
    for folder, names in _walk(inbox, hidden=False, links=True):
        left += [os.path.relpath(os.path.join(folder, name), inbox) for name in names]
    return sorted(left)


def _walk(root: Path, hidden: bool, links: bool = False) -> Iterator[tuple[str, list[str]]]:
    """Each folder below ``root`` with the names in it that are no folders (with ``links``,
    links to folders too), never through a link; with ``hidden`` false, hidden names and
    hidden folders' contents left out."""
    for folder, dirs, names in os.walk(root):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".")]
        linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))] if links else []
        yield folder, names + linked


def claimed_jobs(state: Path) -> list[str]:
    claimed = state / "claimed"
    if not claimed.is_dir():
        return []
    return sorted(
        f"{i.name}/{j.name}" for i in claimed.iterdir() if i.is_dir() for j in i.iterdir()
    )
