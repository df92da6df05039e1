"""The leaderboard: the per-method table as an HTML page, one row per method by rank."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from typing import Any

import pandas as pd

from segpipe.imageio import write_bytes_atomic
from segpipe.report.columns import (
    HIGHER_IS_BETTER,
    LABELS,
    LOWER_IS_BETTER,
    has_values,
    method_column,
)
from segpipe.table import IMAGE_METRICS, METHOD_METRICS


def _sig3(value: float) -> str:
    """A number to 3 significant digits, trailing zeros kept, for a table cell.

    >>> _sig3(0.5), _sig3(12.345), _sig3(100.0), _sig3(1234.0), _sig3(float("nan"))
    ('0.500', '12.3', '100', '1.23e+03', '–')
    """
    if pd.isna(value):
        return "–"
    text = f"{float(value):#.3g}"
    return text if "e" in text else text.rstrip(".")


def _int_cell(value: float) -> str:
    """A count or rank for a table cell; ranks are a nullable integer column."""
    return "–" if pd.isna(value) else str(int(value))


# The page's style, also used by the packed report (segpipe.report.page).
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 1.5rem; color: #1d2733; }
h1 { font-size: 1.25rem; margin: 0 0 0.3rem; }
p.note { color: #5a6570; font-size: 0.85rem; margin: 0.3rem 0 0.9rem; max-width: 60rem; }
dl.note { color: #5a6570; font-size: 0.85rem; margin: 0.9rem 0; max-width: 60rem; }
dl.note dt { font-weight: 600; color: #1d2733; }
dl.note dd { margin: 0 0 0.4rem 1.2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.35rem 0.7rem; border-bottom: 1px solid #e1e5ea; }
th { background: #f3f5f8; text-align: left; font-weight: 600; white-space: nowrap;
     position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef3f9; }
th.primary { background: #ffe9a8; }
/* The method column stays in view when a wide table scrolls sideways. */
th.method, td.method { position: sticky; left: 0; background: #ffffff; z-index: 1; }
th.method { background: #f3f5f8; z-index: 2; }
tbody tr:nth-child(even) td.method { background: #fafbfc; }
td.primary { background: #fff6d6; font-weight: 600; }
tbody tr:nth-child(even) td.primary { background: #fff1c4; }
""".strip()

# What the two timing columns measure (segpipe.summary: segment_s_mean and
# seconds_per_image, means over the images segmented without error).
TIMING_NOTE = """<dl class="note">
<dt>Method s / image</dt>
<dd>The time the method itself took per image (<code>segment_s</code>): the segmentation
alone. For a batched method (Mask R-CNN) it is its batch's time divided by the images in
the batch.</dd>
<dt>Row s / image</dt>
<dd>The whole time spent on each image (<code>runtime_s</code>): reading and decoding it,
the method, writing its mask, and counting, measuring and scoring its labels. The gap
between the two columns is what segpipe adds around the method.</dd>
</dl>
<p class="note">Both are means over the images segmented without error.</p>"""


def _header(metric: str, stat: str = "") -> str:
    """A table header: the metric's name, the statistic, the better direction.

    >>> _header("vi_split", "mean"), _header("coco_ap")
    ('VI split mean ↓', 'COCO mask AP ↑')
    """
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑" if metric in HIGHER_IS_BETTER else ""
    return " ".join(w for w in (LABELS.get(metric, metric), stat, arrow) if w)


def _ranking_note(metric: str, *, ranked: bool, scored: bool) -> str:
    """The sentence above the table: how it is sorted, or why it is not ranked."""
    name = html.escape(LABELS.get(metric, metric))
    if ranked:
        return (f"Sorted by rank. Highlighted: {name}, the primary metric. "
                "↑ higher is better, ↓ lower is better; numbers to 3 significant digits; "
                "– no value: the metric does not apply to what the method's labels mean "
                "(foreground scores, object F1 and COCO AP need a foreground or instances; "
                "classes and regions have partition scores only), or no image was scored.")
    if scored:
        return (f"Not ranked: no method has a value of {name}, the primary metric (config "
                "key <code>primary_metric</code>); it does not apply to what these methods' "
                "labels mean. The ground-truth metrics that do apply are shown; methods are "
                "listed by name. Numbers to 3 significant digits; – no value.")
    return ("Not ranked: this run has no ground truth (no <code>ground_truth_dir</code> in "
            f"its config), so there is no quality metric, such as {name}, to rank the "
            "methods by. Methods are listed by name, with what every run measures: images "
            "segmented, errors and time. Numbers to 3 significant digits; – no value.")


def leaderboard_table(methods: pd.DataFrame, *, metric: str = "iou") -> str:
    """The leaderboard as an HTML fragment: one row per method, by ``rank``.

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table.
    metric : str
        The primary metric: its mean and median (or, for a COCO AP, its value) come
        first and are highlighted.

    Returns
    -------
    str
        A note on how the table is sorted (or why it is not ranked: no ground truth, or
        no value of ``metric``), the table, and what its two timing columns measure
        (:data:`TIMING_NOTE`); styled by :data:`STYLE`.

    Notes
    -----
    Columns: rank, method, kind, images ok, errors, seconds per image of the method alone
    (``segment_s``) and of the whole row (decoding, writing, measuring and scoring too),
    the primary metric, then the mean of each other per-image ground-truth metric and
    each COCO AP with values. Unranked methods are listed by name, without the rank
    column. Numbers have 3 significant digits; a dash marks a missing value. The method
    column stays in view when the table scrolls sideways.
    """
    ranked = has_values(methods, "rank")
    rows = (methods.sort_values("rank", na_position="last", kind="stable") if ranked
            else methods.sort_values("method", kind="stable"))
    # (column, header, how to format, is it the primary metric)
    fixed = [("rank", "Rank", _int_cell, False),
             ("method", "Method", str, False),
             ("kind", "Kind", str, False),
             ("n_ok", "Images ok", _int_cell, False),
             ("n_error", "Errors", _int_cell, False),
             ("segment_s_mean", "Method s / image", _sig3, False),
             ("seconds_per_image", "Row s / image", _sig3, False)]
    if metric in METHOD_METRICS:
        scores = [(metric, _header(metric), _sig3, True)]
    else:
        scores = [(f"{metric}_{stat}", _header(metric, stat), _sig3, True)
                  for stat in ("mean", "median")]
    scores += [(method_column(m), _header(m, "" if m in METHOD_METRICS else "mean"), _sig3,
                False) for m in IMAGE_METRICS + METHOD_METRICS if m != metric]
    scores = [s for s in scores if has_values(rows, s[0])]
    spec = [s for s in fixed if s[0] in rows.columns and (ranked or s[0] != "rank")] + scores

    def cell(tag: str, column: str, text: str, fmt: Callable[[Any], str],
             is_primary: bool) -> str:
        classes = " ".join(c for c in ("num" if fmt is not str else "",
                                       "method" if column == "method" else "",
                                       "primary" if is_primary else "") if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", c, header, fmt, p) for c, header, fmt, p in spec)
    body = "\n".join(
        "<tr>" + "".join(cell("td", c, fmt(row[c]), fmt, p) for c, _, fmt, p in spec)
        + "</tr>"
        for _, row in rows.iterrows()
    )
    note = _ranking_note(metric, ranked=ranked, scored=bool(scores))
    return f"""<p class="note">{note}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
{TIMING_NOTE}"""


def leaderboard_html(methods: pd.DataFrame, out_html: str | os.PathLike, *,
                     metric: str = "iou") -> None:
    """The leaderboard (:func:`leaderboard_table`) as a standalone HTML page.

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table.
    out_html : str or os.PathLike
        Where to write the page (inline CSS, no outside files).
    metric : str
        The primary metric.
    """
    page = html_document("segpipe leaderboard",
                         f"<h1>Leaderboard</h1>\n{leaderboard_table(methods, metric=metric)}")
    write_bytes_atomic(out_html, page.encode("utf-8"))


def html_document(title: str, body: str, *, style: str = STYLE) -> str:
    """A whole HTML page of ``body`` (markup) with its style inline."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
{style}
</style>
</head>
<body>
{body}
</body>
</html>
"""
