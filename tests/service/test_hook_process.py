"""One real hook run (``service.hook_process``): its argument, environment and session, its
output (the tail of a long one), its exit code, and its deadline: the hook and everything it
started are killed, even what ignores SIGTERM, and nothing it leaves behind outlives it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sir_convert_a_lot.service.hook_process import OUTPUT_KEEP, TERM_GRACE, Call, run
from tests.helpers import ended, shell_hook, wait_for

pytestmark = pytest.mark.slow

SIDECAR = Path("/srv/sir-convert/outbox/report.json")


def _call(hook: str, timeout: float = 10) -> Call:
    return Call(hook, SIDECAR, "job_3f2c", "succeeded", timeout)


def test_the_hook_gets_the_path_the_two_variables_the_daemons_environment_and_no_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_SETTING", "from the unit")
    hook = shell_hook(
        tmp_path / "hook.sh",
        'echo "argc=$# arg=$1"\n'
        'echo "job=$SIR_CONVERT_JOB_ID outcome=$SIR_CONVERT_OUTCOME site=$SITE_SETTING"\n'
        'echo "stdin=$(readlink /proc/$$/fd/0)"\n'
        "echo \"session=$(cut -d' ' -f6 /proc/$$/stat) pid=$$\"\n"
        "echo to stderr >&2\n",
    )
    ran = run(_call(hook), time.monotonic() + 10)
    assert (ran.result, ran.exit_code) == ("ran", 0)
    lines = ran.output.splitlines()
    assert lines[:3] == [
        f"argc=1 arg={SIDECAR}",
        "job=job_3f2c outcome=succeeded site=from the unit",
        "stdin=/dev/null",
    ]
    session, pid = (part.split("=")[1] for part in lines[3].split())
    assert session == pid, "the hook leads a session (and process group) of its own"
    assert lines[4] == "to stderr"


def test_a_failing_hook_says_its_code_and_keeps_the_end_of_a_long_output(tmp_path: Path) -> None:
    hook = shell_hook(
        tmp_path / "hook.sh", "seq 1 200000\necho 'the webhook said 500' >&2\nexit 3\n"
    )
    ran = run(_call(hook), time.monotonic() + 10)
    assert (ran.result, ran.exit_code) == ("exit", 3)
    assert ran.output.endswith("the webhook said 500")
    assert ran.output.startswith("…") and len(ran.output.encode()) <= OUTPUT_KEEP + 3
    assert ran.output_bytes > 1_000_000


def test_a_hook_past_its_deadline_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook = shell_hook(
        tmp_path / "hook.sh", f"echo started\nsleep 600 &\necho $$ $! > {pids}\nwait\n"
    )
    started = time.monotonic()
    ran = run(_call(hook, timeout=1), started + 1)
    took = time.monotonic() - started
    assert ran.result == "timeout" and ran.exit_code is None and ran.output == "started"
    assert 1 <= took < 1 + TERM_GRACE
    # SIGKILL is delivered at once but a process takes a moment to end.
    wait_for(lambda: all(ended(int(pid)) for pid in pids.read_text().split()), timeout=5)


def test_a_hook_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hook = shell_hook(
        tmp_path / "hook.sh", f"trap '' TERM\necho $$ > {pid_file}\nwhile :; do sleep 0.1; done\n"
    )
    started = time.monotonic()
    ran = run(_call(hook, timeout=1), started + 1)
    took = time.monotonic() - started
    assert ran.result == "timeout"
    assert 1 + TERM_GRACE - 0.2 <= took < 1 + TERM_GRACE + 2
    wait_for(lambda: ended(int(pid_file.read_text())), timeout=5)


def test_what_a_finished_hook_left_running_is_ended_and_does_not_hold_the_run(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    # The child keeps the output pipe open: waiting for its end would wait for the deadline.
    hook = shell_hook(tmp_path / "hook.sh", f"sleep 600 &\necho $! > {pid_file}\necho posted\n")
    started = time.monotonic()
    ran = run(_call(hook, timeout=30), started + 30)
    assert (ran.result, ran.output) == ("ran", "posted")
    assert time.monotonic() - started < 5
    wait_for(lambda: ended(int(pid_file.read_text())), timeout=5)


def test_a_hook_that_cannot_be_executed_is_a_spawn_failure(tmp_path: Path) -> None:
    path = tmp_path / "no-interpreter"
    path.write_text("echo this has no #! line\n", encoding="utf-8")
    path.chmod(0o755)
    ran = run(_call(str(path)), time.monotonic() + 10)
    assert ran.result == "spawn" and "Exec format error" in ran.error
    assert os.path.exists(path)
