"""The numbers and the picture of tools/memory_soak.py: a least-squares slope of resident memory
against documents converted with its 95 % confidence interval, the acceptance of issue 26 (a
slope of at most 20 MB per 1,000 documents with recycling off; or with recycling on, a peak never
10 % over the first minutes' peak, nothing lost or doubled, and throughput within 5 % of
recycling off), and a PNG plot drawn with Pillow (matplotlib is not a dependency). An
overlapped recycle holds two workers for a while on purpose (the replacement loads beside the
old one), so the peak is also judged without the samples taken during those overlaps.

The interval assumes independent residuals; samples 15 s apart are not (the allocator's state
carries over), so read it as a lower bound on the uncertainty, not a guarantee.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

MB = 1_000_000
SLOPE_LIMIT_MB = 20.0  # per 1,000 documents, recycling off
PEAK_MARGIN = 0.10  # recycling on: never above the first minutes' peak by more
THROUGHPUT_MARGIN = 0.05  # recycling on against off


def t95(df: int) -> float:
    """Student's t two-sided 95 % quantile (Cornish-Fisher expansion around the normal one:
    0.023 under the table at 3 degrees of freedom, within 0.004 from 5 up)."""
    if df < 1:
        return math.inf
    z = 1.959963985
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def fit(xs: list[float], ys: list[float]) -> dict[str, Any]:
    """Least squares ``y = a + b x``: b per 1,000 x in MB, with its 95 % interval."""
    n = len(xs)
    if n < 3 or len(set(xs)) < 2:
        return {"n": n, "slope_mb_per_1000": None, "ci95_mb_per_1000": None}
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    residual = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(residual / (n - 2) / sxx)
    half = t95(n - 2) * se
    per = 1000 / MB
    return {
        "n": n,
        "slope_mb_per_1000": round(b * per, 2),
        "ci95_mb_per_1000": [round((b - half) * per, 2), round((b + half) * per, 2)],
        "intercept_mb": round(a / MB, 1),
        "residual_sd_mb": round(math.sqrt(residual / (n - 2)) / MB, 1),
    }


def peaks(samples: list[dict[str, Any]], key: str, baseline_seconds: float) -> dict[str, Any]:
    """The peak of ``key`` in the first ``baseline_seconds`` and after, and how far over."""
    first = [s[key] for s in samples if s["t"] <= baseline_seconds]
    later = [s[key] for s in samples if s["t"] > baseline_seconds]
    if not first or not later:
        return {"baseline_max_mb": None, "after_max_mb": None, "over_percent": None}
    before, after = max(first), max(later)
    return {
        "baseline_max_mb": round(before / MB, 1),
        "after_max_mb": round(after / MB, 1),
        "over_percent": round(100 * (after - before) / before, 2),
    }


def outside(
    samples: list[dict[str, Any]], windows: list[tuple[float, float]]
) -> list[dict[str, Any]]:
    """The samples taken (``wall``, seconds since the epoch) outside every window: outside the
    overlaps of a recycle, when the old worker and its replacement were both up on purpose."""
    return [s for s in samples if not any(a <= s["wall"] <= b for a, b in windows)]


def acceptance(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 26's two ways to pass, each judged on what the run measured."""
    verdict: dict[str, Any] = {}
    off, on = arms.get("off"), arms.get("on")
    if off is not None:
        slope = off["fit_tree"]["slope_mb_per_1000"]
        verdict["off_slope_at_most_20_mb_per_1000"] = slope is not None and slope <= SLOPE_LIMIT_MB
    if on is not None:
        over = on["peaks_tree"]["over_percent"]
        verdict["on_peak_within_10_percent"] = over is not None and over <= 100 * PEAK_MARGIN
        if "peaks_tree_outside_overlaps" in on:  # two workers for a while, by design
            apart = on["peaks_tree_outside_overlaps"]["over_percent"]
            verdict["on_peak_within_10_percent_outside_overlaps"] = (
                apart is not None and apart <= 100 * PEAK_MARGIN
            )
        verdict["on_nothing_lost_or_doubled"] = on["lost"] == 0 and on["duplicated"] == 0
    if off is not None and on is not None and off["per_minute"]:
        ratio = on["per_minute"] / off["per_minute"]
        verdict["throughput_on_over_off"] = round(ratio, 4)
        verdict["on_throughput_within_5_percent"] = ratio >= 1 - THROUGHPUT_MARGIN
    return verdict


# -- the picture ---------------------------------------------------------------------------------

COLOURS = {"off": (200, 40, 40), "on": (30, 90, 200)}
WIDTH, HEIGHT, MARGIN = 1000, 600, 70


def plot(path: Path, arms: dict[str, dict[str, Any]], key: str = "tree_rss") -> None:
    """Resident memory (MB) against documents converted, one line per arm."""
    from PIL import Image, ImageDraw

    series = {
        name: [(s["documents"], s[key] / MB) for s in arm["samples"]] for name, arm in arms.items()
    }
    points = [p for line in series.values() for p in line]
    if not points:
        return
    x_max = max(1.0, max(x for x, _ in points))
    y_low, y_high = min(y for _, y in points), max(y for _, y in points)
    span = max(1.0, y_high - y_low)
    y_low, y_high = max(0.0, y_low - 0.1 * span), y_high + 0.1 * span
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            MARGIN + (WIDTH - 2 * MARGIN) * x / x_max,
            HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (y - y_low) / (y_high - y_low),
        )

    _axes(draw, x_max, y_low, y_high, at)
    for number, (name, line) in enumerate(series.items()):
        colour = COLOURS.get(name, (60, 60, 60))
        if len(line) > 1:
            draw.line([at(x, y) for x, y in line], fill=colour, width=2)
        for x, y in line:
            cx, cy = at(x, y)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)
        draw.text((WIDTH - 260, 20 + 16 * number), f"recycling {name}", fill=colour)
    draw.text((MARGIN, 20), f"{key.replace('_', ' ')} (MB) against documents converted", "black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")


def _axes(draw: Any, x_max: float, y_low: float, y_high: float, at: Any) -> None:
    draw.line([at(0, y_low), at(x_max, y_low)], fill="black")
    draw.line([at(0, y_low), at(0, y_high)], fill="black")
    for step in range(6):
        x = x_max * step / 5
        px, py = at(x, y_low)
        draw.line([(px, py), (px, py + 5)], fill="black")
        draw.text((px - 15, py + 8), f"{x:.0f}", fill="black")
        y = y_low + (y_high - y_low) * step / 5
        qx, qy = at(0, y)
        draw.line([(qx - 5, qy), (qx, qy)], fill="black")
        draw.text((qx - 60, qy - 6), f"{y:.0f}", fill="black")
