"""gpu-check's report for a person (gpu-check.md): the runs as a table, then each comparison
and the verdict; the JSON beside it holds every figure."""

from __future__ import annotations

from typing import Any

import gpu_memory_check
import gpu_tables


def render(report: dict[str, Any]) -> str:
    lines = [
        "# gpu-check",
        "",
        f"Command: `{report['command']}`",
        f"Probe: {report['probe']['reason']}; device: {report['probe'].get('device')}",
        "",
        "| batch | load s | warm s | jobs | pages | accel | threads | s/page | pages/s (convert) "
        "| pages/s (wall) | GPU mem peak | GPU util % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in report["runs"]:
        lines.append(
            f"| {run['batch_size']} {run.get('engine', 'local')}"
            f"{', one job at a time' if run.get('in_flight') == 1 else ''} "
            f"| {run.get('model_load_seconds')} | {run.get('warm_seconds')} "
            f"| {run.get('jobs_succeeded')}/{run.get('jobs_total')} | {run.get('pages')} "
            f"| {','.join(run.get('acceleration_used') or [])} "
            f"| {len(run.get('conversion_threads') or [])} | {run.get('seconds_per_page_convert')} "
            f"| {run.get('pages_per_second_convert')} | {run.get('pages_per_second_wall')} "
            f"| {run.get('gpu_memory_peak_bytes')} | {run.get('gpu_utilisation_mean_percent')} |"
        )
    for run in report["runs"]:
        if "device_lock" in run:
            lines += ["", f"Device lock (batch {run['batch_size']}): {run['device_lock']}"]
    lines += ["", f"Scanned PDF, devices per stage: {report.get('scan_stage_devices')}"]
    lines += [
        "",
        "Markdowns per PDF (alone, among copies, every batch size; 1 = deterministic): "
        f"{report.get('markdown_variants')}",
        f"Lossless JSONs per PDF (the same, file names left out): {report.get('json_variants')}",
        "",
    ]
    lines += [*gpu_memory_check.render(report["memory"]), ""]
    lines += gpu_tables.render(report["tables"])
    lines += ["", "Verdict: " + ("PASS" if not report["problems"] else "FAIL")]
    lines += [f"- {problem}" for problem in report["problems"]]
    if report["work_folder"]["kept"]:
        lines += [
            "",
            f"The run's models, daemons and logs are kept in {report['work_folder']['path']}",
        ]
    return "\n".join(lines) + "\n"
