"""Metrics for Prometheus (``service.metrics``): the registry fed from outcomes and samples, the
daemon end to end serving /metrics only where configured and writing the textfile, refusals at
start naming the key, and the example alert rules and dashboard read back."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sir_convert_a_lot.backends.table_counts import TableCounts
from sir_convert_a_lot.config import MetricsSection, listen_address
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.jobs.outcome import Measured, Outcome, Status
from sir_convert_a_lot.service.metrics import Metrics, Sample
from tests.daemon import Daemon, run_cli
from tests.helpers import REPO, load_config, make_pdf, wait_for, write_config

MONITORING = REPO / "docs" / "monitoring"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    """``(name, sorted labels)`` -> value for every sample of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


# -- the registry -----------------------------------------------------------------------------


def test_outcomes_and_samples_become_the_metrics() -> None:
    metrics = Metrics(MetricsSection(), "gpu0")
    metrics.sample(Sample(waiting=4, claimed=2, worker_starts=1))
    measured = Measured(pages=12, seconds=3.5, peak_gpu_memory_bytes=2**30, layout_calls=1.5)
    metrics.finished(Outcome("job_1", Status.SUCCEEDED, measured=measured))
    tables = TableCounts(predicted=5, fast=3, checked=3, mismatched=1)  # a check failed
    cpu = Measured(pages=4, seconds=0.5, layout_calls=0.5, layout_pages=4, tables=tables)
    metrics.finished(Outcome("job_2", Status.SUCCEEDED, measured=cpu))
    metrics.finished(Outcome("job_3", Status.FAILED, "pdf_encrypted"))
    metrics.sample(Sample(waiting=0, claimed=1, worker_starts=3))  # two restarts

    samples = _samples(metrics.render().decode())
    jobs = "sir_convert_jobs_total"
    assert _value(samples, jobs, daemon="gpu0", outcome="succeeded", code="none") == 2
    assert _value(samples, jobs, daemon="gpu0", outcome="failed", code="pdf_encrypted") == 1
    assert _value(samples, "sir_convert_pages_total", daemon="gpu0") == 16
    assert _value(samples, "sir_convert_conversion_seconds_count", daemon="gpu0") == 2
    assert _value(samples, "sir_convert_conversion_seconds_sum", daemon="gpu0") == 4.0
    assert _value(samples, "sir_convert_files_waiting", daemon="gpu0") == 0
    assert _value(samples, "sir_convert_files_claimed", daemon="gpu0") == 1
    assert _value(samples, "sir_convert_worker_restarts_total", daemon="gpu0") == 2
    assert _value(samples, "sir_convert_gpu_memory_peak_bytes", daemon="gpu0") == 2**30
    assert _value(samples, "sir_convert_layout_calls_total", daemon="gpu0") == 2.0
    assert _value(samples, "sir_convert_layout_pages_total", daemon="gpu0") == 4
    assert _value(samples, "sir_convert_layout_batch_mean_pages", daemon="gpu0") == 2.0
    assert _value(samples, "sir_convert_tables_predicted_total", daemon="gpu0") == 5
    assert _value(samples, "sir_convert_tables_fast_total", daemon="gpu0") == 3
    assert _value(samples, "sir_convert_table_checks_total", daemon="gpu0") == 3
    assert _value(samples, "sir_convert_table_mismatches_total", daemon="gpu0") == 1


def test_two_daemons_have_registries_of_their_own() -> None:
    first, second = Metrics(MetricsSection(), "a"), Metrics(MetricsSection(), "b")
    first.finished(Outcome("job_1", Status.FAILED, "pdf_unreadable"))
    assert b"pdf_unreadable" not in second.render()


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("metrics.example:80", ("metrics.example", 80)),
        ("9464", None),
        ("localhost", None),
        (":9464", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:94a", None),
        ("http://127.0.0.1:9464", None),
    ],
)
def test_listen_addresses(text: str, address: tuple[str, int] | None) -> None:
    assert listen_address(text) == address


@pytest.mark.parametrize(
    ("key", "value"), [("listen", "9464"), ("textfile", "relative.prom"), ("textfile", "/x.txt")]
)
def test_a_malformed_metrics_key_is_refused_naming_it(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^metrics\.{key}: must"):
        load_config(tmp_path, metrics={key: value})


# -- the daemon end to end --------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_serves_metrics_where_configured_and_writes_the_textfile(
    tmp_path: Path,
) -> None:
    port = _free_port()
    textfile = tmp_path / "node" / "sir-convert.prom"
    textfile.parent.mkdir()
    config = write_config(
        tmp_path, metrics={"listen": f"127.0.0.1:{port}", "textfile": str(textfile)}
    )
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    with Daemon(config) as daemon:
        daemon.start()
        make_pdf(inbox / "one.pdf", pages=2)
        make_pdf(inbox / "two.pdf", pages=3)
        (inbox / "broken.pdf").write_bytes(b"this is not a PDF at all\n")
        done = ("one.json", "two.json", "broken.error.json")
        wait_for(lambda: all((outbox / name).exists() for name in done), timeout=90)
        url = f"http://127.0.0.1:{port}/metrics"

        def settled() -> Samples | None:
            with urllib.request.urlopen(url, timeout=5) as answer:
                samples = _samples(answer.read().decode())
            claimed = _value(samples, "sir_convert_files_claimed", daemon="test-instance")
            return samples if claimed == 0 else None

        samples = wait_for(settled, timeout=30)
        assert _refused("127.0.0.2", port)  # only where configured
        assert daemon.terminate() == 0
    me = {"daemon": "test-instance"}
    jobs = "sir_convert_jobs_total"
    assert _value(samples, jobs, **me, outcome="succeeded", code="none") == 2
    assert _value(samples, jobs, **me, outcome="failed", code="pdf_unreadable") == 1
    assert _value(samples, "sir_convert_pages_total", **me) == 5
    assert _value(samples, "sir_convert_conversion_seconds_count", **me) == 2
    assert _value(samples, "sir_convert_files_waiting", **me) == 0
    assert _value(samples, "sir_convert_worker_restarts_total", **me) == 0
    assert _refused("127.0.0.1", port)  # stopped with the daemon
    written = _samples(textfile.read_text(encoding="utf-8"))
    assert _value(written, jobs, **me, outcome="succeeded", code="none") == 2
    assert [p.name for p in textfile.parent.iterdir()] == [textfile.name]  # no temporaries


@pytest.mark.slow
def test_a_malformed_listen_is_refused_at_start_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, metrics={"listen": "localhost"})
    result = run_cli("run", config=config, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metrics.listen: must be HOST:PORT" in lines[0], lines


@pytest.mark.slow
def test_an_address_in_use_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, metrics={"listen": f"127.0.0.1:{port}"})
        result = run_cli("run", config=config, timeout=60)
    assert result.returncode == 2
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in result.stderr


# -- the examples in docs/monitoring ----------------------------------------------------------


def _exported() -> set[str]:
    """Every sample name the daemon exports, once each metric has a value."""
    metrics = Metrics(MetricsSection(), "x")
    measured = Measured(pages=1, seconds=1.0, peak_gpu_memory_bytes=1, layout_calls=1.0)
    metrics.finished(Outcome("job_1", Status.SUCCEEDED, measured=measured))
    metrics.sample(Sample(waiting=1, claimed=1, worker_starts=2))
    return {name for name, _labels in _samples(metrics.render().decode())}


def _names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bsir_convert_[a-z_]+", expr))


def test_the_alert_rules_parse_and_use_only_exported_metrics() -> None:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules}
    assert {"SirConvertNothingConverted", "SirConvertFailureRateHigh"} <= alerts
    exported = _exported()
    for rule in rules:
        assert rule["annotations"]["summary"]
        used = _names_in(rule["expr"])
        assert used and used <= exported, (rule["alert"], used - exported)


def test_the_dashboard_parses_and_uses_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*(_names_in(expr) for expr in exprs))
    assert used <= _exported(), used - _exported()
    wanted = {"jobs_total", "pages_total", "conversion_seconds_bucket", "files_waiting"}
    assert {f"sir_convert_{name}" for name in wanted} <= used


def test_a_textfile_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    section = MetricsSection(textfile=str(tmp_path / "no-such-folder" / "x.prom"))
    with pytest.raises(ConfigError, match=r"^metrics\.textfile: cannot write .*x\.prom"):
        Metrics(section, "x").start()
