"""The backlog drain's cost, old code against new: one backlog drained by a base commit's daemon
and by this tree's, taking turns, in one run.

Usage:
    .venv/bin/python tools/backlog_cost.py --base COMMIT --output OUT.json [--new COMMIT]
        [--files 1000] [--rounds 3] [--markdown OUT.md]

Why one run: two runs on different days, or beside different loads, measure the machine, not
the code. The base commit's ``daemon/`` is unpacked (``git archive``) into a scratch folder, and
``--new``'s too if given (else the new arm is this tree as it is on disk); the folder goes when
the run ends, however it ends (failure, Ctrl-C, SIGTERM), and so does every daemon.
Each drain is tools/backlog.py's (a fresh scratch folder, N one-page PDFs moved into the inbox
at once, the real daemon as a process, timed from the drop to the last sidecar); the venv's
python runs sir-convert's entry point with PYTHONPATH at one tree's ``daemon/``, so the arms
differ only in the package's code. The daemon prints the file it imported the package from; a
drain whose daemon imported the other tree stops the run. The arms take turns and the order
swaps each round (old new, new old, ...), so neither always goes first. ``new_over_old`` is the
new arm's median jobs/min over the old arm's; it passes at 1 - tolerance (0.95: at most 5 %
slower) or above. The CPU seconds the daemon and its worker spent on each drain are reported
beside it (``cpu_new_over_old``, not judged): other load on the machine moves them less than it
moves wall time. Exit status: 0 passed, 1 failed or a file did not succeed, 2 usage error.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import backlog
from toolkit import REPO, exit_on_sigterm, write_report

ARMS = ("old", "new")
MARK = "sir_convert_a_lot imported from "
# sir-convert's console script, plus one line saying which tree the package came from.
LAUNCH = (
    "import sys, sir_convert_a_lot\n"
    f"print({MARK!r} + sir_convert_a_lot.__file__, flush=True)\n"
    "from sir_convert_a_lot.ops.cli import main\n"
    "sys.argv[0] = 'sir-convert'\n"
    "sys.exit(main())\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit whose code is the old arm")
    parser.add_argument("--new", help="the commit whose code is the new arm (default: this tree)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, help="also write the summary table here")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="drains per arm")
    parser.add_argument("--stability-seconds", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    for name in ("files", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: give 1 or more")
    if args.stability_seconds < 0 or not 0 <= args.tolerance < 1:
        parser.error("--stability-seconds must be 0 or more and --tolerance from 0 to below 1")
    commits = {"old": _commit(parser, "base", args.base), "new": _commit(parser, "new", args.new)}
    report = measure(args, commits)
    write_report(args.output, report)
    table = markdown(report)
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    all_succeeded = all(
        run["succeeded"] == args.files for arm in ARMS for run in report["arms"][arm]["runs"]
    )
    return 0 if report["within_tolerance"] and all_succeeded else 1


def _commit(parser: argparse.ArgumentParser, option: str, given: str | None) -> str | None:
    """The full id of the commit ``--option`` names, or a usage error saying what is wrong."""
    if given is None:
        return None
    commit = _git("rev-parse", "--verify", "--quiet", f"{given}^{{commit}}")
    if commit is None:
        parser.error(f"--{option} {given}: no such commit in {REPO} (see git log --oneline)")
    if _git("cat-file", "-e", f"{commit}:daemon/sir_convert_a_lot/ops/cli.py") is None:
        parser.error(f"--{option} {given}: that commit has no daemon to run")
    return commit


def measure(args: argparse.Namespace, commits: dict[str, str | None]) -> dict[str, Any]:
    """Every drain, the arms taking turns; the scratch folder and the old tree go at the end."""
    exit_on_sigterm()
    scratch = Path(tempfile.mkdtemp(prefix="sca-backlog-cost-"))
    try:
        trees = {
            arm: REPO if commit is None else unpack(commit, scratch / arm)
            for arm, commit in commits.items()
        }
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        order = [arm for r in range(args.rounds) for arm in (ARMS if r % 2 == 0 else ARMS[::-1])]
        for index, arm in enumerate(order, start=1):
            runs[arm].append(drain(args, arm, trees[arm], scratch / f"{index}-{arm}"))
            print(f"{index}/{len(order)} {arm}: {runs[arm][-1]['jobs_per_minute']} jobs/min")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return build_report(args, commits, order, runs)


def unpack(commit: str, folder: Path) -> Path:
    """The commit's ``daemon/`` under ``folder``, from git's object store, not a checkout."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "daemon"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def drain(args: argparse.Namespace, arm: str, tree: Path, root: Path) -> dict[str, Any]:
    """One backlog drain by ``tree``'s daemon, checked to have run that tree's code."""
    config, staging, names = backlog.stage(root, args.files, args.stability_seconds)
    python = str(REPO / ".venv" / "bin" / "python")
    command = [python, "-P", "-c", LAUNCH, "--config", str(config), "run"]
    env = {**os.environ, "PYTHONPATH": str(tree / "daemon")}
    try:
        result = backlog.run_drain(config, root, staging, names, command, env)
    except SystemExit:  # the log goes with the scratch folder: its end is shown here
        print((root / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    module = imported_from(root / "daemon.log")
    if not module.is_relative_to((tree / "daemon").resolve()):
        raise SystemExit(f"the {arm} arm's daemon ran {module}, not the code under {tree}")
    summary = backlog.build_report(args, root / "outbox", names, result)
    shutil.rmtree(root)
    return {
        "module_file": str(module),
        "jobs_per_minute": summary["jobs_per_minute"],
        "seconds_to_drain": summary["seconds_to_drain"],
        "cpu_seconds": summary["cpu_seconds_during_drain"],
        "seconds_drop_to_first_result": summary["seconds_drop_to_first_result"],
        "succeeded": summary["succeeded"],
        "rss_peak_bytes": summary["rss_bytes"]["peak"],
    }


def imported_from(log: Path) -> Path:
    """The package file the daemon imported, from the line LAUNCH prints first."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(MARK):
            return Path(line.removeprefix(MARK)).resolve()
    raise SystemExit(f"the daemon did not say where it imported the package from: see {log}")


def build_report(
    args: argparse.Namespace,
    commits: dict[str, str | None],
    order: list[str],
    runs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    modules = {arm: {run["module_file"] for run in runs[arm]} for arm in ARMS}
    if any(len(files) != 1 for files in modules.values()) or modules["old"] == modules["new"]:
        raise SystemExit(f"the arms did not each run one code tree of their own: {modules}")
    arms = {
        arm: {
            "module_file": runs[arm][0]["module_file"],
            "runs": runs[arm],
            "median_jobs_per_minute": statistics.median(r["jobs_per_minute"] for r in runs[arm]),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs[arm]),
        }
        for arm in ARMS
    }
    for arm, commit in commits.items():
        if commit is None:  # this tree as it is on disk: its commit, and whether it differs
            uncommitted = bool(_git("status", "--short", "daemon"))
            arms[arm].update(commit=_git("rev-parse", "HEAD"), uncommitted_changes=uncommitted)
        else:
            arms[arm]["commit"] = commit
    ratio = arms["new"]["median_jobs_per_minute"] / arms["old"]["median_jobs_per_minute"]
    old_cpu = arms["old"]["median_cpu_seconds"]
    cpu = round(arms["new"]["median_cpu_seconds"] / old_cpu, 4) if old_cpu else None
    return {
        "command": " ".join(["tools/backlog_cost.py", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "files": args.files,
        "rounds": args.rounds,
        "stability_seconds": args.stability_seconds,
        "order": order,
        "arms": arms,
        "new_over_old": round(ratio, 4),
        "cpu_new_over_old": cpu,
        "tolerance": args.tolerance,
        "within_tolerance": ratio >= 1 - args.tolerance,
    }


def markdown(report: dict[str, Any]) -> str:
    """The summary table for docs/reference/benchmarks.md."""
    lines = [
        "| arm | commit | jobs/min, each drain | median jobs/min | median CPU s per drain |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm in ARMS:
        side = report["arms"][arm]
        each = ", ".join(f"{run['jobs_per_minute']:.1f}" for run in side["runs"])
        median, cpu = side["median_jobs_per_minute"], side["median_cpu_seconds"]
        lines.append(
            f"| {arm} | `{(side['commit'] or 'unknown')[:7]}` | {each} | {median:.1f} | {cpu:.1f} |"
        )
    verdict = "within" if report["within_tolerance"] else "NOT within"
    lines.append("")
    lines.append(
        f"new over old (median jobs/min): **{report['new_over_old']:.3f}**, {verdict} "
        f"{report['tolerance'] * 100:g} % ({report['files']:,} files; order "
        f"{' '.join(report['order'])}); CPU seconds, new over old: "
        f"{report['cpu_new_over_old']}"
    )
    return "\n".join(lines) + "\n"


def _git(*arguments: str) -> str | None:
    """git's answer in REPO, or None where it says no."""
    completed = subprocess.run(
        ["git", "-C", str(REPO), *arguments], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


if __name__ == "__main__":
    raise SystemExit(main())
