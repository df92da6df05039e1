"""The run's report, drawn from its summary tables.

One module per part: :mod:`~segpipe.report.figures` (metric distributions, objects,
quality against runtime), :mod:`~segpipe.report.leaderboard` (the per-method table),
:mod:`~segpipe.report.overlays` (example images with outlines), with the column names and
directions they share in :mod:`~segpipe.report.columns` and the PNG writer in
:mod:`~segpipe.report.drawing`.
"""

from segpipe.report.columns import label_of
from segpipe.report.figures import plot_metric_distributions, plot_objects, plot_quality_runtime
from segpipe.report.leaderboard import leaderboard_html
from segpipe.report.overlays import pick_examples, plot_overlays

__all__ = [
    "label_of",
    "leaderboard_html",
    "pick_examples",
    "plot_metric_distributions",
    "plot_objects",
    "plot_overlays",
    "plot_quality_runtime",
]
