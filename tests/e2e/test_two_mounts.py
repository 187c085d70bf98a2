"""Issue 22: two instances serve one share through two mount paths (bind mounts).

One real share (inbox, outbox, archive, failed, state) is bind-mounted at two paths and each
instance is configured through its own path, so the only thing that can make them agree on
output names is the share-relative reservation key, never the path. Where bind mounts are not
permitted (not root, no CAP_SYS_ADMIN) the second path goes through a symlinked parent folder
instead: still two path strings for one share; the test prints which it used (and failures
name it) rather than skipping. Both instances run under ``tests.slow_share_harness``, which
holds the window between choosing a stem and placing it open as a slow share does: without it
the two would almost never choose at once and a reservation keyed by the mount path would pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sir_convert_a_lot.jobs.publish import TMP_PREFIX
from tests.daemon import Daemon
from tests.helpers import config_document, files_under, pdf_bytes, wait_for

pytestmark = pytest.mark.slow

FOLDERS = ("inbox", "outbox", "archive", "failed", "state", "drops")
CASE_STEM = "quarterly-report"
SAME_NAME = "same.pdf"
SLOW_SHARE = ("tests.slow_share_harness", "0.3")  # seconds between choosing and placing


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _nfc_fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _case_variants(stem: str, count: int) -> list[str]:
    """``count`` names that differ from each other only in the case of ``stem``'s letters."""
    letters = [i for i, char in enumerate(stem) if char.isalpha()]
    assert count <= 1 << len(letters)
    names = []
    for number in range(count):
        chars = list(stem)
        for bit, index in enumerate(letters):
            if number >> bit & 1:
                chars[index] = chars[index].upper()
        names.append("".join(chars) + ".pdf")
    return names


def _run(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def _two_paths(share: Path, base: Path) -> Iterator[tuple[tuple[Path, Path], str]]:
    """The share at two paths: two bind mounts where permitted (always unmounted again, lazily
    if busy), else the share itself and the share through a symlinked parent folder."""
    mounts = (base / "mount-a", base / "mount-b")
    mounted: list[Path] = []
    try:
        for mount in mounts:
            mount.mkdir()
            if not _run("mount", "--bind", str(share), str(mount)):
                break
            mounted.append(mount)
        if len(mounted) == len(mounts):
            yield mounts, "bind mount"
            return
        for mount in reversed(mounted):
            _unmount(mount)
        mounted.clear()
        (base / "alias").symlink_to(share.parent, target_is_directory=True)
        yield (share, base / "alias" / share.name), "symlinked parent folder"
    finally:
        for mount in reversed(mounted):
            _unmount(mount)


def _unmount(mount: Path) -> None:
    if not _run("umount", str(mount)):
        _run("umount", "-l", str(mount))


def _instance_config(mount: Path, home: Path, name: str) -> Path:
    """An instance's config outside the share, every folder through its own mount path."""
    document = config_document(mount, conversion={"normalize": "none"}, instances={"name": name})
    path = home / name / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def _stage(mount: Path, tag: str, content: bytes) -> Path:
    staged = mount / "drops" / tag
    staged.write_bytes(content)
    return staged


def _link_in(staged: Path, name: str) -> None:
    """Link the staged file into the inbox beside it (never over a name there), then unlink the
    staged name: the file appears complete. Both paths go through one mount (no EXDEV)."""
    os.link(staged, staged.parent.parent / "inbox" / name)
    staged.unlink()


class _Witness:
    """Watches the outbox while the instances work: each name's (inode, sha256) at first sight,
    and every name that later points at another file or is gone."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.seen: dict[str, tuple[int, str]] = {}
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _look(self) -> None:
        present = set()
        for name in files_under(self.outbox):
            if any(part.startswith(TMP_PREFIX) for part in name.split("/")):
                continue
            try:
                inode, digest = self._identify(name)
            except FileNotFoundError:
                continue  # checked at its next sighting, or reported as gone if seen before
            present.add(name)
            first = self.seen.setdefault(name, (inode, digest))
            if first != (inode, digest):
                self.problems.append(f"{name} replaced: {first} then {(inode, digest)}")
                self.seen[name] = (inode, digest)
        for name in sorted(set(self.seen) - present):
            self.problems.append(f"{name} disappeared")
            del self.seen[name]

    def _identify(self, name: str) -> tuple[int, str]:
        known = self.seen.get(name)
        fd = os.open(self.outbox / name, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            if known is not None and known[0] == inode:
                return known  # same file: its content is checked again at the end
            return inode, _sha(handle.read())

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            self._look()

    def __enter__(self) -> _Witness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._look()
        for name, first in sorted(self.seen.items()):
            path = self.outbox / name
            with contextlib.suppress(FileNotFoundError):  # then _look reported it gone
                if (path.stat().st_ino, _sha(path.read_bytes())) != first:
                    self.problems.append(f"{name} changed after it was first seen")


def _sidecars(outbox: Path) -> dict[str, dict[str, Any]]:
    """The success sidecars in the outbox, by name (temporaries left out: they come and go)."""
    found = {}
    for name in os.listdir(outbox):
        if name.startswith(TMP_PREFIX):
            continue
        if name.endswith(".json") and not name.endswith((".error.json", ".docling.json")):
            found[name] = json.loads((outbox / name).read_text(encoding="utf-8"))
    return found


def test_two_instances_on_two_mount_paths_of_one_share_never_share_or_replace_a_name(
    tmp_path: Path,
) -> None:
    """100 names differing only in case at once, half through each path, then 50 drops of one
    name in a row, alternating paths: every input gets its own Markdown and sidecar, no two
    outputs share a case-insensitive name, and nothing in the outbox is ever replaced."""
    share = tmp_path / "share"
    for folder in FOLDERS:
        (share / folder).mkdir(parents=True)
    started = time.monotonic()
    with _two_paths(share, tmp_path) as (mounts, how):
        print(f"the second path: {how}")
        configs = [
            _instance_config(mount, tmp_path, name)
            for mount, name in zip(mounts, ("alpha", "beta"), strict=True)
        ]
        inputs: dict[str, str] = {}  # sha256 -> the name it was dropped as
        with (
            Daemon(configs[0], instance="alpha", harness=SLOW_SHARE, quick=True).start() as alpha,
            Daemon(configs[1], instance="beta", harness=SLOW_SHARE, quick=True).start() as beta,
            _Witness(share / "outbox") as witness,
        ):
            variants = _case_variants(CASE_STEM, 100)
            contents = [pdf_bytes(text=f"Case drop {i}: {n}") for i, n in enumerate(variants)]
            staged = []
            for i, (name, content) in enumerate(zip(variants, contents, strict=True)):
                staged.append((_stage(mounts[i % 2], f"case-{i:03d}", content), name))
                inputs[_sha(content)] = name
            for path, name in staged:  # all at once, half through each path
                _link_in(path, name)
            wait_for(lambda: not files_under(share / "inbox"), timeout=240)  # all claimed
            for i in range(50):
                content = pdf_bytes(text=f"Same-name drop {i}")
                inputs[_sha(content)] = SAME_NAME
                _link_in(_stage(mounts[i % 2], f"same-{i:02d}", content), SAME_NAME)
                wait_for(lambda: not (share / "inbox" / SAME_NAME).exists(), timeout=60)
            wait_for(lambda: len(_sidecars(share / "outbox")) >= 150, timeout=240)
            wait_for(lambda: not files_under(share / "inbox"), timeout=30)
            assert alpha.terminate() == 0
            assert beta.terminate() == 0
    print(f"the run took {time.monotonic() - started:.1f} s")

    assert len(inputs) == 150  # every drop's content distinct
    outbox = share / "outbox"
    assert witness.problems == [], how
    names = os.listdir(outbox)
    folded = [_nfc_fold(n) for n in names]
    assert sorted(n for n in names if folded.count(_nfc_fold(n)) > 1) == [], how
    assert not [n for n in names if n.endswith(".error.json")]

    by_source: dict[str, list[str]] = {}
    sidecars = _sidecars(outbox)
    for name, document in sidecars.items():
        by_source.setdefault(document["source"]["sha256"], []).append(name)
    assert sorted(by_source) == sorted(inputs)
    assert {sha: len(found) for sha, found in by_source.items() if len(found) != 1} == {}
    for name, document in sidecars.items():
        artifact = document["result"]["artifact"]
        markdown = outbox / artifact["markdown_filename"]
        assert markdown.name == name[: -len(".json")] + ".md"
        assert _sha(markdown.read_bytes()) == artifact["sha256"], name
        assert document["source"]["filename"] == inputs[document["source"]["sha256"]]
    instances = [document["execution"]["instance"] for document in sidecars.values()]
    assert sorted(set(instances)) == ["alpha", "beta"]

    archived = [_sha((share / "archive" / n).read_bytes()) for n in files_under(share / "archive")]
    assert sorted(archived) == sorted(inputs)
    assert not files_under(share / "state" / "reservations")
    assert not [p for p in files_under(share / "state" / "claimed") if not p.startswith(".")]
