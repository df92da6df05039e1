"""The report in the terminal: what a finished run prints, that is where its results are,
a short table of its methods and the commands to go on with.

Read with pyarrow alone, without pandas or matplotlib: this is the last thing every run
does, and importing those would add most of a second to a small run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segpipe.report.columns import LABELS, method_column

# Columns of summary/methods.parquet the table shows, beside the primary metric's.
SHOWN = ("rank", "method", "kind", "n_ok", "n_error", "seconds_per_image")


def read_methods(path: str | os.PathLike, *, metric: str = "iou") -> list[dict[str, Any]]:
    """The rows of ``summary/methods.parquet`` that :func:`methods_table` shows, as dicts
    in the table's order (by rank when ranked)."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    wanted = [c for c in (*SHOWN, method_column(metric)) if c in names]
    return pq.read_table(path, columns=wanted).to_pylist()


def _number(value: float | None) -> str:
    """Seconds or a score to 3 significant digits, or a dash for none.

    >>> _number(0.0021347), _number(12.0), _number(None), _number(float("nan"))
    ('0.00213', '12.0', '–', '–')
    """
    if value is None or math.isnan(value):
        return "–"
    text = f"{value:#.3g}"
    return text if "e" in text else text.rstrip(".")


def methods_table(rows: Sequence[Mapping[str, Any]], *, metric: str = "iou") -> list[str]:
    """The methods of a run as a plain-text table, one line per method.

    Parameters
    ----------
    rows : list of dict
        Rows of ``summary/methods.parquet`` (:func:`read_methods`), in its order.
    metric : str
        The primary metric; its column (mean, or COCO AP) is shown when a method has a
        value of it, and the rank column when a method has a rank.

    Returns
    -------
    list of str
        A header line, then one line per method: rank (when ranked), method, kind, images
        ok, errors, seconds per image (the whole row: decoding, the method, writing and
        measuring) and the primary metric.

    Examples
    --------
    >>> rows = [{"method": "otsu", "kind": "threshold", "n_ok": 7, "n_error": 1,
    ...          "seconds_per_image": 0.0021347, "rank": None}]
    >>> print("\\n".join(methods_table(rows)))
    method  kind       ok  errors  s / image
    otsu    threshold   7       1    0.00213
    """
    score = method_column(metric)
    # (header, the row's cell, aligned left)
    columns = [
        ("method", lambda r: r["method"], True),
        ("kind", lambda r: r.get("kind") or "", True),
        ("ok", lambda r: f"{r.get('n_ok') or 0:,}", False),
        ("errors", lambda r: f"{r.get('n_error') or 0:,}", False),
        ("s / image", lambda r: _number(r.get("seconds_per_image")), False),
    ]
    if any(r.get("rank") is not None for r in rows):
        columns.insert(0, ("rank", lambda r: "–" if r.get("rank") is None else str(r["rank"]),
                           False))
    if any(_number(r.get(score)) != "–" for r in rows):
        name = LABELS.get(metric, metric) + ("" if score == metric else " mean")
        columns.append((name, lambda r: _number(r.get(score)), False))
    cells = [[header for header, _, _ in columns]]
    cells += [[cell(r) for _, cell, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  ".join(text.ljust(w) if left else text.rjust(w)
                      for text, w, (_, _, left) in zip(line, widths, columns)).rstrip()
            for line in cells]


def run_summary(out: str | os.PathLike, results: str | os.PathLike, *, metric: str = "iou",
                report_page: str | os.PathLike | None = None) -> str:
    """What a run prints when it has finished: where its results are, its methods
    (:func:`methods_table`) and the next commands.

    Parameters
    ----------
    out : str or os.PathLike
        The run's folder (``segpipe run --out``).
    results : str or os.PathLike
        Its out_dir, which holds ``summary/methods.parquet``.
    metric : str
        The primary metric.
    report_page : str or os.PathLike, optional
        The packed report, when the run drew it.

    Returns
    -------
    str
        Lines for the terminal. Without ``summary/methods.parquet`` (a run of other
        targets) the table is left out.
    """
    out, results = Path(out), Path(results)
    table = results / "summary/methods.parquet"
    lines = [f"segpipe: results in {results}"]
    if table.is_file():
        rows = read_methods(table, metric=metric)
        lines.append(f"  summary/methods.parquet: one row per method ({len(rows)}); "
                     "summary/metrics.parquet: one row per image and method")
        lines += ["", *("  " + line for line in methods_table(rows, metric=metric)), ""]
    if report_page is not None:
        lines.append(f"report: {report_page}")
    lines.append("next:")
    if report_page is None:
        lines.append(f"  segpipe report {out}   # figures, leaderboard, examples: report.html")
    lines += [f"  segpipe status {out}   # images done and failed per method",
              f"  segpipe clean {out}    # remove the results, keep the config"]
    return "\n".join(lines)
