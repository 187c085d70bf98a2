"""The memory soak's arithmetic and picture (tools/memory_report.py) and its documents
(tools/memory_soak.py): a slope and interval that a known line gives back, issue 26's two ways to
pass judged as written, a PNG that opens, and generated PDFs with a table on every page."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import memory_report
import memory_soak


@pytest.mark.parametrize(
    ("df", "table", "within"),
    [(3, 3.182, 0.025), (5, 2.571, 0.004), (10, 2.228, 0.004), (30, 2.042, 0.004)],
)
def test_the_t_quantile_matches_the_table(df: int, table: float, within: float) -> None:
    assert memory_report.t95(df) == pytest.approx(table, abs=within)


def test_a_known_slope_comes_back_inside_its_interval() -> None:
    rng = random.Random(1)
    documents = [float(n * 50) for n in range(40)]
    rss = [3.5e9 + 0.22e6 * d + rng.gauss(0, 30e6) for d in documents]  # 220 MB per 1,000
    fitted = memory_report.fit(documents, rss)
    low, high = fitted["ci95_mb_per_1000"]
    assert low < 220 < high and high - low < 100
    flat = memory_report.fit(documents, [3.5e9] * 40)
    assert flat["slope_mb_per_1000"] == 0 and flat["ci95_mb_per_1000"] == [0, 0]
    assert memory_report.fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["slope_mb_per_1000"] is None


def _arm(slope: float, over: float, per_minute: float, lost: int = 0) -> dict[str, object]:
    return {
        "fit_tree": {"slope_mb_per_1000": slope},
        "peaks_tree": {"over_percent": over},
        "per_minute": per_minute,
        "lost": lost,
        "duplicated": 0,
    }


def test_the_acceptance_is_judged_as_the_issue_writes_it() -> None:
    verdict = memory_report.acceptance({"off": _arm(220, 25, 200), "on": _arm(5, 9.9, 191)})
    assert verdict == {
        "off_slope_at_most_20_mb_per_1000": False,
        "on_peak_within_10_percent": True,
        "on_nothing_lost_or_doubled": True,
        "throughput_on_over_off": 0.955,
        "on_throughput_within_5_percent": True,
    }
    slower = memory_report.acceptance({"off": _arm(20, 0, 200), "on": _arm(0, 10.1, 189, lost=1)})
    assert slower["off_slope_at_most_20_mb_per_1000"]
    assert not slower["on_peak_within_10_percent"]
    assert not slower["on_nothing_lost_or_doubled"]
    assert not slower["on_throughput_within_5_percent"]


def test_peaks_compare_the_first_minutes_with_the_rest() -> None:
    samples = [{"t": t, "tree_rss": rss} for t, rss in ((0, 100e6), (60, 200e6), (120, 210e6))]
    assert memory_report.peaks(samples, "tree_rss", 60) == {
        "baseline_max_mb": 200.0,
        "after_max_mb": 210.0,
        "over_percent": 5.0,
    }


def test_the_peak_outside_overlaps_leaves_out_the_samples_with_two_workers_up() -> None:
    samples = [{"wall": w, "tree_rss": rss} for w, rss in ((10, 1e9), (20, 2e9), (30, 1.05e9))]
    assert memory_report.outside(samples, [(15.0, 25.0)]) == [samples[0], samples[2]]
    on = {**_arm(0, 90, 200), "peaks_tree_outside_overlaps": {"over_percent": 5.0}}
    verdict = memory_report.acceptance({"on": on})
    assert not verdict["on_peak_within_10_percent"]
    assert verdict["on_peak_within_10_percent_outside_overlaps"]


def test_the_plot_is_a_png_with_both_arms(tmp_path: Path) -> None:
    from PIL import Image

    samples = [{"documents": n * 10, "tree_rss": (1000 + n) * 1e6} for n in range(20)]
    arms = {"off": {"samples": samples}, "on": {"samples": samples[:5]}}
    memory_report.plot(tmp_path / "plot.png", arms)
    with Image.open(tmp_path / "plot.png") as image:
        assert image.format == "PNG" and image.size == (memory_report.WIDTH, memory_report.HEIGHT)
        colours = {colour for _, colour in image.getcolors(1 << 20) or []}
    assert memory_report.COLOURS["off"] in colours and memory_report.COLOURS["on"] in colours


@pytest.mark.slow
def test_the_soak_documents_differ_and_carry_a_table_on_every_page() -> None:
    import pymupdf

    rng = random.Random(26)
    made = [memory_soak.document(rng, number) for number in range(20)]
    assert len(set(made)) == 20
    pages = []
    for data in made:
        with pymupdf.open(stream=data) as pdf:
            pages.append(pdf.page_count)
            assert all(len(page.get_drawings()) >= 9 for page in pdf)  # the table's cells
    assert 1 in pages and max(pages) > 1


def test_the_soak_reads_torchs_memory_after_each_job_in_the_order_the_jobs_ended() -> None:
    def sidecar(finished_at: str, allocated: int | None) -> dict[str, Any]:
        device = (
            None
            if allocated is None
            else {
                "memory_allocated_bytes": allocated,
                "memory_reserved_bytes": 2 * allocated,
            }
        )
        return {"execution": {"finished_at": finished_at, "device": device}}

    found = memory_soak._gpu(
        [sidecar("10:02", 1_030_000), sidecar("10:00", 1_000_000), sidecar("10:01", 1_005_000)]
    )
    assert found is not None
    assert found["allocated"] == [1_000_000, 1_005_000, 1_030_000]
    assert found["reserved"] == [2_000_000, 2_010_000, 2_060_000]
    assert found["largest_departure_percent"] == 3.0 and found["over_tolerance"] == 1
    assert found["reserved_max_bytes"] == 2_060_000
    assert memory_soak._gpu([sidecar("10:00", None)]) is None  # a CPU run: nothing to read


def test_each_arm_sets_the_recycling_the_command_line_asks_for() -> None:
    assert memory_soak.arm_engine("off", 25, True) == {
        "recycle_after_jobs": 0,
        "recycle_above_bytes": 0,
    }
    assert memory_soak.arm_engine("on", None, False) == {}  # the documented defaults
    assert memory_soak.arm_engine("on", 25, True) == {
        "recycle_after_jobs": 25,
        "recycle_overlap": True,
    }
