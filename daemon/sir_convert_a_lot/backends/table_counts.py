"""A job's tables, as the sidecar's ``execution.tables`` and the metrics report them.

Light on purpose (no torch, no docling): the daemon reads these from the worker's answers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableCounts:
    """``predicted``: tables docling's table model predicted for the job. ``fast``: how many of
    them the fast TableFormer prediction (``backends.tableformer_fast``) predicted. ``checked``:
    how many of those docling-ibm-models' own code predicted too, to compare
    (``gpu.table_check_every``). ``mismatched``: how many of the checked differed; such a table
    gets docling's own prediction, and the fast path is off from then on.
    So ``predicted >= fast >= checked >= mismatched``; ``predicted - fast`` tables were predicted
    by docling's code alone (the fast path was off)."""

    predicted: int = 0
    fast: int = 0
    checked: int = 0
    mismatched: int = 0

    def __add__(self, other: TableCounts) -> TableCounts:
        return TableCounts(
            self.predicted + other.predicted,
            self.fast + other.fast,
            self.checked + other.checked,
            self.mismatched + other.mismatched,
        )

    def __sub__(self, other: TableCounts) -> TableCounts:
        return TableCounts(
            self.predicted - other.predicted,
            self.fast - other.fast,
            self.checked - other.checked,
            self.mismatched - other.mismatched,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "predicted": self.predicted,
            "fast": self.fast,
            "checked": self.checked,
            "mismatched": self.mismatched,
        }
