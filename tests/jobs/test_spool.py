"""The spool on real folders: claims, crash recovery at every step, leases, takeover, disposal.

At every instant a dropped file must live in exactly one place, and its relative path must be
recoverable exactly (bytes included) after a crash at any point.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sir_convert_a_lot.config import Paths
from sir_convert_a_lot.fsutil import read_json, write_json_atomic
from sir_convert_a_lot.jobs.job import Job, new_job_id
from sir_convert_a_lot.jobs.spool import RECORD, SOURCE, Spool
from sir_convert_a_lot.names import collision_key
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.sharefs import file_id
from tests.helpers import files_under, load_config, make_pdf

OPTIONS = ConversionOptions(
    backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
)
ME = "host-a-gpu0"


class Crash(Exception):
    """Stands in for the process dying at this exact point."""


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    found = Paths(
        inbox=tmp_path / "inbox",
        outbox=tmp_path / "outbox",
        state=tmp_path / "state",
        failed=tmp_path / "failed",
        archive=tmp_path / "archive",
    )
    for folder in found.named().values():
        folder.mkdir()
    return found


def started(paths: Paths, instance: str, clock: Callable[[], float] = time.time) -> Spool:
    """A spool as the service has it after start-up (its folders laid out)."""
    spool = Spool(paths, instance, clock=clock)
    spool.ensure_layout()
    return spool


def drop(paths: Paths, relative: str, content: bytes | None = None) -> Path:
    target = paths.inbox / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        make_pdf(target, text=f"content of {relative!r}")
    else:
        target.write_bytes(content)
    return target


def claim(spool: Spool, paths: Paths, relative: str) -> Job:
    info = os.lstat(paths.inbox / relative)
    job = spool.claims.claim(relative, None, OPTIONS, info.st_size, info.st_mtime_ns, file_id(info))
    assert job is not None
    return job


def record_on_disk(folder: Path) -> Job:
    return Job.from_record(read_json(folder / RECORD))


def job_folders(root: Path) -> list[str]:
    """``owner/job_id`` of every job folder under claimed/ or tmp/."""
    if not root.is_dir():
        return []
    return sorted(
        f"{owner.name}/{job.name}"
        for owner in root.iterdir()
        if owner.is_dir()
        for job in owner.iterdir()
    )


def age_lease(spool: Spool, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(spool.lease_path, (old, old))


# -- configuration ----------------------------------------------------------------------------


def test_a_spool_built_from_a_loaded_config_claims_into_its_state_folder(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    for folder in config.paths.named().values():
        folder.mkdir(parents=True, exist_ok=True)
    spool = started(config.paths, "test-instance")
    drop(config.paths, "a.pdf")

    job = claim(spool, config.paths, "a.pdf")

    assert (config.paths.state / "claimed" / "test-instance" / job.job_id / SOURCE).is_file()
    assert not (config.paths.inbox / "a.pdf").exists()


# -- claim ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "scans/2024/report.pdf",
        os.fsdecode(b"r\xe9sum\xe9.pdf"),
        os.fsdecode(b"caf\xc3\xa9/r\xe9sum\xe9 \xff.pdf"),
        "two\nlines.pdf",
        "x" * 236 + ".pdf",
    ],
    ids=["nested", "latin1-name", "latin1-in-folder", "newline", "240-bytes"],
)
def test_claim_moves_the_file_and_records_its_exact_relative_path(
    paths: Paths, relative: str
) -> None:
    original = drop(paths, relative)
    content = original.read_bytes()
    info = os.lstat(original)
    spool = started(paths, ME, clock=lambda: 1234.5)

    job = spool.claims.claim(
        relative, "scans", OPTIONS, info.st_size, info.st_mtime_ns, file_id(info)
    )

    assert job is not None
    folder = paths.state / "claimed" / ME / job.job_id
    assert (folder / SOURCE).read_bytes() == content
    assert not os.path.lexists(original)
    assert job.relative_path == relative
    assert job.instance == ME
    assert (job.claimed_size, job.claimed_mtime_ns, job.claimed_at) == (
        info.st_size,
        info.st_mtime_ns,
        1234.5,
    )
    on_disk = record_on_disk(folder)
    assert on_disk == job
    assert os.fsencode(on_disk.relative_path) == os.fsencode(relative)
    raw = json.loads((folder / RECORD).read_bytes())
    assert base64.b64decode(raw["relative_path_b64"]) == os.fsencode(relative)
    assert job_folders(paths.state / "tmp") == []


def test_claim_of_a_vanished_file_returns_none_and_leaves_nothing(paths: Paths) -> None:
    spool = started(paths, ME)

    assert spool.claims.claim("gone.pdf", None, OPTIONS, 10, 0, (0, 0)) is None

    assert job_folders(paths.state / "tmp") == []
    assert job_folders(paths.state / "claimed") == []


def test_two_instances_claiming_one_file_only_one_gets_it(paths: Paths) -> None:
    drop(paths, "a.pdf")
    first, second = started(paths, "host-a-gpu0"), started(paths, "host-b-gpu0")

    seen = file_id(os.lstat(paths.inbox / "a.pdf"))
    won = first.claims.claim("a.pdf", None, OPTIONS, 1, 0, seen)
    lost = second.claims.claim("a.pdf", None, OPTIONS, 1, 0, seen)

    assert won is not None
    assert lost is None
    assert job_folders(paths.state / "claimed") == [f"host-a-gpu0/{won.job_id}"]
    assert job_folders(paths.state / "tmp") == []


# -- recovery after a crash inside claim ------------------------------------------------------


def crash_claim_at_rename(
    paths: Paths, relative: str, which: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run a real claim and let the process 'die' just before its ``which``-th rename (1: the
    inbox file into the building folder, 2: the folder into claimed/)."""
    real_rename = os.rename
    calls = {"n": 0}

    def dying_rename(src: object, dst: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == which:
            raise Crash
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    info = os.lstat(paths.inbox / relative)
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", dying_rename)
        with pytest.raises(Crash):
            started(paths, ME).claims.claim(
                relative, None, OPTIONS, info.st_size, info.st_mtime_ns, file_id(info)
            )


def test_crash_before_the_inbox_rename_discards_the_half_claim(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = drop(paths, "sub/a.pdf")
    content = original.read_bytes()
    crash_claim_at_rename(paths, "sub/a.pdf", 1, monkeypatch)
    [building] = job_folders(paths.state / "tmp")
    assert sorted(os.listdir(paths.state / "tmp" / building)) == [RECORD]

    assert started(paths, ME).records.recover() == []

    assert job_folders(paths.state / "tmp") == []
    assert job_folders(paths.state / "claimed") == []
    assert original.read_bytes() == content  # still in the inbox, the one place it lives


def test_crash_before_the_folder_rename_completes_the_claim(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = os.fsdecode(b"sub/r\xe9sum\xe9.pdf")
    content = drop(paths, relative).read_bytes()
    crash_claim_at_rename(paths, relative, 2, monkeypatch)
    [building] = job_folders(paths.state / "tmp")
    assert sorted(os.listdir(paths.state / "tmp" / building)) == [RECORD, SOURCE]

    recovered = started(paths, ME).records.recover()

    assert [job.relative_path for job in recovered] == [relative]
    job_id = building.split("/")[1]
    assert recovered[0].job_id == job_id
    assert (paths.state / "claimed" / ME / job_id / SOURCE).read_bytes() == content
    assert job_folders(paths.state / "tmp") == []
    assert files_under(paths.inbox) == []


def test_an_empty_building_folder_is_discarded(paths: Paths) -> None:
    (paths.state / "tmp" / ME / new_job_id()).mkdir(parents=True)

    assert started(paths, ME).records.recover() == []
    assert job_folders(paths.state / "tmp") == []


def _job(relative: str, instance: str = ME, claimed_at: float = 1.0) -> Job:
    return Job(
        job_id=new_job_id(),
        relative_path=relative,
        profile=None,
        options=OPTIONS,
        claimed_at=claimed_at,
        claimed_size=3,
        claimed_mtime_ns=7,
        instance=instance,
    )


def _plant(root: Path, job: Job, source: bytes | None, record: bytes | None = None) -> Path:
    folder = root / job.instance / job.job_id
    folder.mkdir(parents=True)
    if record is None:
        write_json_atomic(folder / RECORD, job.to_record())
    else:
        (folder / RECORD).write_bytes(record)
    if source is not None:
        (folder / SOURCE).write_bytes(source)
    return folder


def test_a_building_folder_with_record_and_source_is_moved_to_claimed(paths: Paths) -> None:
    job = _job("a/b.pdf")
    _plant(paths.state / "tmp", job, b"pdf")

    assert started(paths, ME).records.recover() == [job]

    assert (paths.state / "claimed" / ME / job.job_id / SOURCE).read_bytes() == b"pdf"
    assert job_folders(paths.state / "tmp") == []


def test_a_claimed_folder_whose_source_is_gone_is_removed(paths: Paths) -> None:
    job = _job("a.pdf")
    _plant(paths.state / "claimed", job, None)

    assert started(paths, ME).records.recover() == []
    assert job_folders(paths.state / "claimed") == []


@pytest.mark.parametrize("stage", ["claimed", "tmp"])
@pytest.mark.parametrize(
    "record",
    [b'{"job_id": "job_x", "relat', b"", b"[]"],
    ids=["truncated", "empty", "not-an-object"],
)
def test_a_damaged_record_quarantines_the_source_never_deleting_it(
    paths: Paths, stage: str, record: bytes
) -> None:
    job = _job("a.pdf")
    _plant(paths.state / stage, job, b"the only copy", record=record)

    assert started(paths, ME).records.recover() == []

    assert job_folders(paths.state / "claimed") == []
    assert job_folders(paths.state / "tmp") == []
    kept = paths.failed / "_unrecoverable"
    assert [p.read_bytes() for p in kept.iterdir()] == [b"the only copy"]


def test_recover_returns_jobs_oldest_first_with_their_records(paths: Paths) -> None:
    newer = _job("new.pdf", claimed_at=20.0)
    older = _job("old.pdf", claimed_at=10.0)
    for job in (newer, older):
        _plant(paths.state / "claimed", job, b"pdf")

    assert started(paths, ME).records.recover() == [older, newer]


def test_a_crash_inside_move_no_replace_keeps_the_inbox_copy(paths: Paths) -> None:
    # link() done, unlink() not: one file under two names, in the inbox and in the job.
    original = drop(paths, "sub/a.pdf")
    content = original.read_bytes()
    job = _job("sub/a.pdf")
    folder = paths.state / "claimed" / ME / job.job_id
    folder.mkdir(parents=True)
    write_json_atomic(folder / RECORD, job.to_record())
    os.link(original, folder / SOURCE)

    assert started(paths, ME).records.recover() == []

    assert not folder.exists()
    assert original.read_bytes() == content
    assert os.stat(original).st_nlink == 1


def test_a_different_file_now_at_the_inbox_name_does_not_drop_the_job(paths: Paths) -> None:
    drop(paths, "a.pdf", b"a new upload")
    job = _job("a.pdf")
    _plant(paths.state / "claimed", job, b"the claimed original")

    assert started(paths, ME).records.recover() == [job]
    assert (paths.state / "claimed" / ME / job.job_id / SOURCE).read_bytes() == (
        b"the claimed original"
    )


# -- attempts ---------------------------------------------------------------------------------


def test_begin_attempt_counts_and_persists(paths: Paths) -> None:
    drop(paths, "a.pdf")
    spool = started(paths, ME)
    job = claim(spool, paths, "a.pdf")

    first = spool.records.begin_attempt(job)
    second = spool.records.begin_attempt(first)

    assert (first.attempts, second.attempts) == (1, 2)
    assert spool.records.reload(job) == second
    assert [j.attempts for j in started(paths, ME).records.recover()] == [2]


def test_update_persists_the_chosen_output_stem(paths: Paths) -> None:
    drop(paths, "a.pdf")
    spool = started(paths, ME)
    job = claim(spool, paths, "a.pdf")
    stem = os.fsdecode(b"r\xe9sum\xe9 (2)")

    spool.records.update(job, output_stem=stem)

    [recovered] = started(paths, ME).records.recover()
    assert recovered.output_stem == stem


# -- disposition ------------------------------------------------------------------------------


def test_return_to_inbox_restores_the_relative_folder(paths: Paths) -> None:
    content = drop(paths, "team/scans/a.pdf").read_bytes()
    spool = started(paths, ME)
    job = claim(spool, paths, "team/scans/a.pdf")
    (paths.inbox / "team" / "scans").rmdir()  # a user tidied up meanwhile

    target = spool.disposal.return_to_inbox(job)

    assert target == paths.inbox / "team" / "scans" / "a.pdf"
    assert target.read_bytes() == content
    assert job_folders(paths.state / "claimed") == []


def test_return_to_inbox_never_overwrites_a_new_file_at_the_same_name(paths: Paths) -> None:
    content = drop(paths, "sub/a.pdf").read_bytes()
    spool = started(paths, ME)
    job = claim(spool, paths, "sub/a.pdf")
    drop(paths, "sub/a.pdf", b"a newer upload")

    target = spool.disposal.return_to_inbox(job)

    assert target == paths.inbox / "sub" / "a (2).pdf"
    assert target.read_bytes() == content
    assert (paths.inbox / "sub" / "a.pdf").read_bytes() == b"a newer upload"
    assert job_folders(paths.state / "claimed") == []


def test_return_to_inbox_keeps_both_even_for_a_name_of_the_longest_length(paths: Paths) -> None:
    name = "y" * 251 + ".pdf"  # 255 bytes: a numbered name must be shortened to fit
    content = drop(paths, name).read_bytes()
    spool = started(paths, ME)
    job = claim(spool, paths, name)
    drop(paths, name, b"a newer upload")

    target = spool.disposal.return_to_inbox(job)

    assert target.parent == paths.inbox
    assert target.name.endswith(" (2).pdf")
    assert len(os.fsencode(target.name)) <= 255
    assert target.read_bytes() == content
    assert (paths.inbox / name).read_bytes() == b"a newer upload"


def test_archive_mirrors_the_relative_folder(paths: Paths) -> None:
    content = drop(paths, "team/a.pdf").read_bytes()
    spool = started(paths, ME)
    job = claim(spool, paths, "team/a.pdf")

    target = spool.disposal.archive(job, "archive")

    assert target == paths.archive / "team" / "a.pdf"
    assert target.read_bytes() == content
    assert job_folders(paths.state / "claimed") == []


def test_archive_never_overwrites_an_archived_file(paths: Paths) -> None:
    content = drop(paths, "team/a.pdf").read_bytes()
    (paths.archive / "team").mkdir()
    (paths.archive / "team" / "a.pdf").write_bytes(b"archived yesterday")
    spool = started(paths, ME)
    job = claim(spool, paths, "team/a.pdf")

    target = spool.disposal.archive(job, "archive")

    assert target == paths.archive / "team" / "a (2).pdf"
    assert target.read_bytes() == content
    assert (paths.archive / "team" / "a.pdf").read_bytes() == b"archived yesterday"


def test_archive_in_delete_mode_removes_the_original_only(paths: Paths) -> None:
    drop(paths, "team/a.pdf")
    drop(paths, "team/b.pdf", b"another file")
    spool = started(paths, ME)
    job = claim(spool, paths, "team/a.pdf")

    assert spool.disposal.archive(job, "delete") is None

    assert files_under(paths.archive) == []
    assert job_folders(paths.state / "claimed") == []
    assert files_under(paths.inbox) == ["team/b.pdf"]


def test_deleting_an_original_another_instance_took_over_is_not_a_success(
    paths: Paths,
) -> None:
    """A stale instance that wakes after the new holder finished must not count the job: the
    missing original says the job is no longer ours (the lifecycle logs lease_lost)."""
    drop(paths, "a.pdf")
    spool = started(paths, ME)
    job = claim(spool, paths, "a.pdf")
    taken_over = paths.state / "claimed" / "them"
    taken_over.mkdir()
    os.rename(spool.job_folder(job), taken_over / job.job_id)

    with pytest.raises(FileNotFoundError):
        spool.disposal.archive(job, "delete")


def test_fail_moves_the_original_and_writes_a_failure_record(paths: Paths) -> None:
    relative = os.fsdecode(b"team/r\xe9sum\xe9.pdf")
    content = drop(paths, relative).read_bytes()
    (paths.failed / "team").mkdir()
    earlier = paths.failed / "team" / os.fsdecode(b"r\xe9sum\xe9.pdf")
    earlier.write_bytes(b"failed last week")
    spool = started(paths, ME, clock=lambda: 99.0)
    job = claim(spool, paths, relative)
    error_json = paths.outbox / "team" / "résumé.error.json"
    error = {"code": "pdf_unreadable", "message": "The file is empty."}

    target = spool.disposal.fail(job, error, error_json)

    assert target == paths.failed / "team" / os.fsdecode(b"r\xe9sum\xe9 (2).pdf")
    assert target.read_bytes() == content
    assert earlier.read_bytes() == b"failed last week"
    assert job_folders(paths.state / "claimed") == []
    record = read_json(paths.state / "failures" / f"{job.job_id}.json")
    assert record["code"] == "pdf_unreadable"
    assert record["message"] == "The file is empty."
    assert record["failed_at"] == 99.0
    assert base64.b64decode(record["relative_path_b64"]) == os.fsencode(relative)
    assert base64.b64decode(record["failed_path_b64"]) == b"team/r\xe9sum\xe9 (2).pdf"
    assert base64.b64decode(record["error_json_b64"]) == os.fsencode("team/résumé.error.json")
    assert [r["job_id"] for r in spool.disposal.failure_records()] == [job.job_id]


# -- leases and takeover ----------------------------------------------------------------------


def test_heartbeat_writes_the_lease(paths: Paths) -> None:
    spool = started(paths, ME, clock=lambda: 42.0)

    spool.instances.heartbeat({"state": "idle", "queued": 0})

    lease = read_json(paths.state / "instances" / f"{ME}.lease")
    assert lease["instance"] == ME
    assert lease["heartbeat_at"] == 42.0
    assert (lease["state"], lease["queued"]) == ("idle", 0)
    assert [item.instance for item in spool.instances.leases()] == [ME]


def test_a_stop_note_outlives_the_lease_and_the_newest_comes_first(paths: Paths) -> None:
    early, late = (
        started(paths, "early", clock=lambda: 10.0),
        started(paths, ME, clock=lambda: 20.0),
    )
    for spool in (early, late):
        spool.instances.heartbeat({"state": "idle"})
        spool.instances.record_stop({"version": "9.9"})
        spool.instances.remove_lease()

    assert late.instances.leases() == []
    notes = late.instances.stops()
    assert [(n["instance"], n["stopped_at"], n["version"]) for n in notes] == [
        (ME, 20.0, "9.9"),
        ("early", 10.0, "9.9"),
    ]


def _dead_instance_with_jobs(paths: Paths, name: str, relatives: list[str]) -> list[Job]:
    dead = started(paths, name)
    dead.instances.heartbeat({"state": "converting"})
    jobs = []
    for relative in relatives:
        drop(paths, relative)
        jobs.append(claim(dead, paths, relative))
    age_lease(dead, 600)
    return jobs


def test_take_over_moves_a_dead_instances_jobs_into_ours(paths: Paths) -> None:
    [job] = _dead_instance_with_jobs(paths, "host-b-gpu0", ["sub/a.pdf"])
    me = started(paths, ME)
    me.instances.heartbeat({"state": "idle"})

    taken = me.instances.take_over_dead(lease_seconds=60)

    assert [(t.job_id, t.relative_path, t.instance) for t in taken] == [
        (job.job_id, "sub/a.pdf", ME)
    ]
    assert job_folders(paths.state / "claimed") == [f"{ME}/{job.job_id}"]
    assert record_on_disk(paths.state / "claimed" / ME / job.job_id).instance == ME


def test_take_over_leaves_a_live_instances_jobs_alone(paths: Paths) -> None:
    live = started(paths, "host-c-gpu0")
    live.instances.heartbeat({"state": "converting"})
    drop(paths, "a.pdf")
    job = claim(live, paths, "a.pdf")
    me = started(paths, ME)
    me.instances.heartbeat({"state": "idle"})

    assert me.instances.take_over_dead(lease_seconds=60) == []

    assert job_folders(paths.state / "claimed") == [f"host-c-gpu0/{job.job_id}"]
    assert live.records.still_mine(job)


def test_a_taken_over_job_is_no_longer_the_dead_instances(paths: Paths) -> None:
    dead = started(paths, "host-b-gpu0")
    dead.instances.heartbeat({})
    drop(paths, "a.pdf")
    job = claim(dead, paths, "a.pdf")
    age_lease(dead, 600)
    me = started(paths, ME)
    me.instances.heartbeat({})

    me.instances.take_over_dead(lease_seconds=60)

    assert not dead.records.still_mine(job)


def test_take_over_completes_a_dead_instances_half_claim(paths: Paths) -> None:
    _dead_instance_with_jobs(paths, "host-b-gpu0", ["a.pdf"])
    half = _job("b.pdf", instance="host-b-gpu0")
    _plant(paths.state / "tmp", half, b"arrived")
    me = started(paths, ME)
    me.instances.heartbeat({})

    me.instances.take_over_dead(lease_seconds=60)

    assert job_folders(paths.state / "tmp") == []
    assert (paths.state / "claimed" / ME / half.job_id / SOURCE).read_bytes() == b"arrived"
    assert {job.relative_path for job in me.records.recover()} == {"a.pdf", "b.pdf"}


def test_racing_takeovers_of_one_dead_job_only_one_wins(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    [job] = _dead_instance_with_jobs(paths, "host-b-gpu0", ["a.pdf"])
    first, second = started(paths, "host-c-gpu0"), started(paths, "host-d-gpu0")
    first.instances.heartbeat({})
    second.instances.heartbeat({})
    dead_folder = paths.state / "claimed" / "host-b-gpu0" / job.job_id
    real_rename = os.rename
    results: dict[str, list[Job]] = {}

    def interleaved_rename(src: object, dst: object, **kwargs: object) -> None:
        # The second instance has listed the job; the first moves it just before its rename.
        if Path(str(src)) == dead_folder and "first" not in results:
            monkeypatch.setattr(os, "rename", real_rename)
            results["first"] = first.instances.take_over_dead(lease_seconds=60)
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", interleaved_rename)
    results["second"] = second.instances.take_over_dead(lease_seconds=60)

    assert [t.job_id for t in results["first"]] == [job.job_id]
    assert results["second"] == []
    assert job_folders(paths.state / "claimed") == [f"host-c-gpu0/{job.job_id}"]


@pytest.mark.slow
def test_concurrent_takeovers_share_out_every_job_exactly_once(paths: Paths) -> None:
    jobs = _dead_instance_with_jobs(paths, "host-b-gpu0", [f"f{n:02}.pdf" for n in range(30)])
    rivals = [started(paths, f"host-{name}-gpu0") for name in "cdef"]
    for rival in rivals:
        rival.instances.heartbeat({})
    start = threading.Barrier(len(rivals))
    taken: dict[str, list[str]] = {}

    def run(rival: Spool) -> None:
        start.wait()
        taken[rival.instance] = [
            job.job_id for job in rival.instances.take_over_dead(lease_seconds=60)
        ]

    threads = [threading.Thread(target=run, args=(rival,)) for rival in rivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [job_id for ids in taken.values() for job_id in ids]
    assert sorted(everything) == sorted(job.job_id for job in jobs)
    on_disk = job_folders(paths.state / "claimed")
    assert sorted(entry.split("/")[1] for entry in on_disk) == sorted(everything)
    for owner, ids in taken.items():
        assert all(f"{owner}/{job_id}" in on_disk for job_id in ids)


# -- output name reservations -----------------------------------------------------------------


def test_a_reservation_is_held_for_one_job(paths: Paths) -> None:
    spool = started(paths, ME)
    folder = str(paths.outbox / "team")

    assert spool.reservations.reserve(folder, collision_key("Report"), "job_a") is True
    assert spool.reservations.reserve(folder, collision_key("REPORT"), "job_b") is False
    assert spool.reservations.reserve(folder, collision_key("report"), "job_a") is True  # a redo
    assert spool.reservations.reserve(str(paths.outbox / "other"), "report", "job_b") is True


def test_only_the_holder_releases_a_reservation(paths: Paths) -> None:
    spool = started(paths, ME)
    folder = "team"
    spool.reservations.reserve(folder, collision_key("Report"), "job_a")

    spool.reservations.release(folder, "Report", "job_b")
    assert spool.reservations.reserve(folder, collision_key("Report"), "job_b") is False

    spool.reservations.release(folder, "REPORT", "job_a")
    assert spool.reservations.reserve(folder, collision_key("Report"), "job_b") is True


def test_drop_orphan_reservations_keeps_those_of_live_jobs(paths: Paths) -> None:
    drop(paths, "a.pdf")
    spool = started(paths, ME)
    job = claim(spool, paths, "a.pdf")
    building = _job("b.pdf")
    _plant(paths.state / "tmp", building, None)
    folder = str(paths.outbox)
    spool.reservations.reserve(folder, "a", job.job_id)
    spool.reservations.reserve(folder, "b", building.job_id)
    spool.reservations.reserve(folder, "c", new_job_id())

    assert spool.records.drop_orphan_reservations() == 1

    assert spool.reservations.reserve(folder, "a", "job_other") is False
    assert spool.reservations.reserve(folder, "b", "job_other") is False
    assert spool.reservations.reserve(folder, "c", "job_other") is True
