"""The daemon end to end, as a subprocess on real folders: drop files, read outputs and logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sir_convert_a_lot import __version__
from sir_convert_a_lot.engine.gpu import probe
from sir_convert_a_lot.jobs.publish import TMP_PREFIX
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.versions import build_id
from tests.daemon import Daemon, run_cli
from tests.helpers import (
    SHIPPED,
    copy_sample,
    files_under,
    make_pdf,
    pdf_bytes,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


def _outputs(outbox: Path) -> list[str]:
    return files_under(outbox)


def _sidecar(outbox: Path, stem: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((outbox / f"{stem}.json").read_text(encoding="utf-8"))
    return document


def _wait_files(folder: Path, names: list[str], timeout: float = 60) -> None:
    wait_for(lambda: all((folder / n).exists() for n in names), timeout=timeout)


def _state_is_empty(root: Path) -> bool:
    state = root / "state"
    leftovers = [
        p
        for p in files_under(state / "claimed") + files_under(state / "tmp")
        if not p.startswith(".")
    ]
    return not leftovers and not files_under(state / "reservations")


def test_without_a_gpu_the_default_config_fails_every_pdf_with_gpu_not_available(
    tmp_path: Path,
) -> None:
    if probe(0).cuda_available:
        pytest.skip("this host has a GPU: the default config converts instead")
    config = write_config(tmp_path, **SHIPPED)
    with Daemon(config).start() as daemon:
        ready = daemon.events()
        assert any(e["event"] == "no_backend_can_run" for e in ready)
        copy_sample("multi_page.pdf", tmp_path / "inbox")
        copy_sample("not_a_pdf.pdf", tmp_path / "inbox")
        _wait_files(tmp_path / "outbox", ["multi_page.error.json", "not_a_pdf.error.json"])
        assert daemon.terminate() == 0
    # A file that is no PDF says so at once, not only after a retry on a GPU host.
    not_a_pdf = json.loads((tmp_path / "outbox" / "not_a_pdf.error.json").read_text())["error"]
    assert (not_a_pdf["code"], not_a_pdf["details"]["reason"]) == (
        "pdf_unreadable",
        "no_pdf_header",
    )
    envelope = json.loads((tmp_path / "outbox" / "multi_page.error.json").read_text())
    assert envelope["status"] == "failed"
    assert envelope["error"]["code"] == "gpu_not_available"
    assert set(envelope["execution"]["tables"].values()) == {0}  # nothing was converted
    assert envelope["error"]["retryable"] is True
    assert envelope["error"]["details"]["reason"] == "no_cuda_device"
    assert envelope["error"]["correlation_id"] == envelope["job_id"]
    locked: dict[str, object] = {"lock": "gpu_first", "decision_record": None, "cpu_stages": []}
    assert envelope["governance"] == locked
    assert sorted(files_under(tmp_path / "failed")) == ["multi_page.pdf", "not_a_pdf.pdf"]
    assert not (tmp_path / "outbox" / "multi_page.md").exists()
    assert _state_is_empty(tmp_path)


def test_an_unlocked_cpu_config_converts_a_pdf_with_a_truthful_sidecar(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    source = copy_sample("multi_page.pdf", tmp_path / "incoming")
    original = source.read_bytes()
    with Daemon(config).start() as daemon:
        os.rename(source, tmp_path / "inbox" / "multi_page.pdf")  # renamed into the inbox
        _wait_files(tmp_path / "outbox", ["multi_page.md", "multi_page.json"])
        assert daemon.terminate() == 0
    markdown = (tmp_path / "outbox" / "multi_page.md").read_bytes()
    sidecar = _sidecar(tmp_path / "outbox", "multi_page")
    import hashlib

    assert "Evolution of the Word Processor" in markdown.decode("utf-8")
    assert sidecar["status"] == "succeeded"
    assert sidecar["source"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert sidecar["source"]["size_bytes"] == len(original)
    assert sidecar["source"]["pages"] == 5
    assert sidecar["source"]["relative_path"] == "multi_page.pdf"
    artifact = sidecar["result"]["artifact"]
    assert artifact["sha256"] == hashlib.sha256(markdown).hexdigest()
    assert artifact["size_bytes"] == len(markdown)
    metadata = sidecar["result"]["conversion_metadata"]
    assert metadata["acceleration_used"] == "cpu"
    assert metadata["backend_used"] == "pymupdf"
    assert metadata["ocr_enabled"] is False
    # pymupdf-layout's block labeller ran on every page, on the CPU; no OCR stage exists here
    assert metadata["stage_devices"]["layout"] == "cpu"
    assert set(metadata["stage_devices"]) <= {"layout", "table"}
    assert sidecar["execution"]["engine"] == "local"
    no_tableformer = {"predicted": 0, "fast": 0, "checked": 0, "mismatched": 0}
    assert sidecar["execution"]["tables"] == no_tableformer
    options = ConversionOptions(
        backend_strategy="pymupdf", ocr_mode="off", acceleration_policy="cpu_only"
    )
    assert metadata["options_fingerprint"] == options.fingerprint()
    assert sidecar["execution"]["device"] is None
    assert sidecar["execution"]["attempt"] == 1
    assert sidecar["governance"]["lock"] == "unlocked"
    assert sidecar["governance"]["decision_record"].endswith("0002-cpu-only-for-tests.md")
    assert list(sidecar) == sorted(sidecar)
    assert sidecar["versions"]["sir_convert_a_lot"] == __version__
    assert sidecar["versions"]["sir_convert_a_lot_build"] == build_id()
    assert (tmp_path / "archive" / "multi_page.pdf").read_bytes() == original
    assert _state_is_empty(tmp_path)


def test_every_sample_ends_in_exactly_one_terminal_state_with_the_right_code(
    tmp_path: Path,
) -> None:
    expected = {
        "multi_page": None,
        "2305.03393v1-pg9": None,
        "r6-owner-password": None,
        "zen_of_python_corrupted": None,
        "truncated_multi_page_60pct": "pdf_unreadable",
        "truncated_multi_page_20pct": "pdf_unreadable",
        "empty": "pdf_unreadable",
        "not_a_pdf": "pdf_unreadable",
        "r2-user-password": "pdf_encrypted",
    }
    config = write_config(tmp_path)
    with Daemon(config).start() as daemon:
        for stem in expected:
            copy_sample(f"{stem}.pdf", tmp_path / "inbox")
        make_pdf(tmp_path / "inbox" / "notes.txt")
        (tmp_path / "inbox" / "download.pdf.part").write_bytes(b"%PDF-1.4 half")
        (tmp_path / "inbox" / ".hidden.pdf").write_bytes(b"%PDF-1.4")
        terminal = [f"{s}.error.json" if c else f"{s}.json" for s, c in expected.items()]
        _wait_files(tmp_path / "outbox", [*terminal, "notes.error.json"], timeout=120)
        daemon.terminate()
    outbox = tmp_path / "outbox"
    for stem, code in expected.items():
        if code is None:
            assert _sidecar(outbox, stem)["status"] == "succeeded", stem
            assert not (outbox / f"{stem}.error.json").exists()
        else:
            envelope = json.loads((outbox / f"{stem}.error.json").read_text())
            assert envelope["error"]["code"] == code, stem
            assert envelope["error"]["retryable"] is False
            assert not (outbox / f"{stem}.json").exists()
    notes = json.loads((outbox / "notes.error.json").read_text())
    assert notes["error"]["code"] == "unsupported_media_type"
    # A cut-off copy is never converted from the half that arrived (MuPDF would repair it and
    # find all 5 pages): after watch.incomplete_wait_seconds it fails as truncated.
    for stem in ("truncated_multi_page_60pct", "truncated_multi_page_20pct"):
        error = json.loads((outbox / f"{stem}.error.json").read_text())["error"]
        assert error["details"] == {"reason": "truncated", "missing": "no_eof_marker"}, stem
    # ignored names are never touched
    assert (tmp_path / "inbox" / "download.pdf.part").exists()
    assert (tmp_path / "inbox" / ".hidden.pdf").exists()
    assert _state_is_empty(tmp_path)


def test_a_slow_writer_is_never_claimed_mid_write(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch={"stability_seconds": 0.6})
    data = pdf_bytes(pages=3)
    chunks = [data[i : i + 1024] for i in range(0, len(data), 1024)]
    with Daemon(config, quick=True).start() as daemon:
        target = tmp_path / "inbox" / "slow.pdf"
        with target.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                time.sleep(0.25)  # slower than nothing, faster than the window
        finished_writing = time.time()
        _wait_files(tmp_path / "outbox", ["slow.json"])
        claimed = daemon.wait_event("job_claimed")[0]
        daemon.terminate()
    from datetime import datetime

    claimed_at = datetime.fromisoformat(claimed["timestamp"].replace("Z", "+00:00")).timestamp()
    assert claimed_at >= finished_writing
    assert _sidecar(tmp_path / "outbox", "slow")["source"]["pages"] == 3
    assert (tmp_path / "archive" / "slow.pdf").read_bytes() == data


def test_polling_mode_and_folders_dropped_with_pdfs_inside(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch={"mode": "polling", "poll_interval_seconds": 0.2})
    outside = tmp_path / "outside" / "batch"
    make_pdf(outside / "a.pdf")
    make_pdf(outside / "deeper" / "b.pdf")
    with Daemon(config, quick=True).start() as daemon:
        os.rename(outside, tmp_path / "inbox" / "batch")
        _wait_files(tmp_path / "outbox", ["batch/a.json", "batch/deeper/b.json"])
        daemon.terminate()
    assert (tmp_path / "archive" / "batch" / "deeper" / "b.pdf").exists()


def test_name_collisions_get_numbered_never_overwritten(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start() as daemon:
        make_pdf(tmp_path / "inbox" / "Report.pdf", text="first")
        _wait_files(tmp_path / "outbox", ["Report.json"])
        make_pdf(tmp_path / "inbox" / "report.PDF", text="second")
        _wait_files(tmp_path / "outbox", ["report (2).json"])
        make_pdf(tmp_path / "inbox" / "Report.pdf", text="third")
        _wait_files(tmp_path / "outbox", ["Report (3).json"])
        daemon.terminate()
    outbox = tmp_path / "outbox"
    assert "first" in (outbox / "Report.md").read_text()
    assert "second" in (outbox / "report (2).md").read_text()
    assert "third" in (outbox / "Report (3).md").read_text()
    assert sorted(os.listdir(tmp_path / "archive")) == [
        "Report (2).pdf",
        "Report.pdf",
        "report.PDF",
    ]


def test_hostile_names_are_kept_exactly_and_logged_escaped(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inbox = os.fsencode(tmp_path / "inbox")
    names = [
        b"r\xe9sum\xe9 latin-1.pdf",  # not UTF-8
        b"line\nbreak.pdf",
        b"-starts-with-dash.pdf",
        ("x" * 236).encode() + b".pdf",  # 240 bytes
        "caf\u00e9 \u2014 NFC.pdf".encode(),
        b"report..final.pdf",  # holds ".." but stays one name in the inbox
    ]
    longest = ("y" * 251).encode() + b".pdf"  # 255 bytes: "<stem>.json" would not fit
    with Daemon(config, quick=True).start() as daemon:
        content = pdf_bytes()
        for name in [*names, longest]:
            with open(os.path.join(inbox, name), "wb") as handle:
                handle.write(content)
        outbox = os.fsencode(tmp_path / "outbox")
        wait_for(lambda: len(_finished(os.listdir(outbox), b".json")) == len(names) + 1)
        daemon.terminate()
        log_lines = daemon.log_path.read_text(errors="replace").splitlines()
    produced = set(os.listdir(outbox))
    for name in names:
        stem = name[:-4]
        assert stem + b".md" in produced, name
        assert stem + b".json" in produced, name
        assert name in os.listdir(os.fsencode(tmp_path / "archive"))
    (long_sidecar,) = [n for n in produced if n.startswith(b"yyy") and n.endswith(b".json")]
    assert len(long_sidecar) <= 255 and long_sidecar[:-5] + b".md" in produced
    with open(os.path.join(outbox, long_sidecar), "rb") as handle:
        assert json.loads(handle.read())["source"]["filename"] == longest.decode()
    assert longest in os.listdir(os.fsencode(tmp_path / "archive"))
    with open(os.path.join(outbox, b"r\xe9sum\xe9 latin-1.json"), "rb") as handle:
        latin = json.loads(handle.read())
    import base64

    assert base64.b64decode(latin["source"]["filename_b64"]) == b"r\xe9sum\xe9 latin-1.pdf"
    assert "\\xe9" in latin["source"]["filename"]
    for line in log_lines:  # a newline in a name never splits a log record
        if line.strip():
            json.loads(line)


def test_symlinks_fifos_and_linked_folders_are_never_followed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    secret = make_pdf(tmp_path / "private" / "secret.pdf", text="do not read")
    make_pdf(tmp_path / "private" / "inside-linked-folder.pdf")
    with Daemon(config, quick=True).start() as daemon:
        inbox = tmp_path / "inbox"
        (inbox / "link.pdf").symlink_to(secret)
        os.mkfifo(inbox / "pipe.pdf")
        (inbox / "folder-link").symlink_to(tmp_path / "private")
        _wait_files(
            tmp_path / "outbox", ["link.error.json", "pipe.error.json", "folder-link.error.json"]
        )
        daemon.terminate()
    for stem in ("link", "pipe", "folder-link"):
        error = json.loads((tmp_path / "outbox" / f"{stem}.error.json").read_text())["error"]
        assert error["code"] == "unsupported_media_type", stem
        assert error["retryable"] is False
    assert secret.exists() and (tmp_path / "private" / "inside-linked-folder.pdf").exists()
    assert not (tmp_path / "outbox" / "secret.md").exists()
    assert not list((tmp_path / "outbox").rglob("inside-linked-folder*"))
    assert (tmp_path / "failed" / "link.pdf").is_symlink()


def test_status_shows_the_instance_ready_at_once_even_with_a_long_lease(tmp_path: Path) -> None:
    """The lease is rewritten every quarter lease (15 s at the default 60); being ready, and
    every change status shows, must not wait for that."""
    config = write_config(tmp_path, instances={"lease_seconds": 60})
    with Daemon(config, quick=True).start():
        ready_at = time.monotonic()

        def shown_ready() -> bool:
            (instance,) = json.loads(run_cli("status", "--json", config=config).stdout)["instances"]
            return bool(instance["state"] == "ready")

        wait_for(shown_ready, timeout=10, interval=0.2)
        assert time.monotonic() - ready_at < 5
        # A finished job leaves the queue count at once, not a quarter lease later.
        make_pdf(tmp_path / "inbox" / "one.pdf")
        _wait_files(tmp_path / "outbox", ["one.json"])
        done_at = time.monotonic()

        def shown_empty() -> bool:
            (instance,) = json.loads(run_cli("status", "--json", config=config).stdout)["instances"]
            return bool(instance["queued"] == 0 and instance["state"] == "ready")

        wait_for(shown_empty, timeout=20, interval=0.2)
        assert time.monotonic() - done_at < 5


def test_sigterm_stops_cleanly_and_status_reports_the_instance(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start() as daemon:
        status = run_cli("status", "--json", config=config)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        (instance,) = report["instances"]
        assert instance["instance"] == "test-instance"
        assert instance["live"] is True
        assert instance["host"] == socket.gethostname()
        assert instance["version"] == __version__
        assert instance["build"] == build_id()
        running = run_cli("status", config=config).stdout
        assert "test-instance: live, " in running, running
        assert f"version {__version__}, build {build_id()}," in running, running
        copy_sample("not_a_pdf.pdf", tmp_path / "inbox")
        _wait_files(tmp_path / "outbox", ["not_a_pdf.error.json"])
        wait_for(
            lambda: json.loads(run_cli("status", "--json", config=config).stdout)["recent_failures"]
        )
        report = json.loads(run_cli("status", "--json", config=config).stdout)
        assert report["queue"]["failed"] == 1
        assert report["recent_failures"][0]["code"] == "pdf_unreadable"
        assert daemon.terminate() == 0
    assert not (tmp_path / "state" / "instances" / "test-instance.lease").exists()
    text = run_cli("status", config=config).stdout
    assert "not_a_pdf.pdf: pdf_unreadable" in text
    assert "none has ever run" not in text
    assert f"no instance is running; the last, test-instance on {socket.gethostname()} " in text
    assert f"(version {__version__}, build {build_id()}), stopped at " in text, text
    (stopped,) = json.loads(run_cli("status", "--json", config=config).stdout)["stopped_instances"]
    assert stopped["instance"] == "test-instance" and stopped["version"] == __version__
    assert stopped["build"] == build_id()


def test_retry_brings_a_failed_file_back_and_a_success_supersedes_its_error(
    tmp_path: Path,
) -> None:
    locked = write_config(tmp_path, governance={"allow_cpu_only": False, "decision_record": ""})
    # cpu_only under the lock: refused with gpu_not_available on any host
    with Daemon(locked, quick=True).start() as daemon:
        make_pdf(tmp_path / "inbox" / "later.pdf")
        _wait_files(tmp_path / "outbox", ["later.error.json"])
        daemon.terminate()
    assert (tmp_path / "failed" / "later.pdf").exists()
    unlocked = write_config(tmp_path)
    retried = run_cli("retry", "later.pdf", config=unlocked)
    assert retried.returncode == 0, retried.stderr
    assert (tmp_path / "inbox" / "later.pdf").exists()
    assert not (tmp_path / "failed" / "later.pdf").exists()
    with Daemon(unlocked, quick=True).start() as daemon:
        _wait_files(tmp_path / "outbox", ["later.json"])
        daemon.terminate()
    assert sorted(os.listdir(tmp_path / "outbox")) == ["later.json", "later.md"]


# Where the daemon is killed, and the attempt the final sidecar reports: every start of a
# conversion counts, so a kill after the conversion began costs one attempt; a kill after the
# sidecar was published only leaves the disposal to do.
CRASH_POINTS = {
    "after_claim": 1,
    "after_attempt_started": 2,
    "after_stem_chosen": 2,
    "before_sidecar": 2,
    "sidecar_tmp_written": 2,
    "before_archive": 1,
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_sigkill_at_a_stage_boundary_then_restart_gives_exactly_one_set_of_outputs(
    tmp_path: Path, point: str
) -> None:
    config = write_config(tmp_path)
    with Daemon(config, crash_at=point, log_name="crashing", quick=True).start() as crashing:
        make_pdf(tmp_path / "inbox" / "doc.pdf", pages=2)
        assert crashing.wait(timeout=60) == -9
    assert not (tmp_path / "inbox" / "doc.pdf").exists()
    with Daemon(config, quick=True).start() as daemon:
        _wait_files(tmp_path / "outbox", ["doc.json"])
        daemon.terminate()
    assert _outputs(tmp_path / "outbox") == ["doc.json", "doc.md"]
    assert os.listdir(tmp_path / "archive") == ["doc.pdf"]
    assert _state_is_empty(tmp_path)
    assert _sidecar(tmp_path / "outbox", "doc")["execution"]["attempt"] == CRASH_POINTS[point]


def test_sigkill_before_a_failure_is_disposed_still_fails_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Daemon(
        config, crash_at="before_fail_disposal", log_name="crashing", quick=True
    ).start() as crashing:
        copy_sample("not_a_pdf.pdf", tmp_path / "inbox")
        assert crashing.wait(timeout=60) == -9
    with Daemon(config, quick=True).start() as daemon:
        wait_for(lambda: (tmp_path / "failed" / "not_a_pdf.pdf").exists())
        daemon.terminate()
    assert _outputs(tmp_path / "outbox") == ["not_a_pdf.error.json"]
    assert _state_is_empty(tmp_path)


def test_repeated_sigkills_during_a_batch_lose_nothing_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    outbox = tmp_path / "outbox"
    names = [f"batch-{i:02d}" for i in range(16)]
    for name in names:
        make_pdf(tmp_path / "inbox" / f"{name}.pdf", pages=2)
    for number, delay in enumerate((1.5, 2.5, 3.5)):
        # Each its own log: in a shared one, the next start would see the last one's readiness.
        with Daemon(config, log_name=f"killed-{number}").start() as daemon:
            time.sleep(delay)
            daemon.kill()
    with Daemon(config).start() as daemon:
        ended = [(outbox / f"{n}.json", outbox / f"{n}.error.json") for n in names]
        wait_for(lambda: all(a.exists() or b.exists() for a, b in ended), timeout=240)
        daemon.terminate()
    # Each file ends once. One whose conversion all three kills interrupted has used its three
    # attempts (every conversion started counts), and fails saying so; the others convert.
    crashed = [n for n in names if (outbox / f"{n}.error.json").exists()]
    for name in crashed:
        error = json.loads((outbox / f"{name}.error.json").read_text())["error"]
        assert (error["code"], error["details"]["attempts"]) == ("worker_crashed", 3), name
    converted = [n for n in names if n not in crashed]
    expected = sorted(
        [f"{n}.json" for n in converted]
        + [f"{n}.md" for n in converted]
        + [f"{n}.error.json" for n in crashed]
    )
    assert _outputs(outbox) == expected
    assert sorted(os.listdir(tmp_path / "archive")) == [f"{n}.pdf" for n in converted]
    assert sorted(os.listdir(tmp_path / "failed")) == [f"{n}.pdf" for n in crashed]
    assert not os.listdir(tmp_path / "inbox")
    assert _state_is_empty(tmp_path)


def test_two_instances_share_one_inbox_and_convert_each_file_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, conversion={"normalize": "none"})
    names = [f"file-{i:03d}.pdf" for i in range(100)]
    with (
        Daemon(config, instance="alpha", quick=True).start() as alpha,
        Daemon(config, instance="beta", quick=True).start() as beta,
    ):
        for name in names:
            make_pdf(tmp_path / "inbox" / name)
        _wait_files(tmp_path / "outbox", [n.replace(".pdf", ".json") for n in names], timeout=240)
        assert alpha.terminate() == 0
        assert beta.terminate() == 0
    outputs = _outputs(tmp_path / "outbox")
    assert len(outputs) == 200 and not any("(2)" in o for o in outputs)
    assert sorted(os.listdir(tmp_path / "archive")) == names
    sidecars = [_sidecar(tmp_path / "outbox", n[:-4]) for n in names]
    assert len({s["job_id"] for s in sidecars}) == 100
    by_instance = {s["execution"]["instance"] for s in sidecars}
    assert by_instance == {"alpha", "beta"}
    assert _state_is_empty(tmp_path)


def test_a_dead_instances_claim_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    config = write_config(tmp_path, instances={"lease_seconds": 2})
    with Daemon(
        config, instance="doomed", crash_at="after_claim", log_name="doomed", quick=True
    ).start() as doomed:
        make_pdf(tmp_path / "inbox" / "orphan.pdf")
        assert doomed.wait(timeout=60) == -9
    assert list((tmp_path / "state" / "claimed" / "doomed").iterdir())
    with Daemon(config, instance="rescuer", quick=True).start() as rescuer:
        _wait_files(tmp_path / "outbox", ["orphan.json"], timeout=30)
        rescuer.terminate()
    assert _sidecar(tmp_path / "outbox", "orphan")["execution"]["instance"] == "rescuer"
    assert _state_is_empty(tmp_path)


def test_the_daemon_exits_non_zero_when_its_watcher_dies(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start() as daemon:
        shutil.rmtree(tmp_path / "inbox")
        code = daemon.wait(timeout=30)
    assert code == 1
    assert any(e["event"] == "watcher_died" for e in daemon.events())


def test_a_second_daemon_with_the_same_instance_name_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with Daemon(config, quick=True).start():
        second = run_cli("run", config=config, timeout=60)
    assert second.returncode == 2
    assert "instances.name" in second.stderr


def test_a_burst_of_drops_is_converted_completely(tmp_path: Path) -> None:
    """Events arriving faster than jobs finish are only hints: they queue, nothing is lost."""
    config = write_config(tmp_path, watch={"stability_seconds": 0.5})
    with Daemon(config).start() as daemon:
        writer = threading.Thread(
            target=lambda: [
                (tmp_path / "inbox" / f"many-{i:04d}.pdf").write_bytes(pdf_bytes())
                for i in range(40)
            ]
        )
        writer.start()
        writer.join()
        _wait_files(tmp_path / "outbox", [f"many-{i:04d}.json" for i in range(40)], timeout=120)
        daemon.terminate()
    assert len(os.listdir(tmp_path / "archive")) == 40


def _finished(names: list[bytes], suffix: bytes) -> list[bytes]:
    """Published outputs only: a name still under its temporary prefix is mid-publish."""
    hidden = os.fsencode(TMP_PREFIX)
    return [n for n in names if n.endswith(suffix) and not n.startswith(hidden)]


def _expected_outcomes(corpus: Path) -> dict[str, str | None]:
    """From the corpus manifests (facts recorded when the corpus was built, not by this daemon):
    None for a file that must convert, else the error code it must end with."""
    expected: dict[str, str | None] = {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        relative = str(path.relative_to(corpus))
        expected[relative] = None if path.suffix.lower() == ".pdf" else "unsupported_media_type"
    for manifest in corpus.glob("*/manifest.json"):
        folder = manifest.parent.name
        for entry in json.loads(manifest.read_text())["files"]:
            relative = f"{folder}/{entry['file']}"
            if not relative.lower().endswith(".pdf"):
                continue
            if entry.get("needs_pass"):
                expected[relative] = "pdf_encrypted"
            elif (
                entry.get("pages") == 0
                or entry.get("bytes") == 0
                or "non-PDF bytes" in entry.get("recipe", "")
                or "partially-written" in entry.get("recipe", "")
            ):
                expected[relative] = "pdf_unreadable"
    return expected


def test_every_file_of_the_shared_corpus_ends_in_exactly_one_terminal_state(
    tmp_path: Path, shared_corpus: Path
) -> None:
    expected = _expected_outcomes(shared_corpus)
    staging = tmp_path / "staging" / "corpus"
    shutil.copytree(shared_corpus, staging)
    config = write_config(tmp_path, watch={"stability_seconds": 0.5})
    with Daemon(config).start() as daemon:
        os.rename(staging, tmp_path / "inbox" / "corpus")  # a whole folder dropped at once

        def terminal() -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = {}
            for path in (tmp_path / "outbox").rglob("*.json"):
                if path.name.startswith(TMP_PREFIX):
                    continue  # a sidecar being published right now, renamed in a moment
                document = json.loads(path.read_text())
                relative = document["source"]["relative_path"].removeprefix("corpus/")
                found.setdefault(relative, []).append(document)
            return found

        wait_for(lambda: len(terminal()) >= len(expected), timeout=600, interval=1)
        daemon.terminate()
    outcomes = terminal()
    assert sorted(outcomes) == sorted(expected)
    wrong = {}
    for relative, code in expected.items():
        documents = outcomes[relative]
        assert len(documents) == 1, relative
        got = documents[0]["error"]["code"] if documents[0]["status"] == "failed" else None
        if got != code:
            wrong[relative] = (code, got)
    assert wrong == {}
    assert files_under(tmp_path / "inbox") == []
    kept = files_under(tmp_path / "archive") + files_under(tmp_path / "failed")
    assert len(kept) == len(expected)
    assert _state_is_empty(tmp_path)


def test_the_periodic_rescan_finds_files_whose_events_never_came(tmp_path: Path) -> None:
    # A polling observer that looks once an hour stands in for a network mount that sends no
    # events: only the rescan can see the file.
    config = write_config(
        tmp_path,
        watch={"mode": "polling", "poll_interval_seconds": 3600, "rescan_interval_seconds": 1},
    )
    with Daemon(config, quick=True).start() as daemon:
        make_pdf(tmp_path / "inbox" / "quiet.pdf")
        _wait_files(tmp_path / "outbox", ["quiet.json"], timeout=30)
        daemon.terminate()


def _inotify_queue_limit() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        return 16384


def test_a_real_inotify_queue_overflow_triggers_a_rescan_that_finds_the_lost_files(
    tmp_path: Path,
) -> None:
    # The daemon is frozen (SIGSTOP) while ignored dotfiles are created in the inbox: three
    # events each (create, open, close) fill the kernel's queue past its limit, so the events
    # of the PDFs dropped afterwards are lost for real. The periodic rescan is an hour away:
    # only the overflow alarm can find them in time.
    config = write_config(tmp_path, watch={"rescan_interval_seconds": 3600})
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    staging.mkdir()
    names = [f"after-overflow-{i}.pdf" for i in range(3)]
    for name in names:
        make_pdf(staging / name)
    with Daemon(config, quick=True).start() as daemon:
        assert daemon.process is not None
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            for i in range(_inotify_queue_limit() // 3 + 2000):
                os.close(os.open(inbox / f".filler-{i}", os.O_CREAT | os.O_WRONLY, 0o600))
            for name in names:
                os.rename(staging / name, inbox / name)
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        lost = daemon.wait_event("inbox_events_lost", timeout=30)
        assert lost[0]["effect"] == "rescanning now"
        _wait_files(tmp_path / "outbox", [n.replace(".pdf", ".json") for n in names], timeout=60)
        assert daemon.terminate() == 0
    assert sorted(files_under(tmp_path / "archive")) == sorted(names)


def test_files_waiting_before_the_start_are_found_by_the_start_up_scan(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    make_pdf(tmp_path / "inbox" / "early" / "waiting.pdf")
    with Daemon(config, quick=True).start() as daemon:
        _wait_files(tmp_path / "outbox", ["early/waiting.json"])
        daemon.terminate()


def test_a_memory_limit_below_the_idle_worker_is_reported_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, conversion={"max_worker_memory_bytes": 1024 * 1024})
    with Daemon(config).start() as daemon:
        (warning,) = daemon.wait_event("worker_memory_limit_too_low")
        assert warning["worker_memory_bytes"] > warning["max_worker_memory_bytes"] == 1024 * 1024
        make_pdf(tmp_path / "inbox" / "any.pdf")
        _wait_files(tmp_path / "outbox", ["any.error.json"])
        assert daemon.terminate() == 0
    error = json.loads((tmp_path / "outbox" / "any.error.json").read_text())["error"]
    assert (error["code"], error["details"]["reason"]) == (
        "worker_crashed",
        "memory_limit_exceeded",
    )


def _most_at_once(events: list[dict[str, Any]]) -> int:
    """The most jobs started and not yet finished at one point of the log."""
    running: set[str] = set()
    most = 0
    for event in events:
        if event.get("event") == "conversion_started":
            running.add(event["job_id"])
            most = max(most, len(running))
        elif event.get("event") in ("job_succeeded", "job_failed"):
            running.discard(event["job_id"])
    return most


def test_several_jobs_convert_at_once_paced_by_their_pages(tmp_path: Path) -> None:
    # 3 pages each, 8 pages in flight: a job is claimed only while the others hold 6 or fewer
    # pages (all counted), so at most 3 run at once; with the worker's pace, at least 2 do.
    config = write_config(tmp_path, gpu={"max_pages_in_flight": 8})
    names = [f"doc-{i:02d}.pdf" for i in range(12)]
    for name in names:
        make_pdf(tmp_path / "inbox" / name, pages=3)
    with Daemon(config).start() as daemon:
        _wait_files(tmp_path / "outbox", [n.replace(".pdf", ".json") for n in names], timeout=120)
        assert daemon.terminate() == 0
        events = daemon.events()
    assert 2 <= _most_at_once(events) <= 3
    succeeded = [e["source"] for e in events if e.get("event") == "job_succeeded"]
    assert sorted(succeeded) == names  # each once
    assert sorted(os.listdir(tmp_path / "archive")) == names
    assert _outputs(tmp_path / "outbox") == sorted(
        n.replace(".pdf", suffix) for n in names for suffix in (".json", ".md")
    )
    assert _state_is_empty(tmp_path)
