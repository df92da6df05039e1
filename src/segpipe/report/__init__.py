"""The run's report, drawn from its summary tables.

One module per part: :mod:`~segpipe.report.figures` (metric distributions, objects,
quality against runtime), :mod:`~segpipe.report.leaderboard` (the per-method table),
:mod:`~segpipe.report.overlays` (example images with outlines),
:mod:`~segpipe.report.page` (all of them packed into one self-contained HTML page) and
:mod:`~segpipe.report.terminal` (what a finished run prints), with the column names and
directions they share in :mod:`~segpipe.report.columns` and the PNG writer in
:mod:`~segpipe.report.drawing`.

The functions below are imported from their modules when first used, not with the
package: the end of every run prints :mod:`~segpipe.report.terminal`'s table, and
importing matplotlib and pandas for it would add most of a second to a small run.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name: its module.
_EXPORTS = {
    "label_of": "columns",
    "leaderboard_html": "leaderboard",
    "pick_examples": "overlays",
    "plot_metric_distributions": "figures",
    "plot_objects": "figures",
    "plot_overlays": "overlays",
    "plot_quality_runtime": "figures",
    "run_summary": "terminal",
    "write_report_page": "page",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
