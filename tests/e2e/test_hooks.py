"""Hooks end to end (contract section 6): a real daemon runs ``hooks.on_success`` with the
sidecar and ``hooks.on_failure`` with the error envelope; a hook that fails or hangs is logged
and counted, never changes the job's outcome and never holds up the next files; a stop kills
what still runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon
from tests.helpers import copy_sample, ended, make_pdf, shell_hook, wait_for, write_config

pytestmark = pytest.mark.slow

HANG_TIMEOUT = 20.0  # long enough for 20 small files to convert on quick workers on a busy machine


def _json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _hook_metrics(textfile: Path) -> dict[str, float]:
    """``hooks`` and each ``failures:REASON`` from the metrics' textfile."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(textfile.read_text(encoding="utf-8")):
        for sample in family.samples:
            if sample.name == "sir_convert_hooks_total":
                found["hooks"] = sample.value
            elif sample.name == "sir_convert_hook_failures_total":
                found[f"failures:{sample.labels['reason']}"] = sample.value
    return found


def test_a_hook_past_its_timeout_is_killed_and_counted_while_the_next_20_files_convert(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    hook = shell_hook(
        tmp_path / "hooks" / "notify.sh",
        f'case "$1" in\n'
        f"  */hangs.json) echo $$ > {marks}/hangs.pid; sleep 600 & wait;;\n"
        f'  *) echo "$1" >> {marks}/ran;;\n'
        "esac\n",
    )
    textfile = tmp_path / "sir-convert.prom"
    config = write_config(
        tmp_path,
        # One hook at a time: the 20 hooks after the hanging one wait, the conversions do not.
        hooks={"on_success": hook, "timeout_seconds": HANG_TIMEOUT, "max_running": 1},
        metrics={"textfile": str(textfile)},
    )
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    names = [f"doc{number:02d}" for number in range(20)]
    with Daemon(config, quick=True).start() as daemon:
        make_pdf(inbox / "hangs.pdf")
        pid = int(
            wait_for(
                lambda: (marks / "hangs.pid").exists() and (marks / "hangs.pid").read_text(), 60
            )
        )
        for name in names:
            make_pdf(inbox / f"{name}.pdf")
        wait_for(lambda: all((outbox / f"{n}.json").exists() for n in names), HANG_TIMEOUT)
        assert not ended(pid), "the 20 files converted while the hook still hung"
        assert not any(e["event"] == "hook_timed_out" for e in daemon.events())

        [timed_out] = daemon.wait_event("hook_timed_out", timeout=HANG_TIMEOUT + 10)
        wait_for(lambda: ended(pid), 5)
        daemon.wait_event("hook_ran", count=20, timeout=30)  # the 20 queued behind it
        assert daemon.terminate() == 0
    ran = (marks / "ran").read_text().split()

    hung = _json(outbox / "hangs.json")
    assert hung["status"] == "succeeded" and timed_out["job_id"] == hung["job_id"]
    assert timed_out["path"] == str(outbox / "hangs.json")
    assert timed_out["timeout_seconds"] == HANG_TIMEOUT
    assert sorted(ran) == [str(outbox / f"{name}.json") for name in names]
    assert _hook_metrics(textfile) == {
        "hooks": 21,
        "failures:exit": 0,
        "failures:timeout": 1,
        "failures:spawn": 0,
        "failures:dropped": 0,
    }


def test_hooks_get_the_published_path_and_the_job_and_a_failing_one_changes_no_outcome(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    record = (
        '{ echo "argc=$# arg=$1"\n'
        '  echo "job=$SIR_CONVERT_JOB_ID outcome=$SIR_CONVERT_OUTCOME site=$SITE_SETTING"\n'
        '  echo "stdin=$(readlink /proc/$$/fd/0)"\n'
        f'}} > "{calls}/$SIR_CONVERT_JOB_ID"\n'
    )
    hooks = tmp_path / "hooks"
    on_success = shell_hook(
        hooks / "success.sh", record + "echo 'webhook answered 503' >&2\nexit 1\n"
    )
    on_failure = shell_hook(hooks / "failure.sh", record + "echo queued for review\n")
    config = write_config(tmp_path, hooks={"on_success": on_success, "on_failure": on_failure})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    with Daemon(config, env={"SITE_SETTING": "from the unit"}, quick=True).start() as daemon:
        make_pdf(inbox / "good.pdf")
        copy_sample("not_a_pdf.pdf", inbox)
        [failed] = daemon.wait_event("hook_failed")
        [ran] = daemon.wait_event("hook_ran")
        assert daemon.terminate() == 0

    sidecar, envelope = _json(outbox / "good.json"), _json(outbox / "not_a_pdf.error.json")
    # The failing hook is logged with its output; the job it ran for stays succeeded.
    assert sidecar["status"] == "succeeded" and (tmp_path / "archive" / "good.pdf").exists()
    assert failed["job_id"] == sidecar["job_id"] and failed["exit_code"] == 1
    assert failed["output"] == "webhook answered 503"
    assert failed["effect"] == "the job's outcome stands"
    assert (ran["job_id"], ran["output"]) == (envelope["job_id"], "queued for review")
    # The one argument, the two variables, the daemon's environment, nothing on stdin.
    assert (calls / sidecar["job_id"]).read_text().splitlines() == [
        f"argc=1 arg={outbox / 'good.json'}",
        f"job={sidecar['job_id']} outcome=succeeded site=from the unit",
        "stdin=/dev/null",
    ]
    assert (calls / envelope["job_id"]).read_text().splitlines() == [
        f"argc=1 arg={outbox / 'not_a_pdf.error.json'}",
        f"job={envelope['job_id']} outcome=failed site=from the unit",
        "stdin=/dev/null",
    ]


def test_no_hook_outlives_the_daemon(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook = shell_hook(tmp_path / "hooks" / "hang.sh", f"sleep 600 &\necho $$ $! > {pids}\nwait\n")
    config = write_config(tmp_path, hooks={"on_success": hook, "timeout_seconds": 3})
    with Daemon(config, quick=True).start() as daemon:
        make_pdf(tmp_path / "inbox" / "a.pdf")
        running = wait_for(
            lambda: pids.exists() and len(found := pids.read_text().split()) == 2 and found, 60
        )
        stopping = time.monotonic()
        assert daemon.terminate(timeout=30) == 0
        took = time.monotonic() - stopping
        [timed_out] = [e for e in daemon.events() if e["event"] == "hook_timed_out"]
    assert took < 15, "the stop waited for the hook about hooks.timeout_seconds"
    assert timed_out["timeout_seconds"] == 3
    # The hook and the child it started were killed before the daemon exited.
    wait_for(lambda: all(ended(int(pid)) for pid in running), 5)


@pytest.mark.parametrize(
    ("point", "drop", "published", "outcome"),
    [
        ("before_archive", "report.pdf", "report.json", "succeeded"),
        ("before_fail_disposal", "not_a_pdf.pdf", "not_a_pdf.error.json", "failed"),
    ],
)
def test_a_job_a_crash_left_published_runs_its_hook_once_the_restart_finishes_it(
    tmp_path: Path, point: str, drop: str, published: str, outcome: str
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    hook = shell_hook(
        tmp_path / "hooks" / "record.sh",
        f'echo "$1 $SIR_CONVERT_OUTCOME" >> "{calls}/$SIR_CONVERT_JOB_ID"\n',
    )
    config = write_config(tmp_path, hooks={"on_success": hook, "on_failure": hook})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    with Daemon(config, crash_at=point, log_name="crashing", quick=True).start() as crashing:
        if drop == "report.pdf":
            make_pdf(inbox / drop)
        else:
            copy_sample(drop, inbox)
        assert crashing.wait(timeout=60) == -9  # killed with its output out, its job unended
    assert (outbox / published).exists() and list(calls.iterdir()) == []
    with Daemon(config, quick=True).start() as daemon:
        [ran] = daemon.wait_event("hook_ran")
        assert daemon.terminate() == 0
    job_id = _json(outbox / published)["job_id"]
    assert ran["job_id"] == job_id
    assert (calls / job_id).read_text() == f"{outbox / published} {outcome}\n"
