"""What the report calls each column of the summary tables, and which way is better.

Shared by the figures, the leaderboard and the overlays, so a metric reads the same in
every part of the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segpipe.table import IMAGE_METRICS, METHOD_METRICS
from segpipe.table import LOWER_IS_BETTER as LOWER_IS_BETTER_METRICS

if TYPE_CHECKING:
    import pandas as pd

LABELS = {
    "iou": "IoU",
    "dice": "Dice",
    "precision": "Precision",
    "recall": "Recall",
    "boundary_f1": "Boundary F1",
    "ari": "Adjusted Rand index",
    "vi_split": "VI split",
    "vi_merge": "VI merge",
    "object_f1_50": "Object F1 @ IoU 0.5",
    "object_f1_mean": "Object F1, IoU-averaged",
    "coco_ap": "COCO mask AP",
    "coco_ap50": "COCO mask AP50",
    "coco_ap75": "COCO mask AP75",
    "runtime_s": "Runtime per image, s",
    "n_labels": "Labels per image",
    "n_objects": "Objects per image",
    "foreground_fraction": "Foreground fraction",
}

# Columns in neither set (label counts, foreground) have no better direction.
LOWER_IS_BETTER = LOWER_IS_BETTER_METRICS | {"runtime_s"}
HIGHER_IS_BETTER = frozenset(IMAGE_METRICS + METHOD_METRICS) - LOWER_IS_BETTER


def label_of(column: str) -> str:
    """A readable axis label for a metrics column, with the better direction.

    >>> label_of("vi_split"), label_of("n_labels")
    ('VI split (lower is better)', 'Labels per image')
    """
    name = LABELS.get(column, column)
    if column in HIGHER_IS_BETTER:
        return f"{name} (higher is better)"
    if column in LOWER_IS_BETTER:
        return f"{name} (lower is better)"
    return name


def has_values(table: pd.DataFrame, column: str) -> bool:
    """Whether ``table`` has ``column`` with at least one non-null value."""
    return column in table.columns and bool(table[column].notna().any())



def method_column(metric: str) -> str:
    """The column of the per-method table that holds ``metric``: its mean, or itself
    for a whole-method score (COCO AP).

    >>> method_column("iou"), method_column("coco_ap")
    ('iou_mean', 'coco_ap')
    """
    return metric if metric in METHOD_METRICS else f"{metric}_mean"


def sort_best_first(values: pd.Series, column: str) -> pd.Series:
    """``values`` (a Series) sorted best first; no better direction means largest first."""
    return values.sort_values(ascending=column in LOWER_IS_BETTER, na_position="last",
                              kind="stable")

