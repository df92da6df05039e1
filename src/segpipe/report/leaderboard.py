"""The leaderboard: the per-method table as an HTML page, one row per method by rank."""

from __future__ import annotations

import html

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


def _sig3(value):
    """A number to 3 significant digits, trailing zeros kept, for a table cell.

    >>> _sig3(0.5), _sig3(12.345), _sig3(100.0), _sig3(1234.0), _sig3(float("nan"))
    ('0.500', '12.3', '100', '1.23e+03', '–')
    """
    if pd.isna(value):
        return "–"
    text = f"{float(value):#.3g}"
    return text if "e" in text else text.rstrip(".")


def _int_cell(value):
    """A count or rank for a table cell; ranks are a nullable integer column."""
    return "–" if pd.isna(value) else str(int(value))


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 1.5rem; color: #1d2733; }
h1 { font-size: 1.25rem; margin: 0 0 0.3rem; }
p.note { color: #5a6570; font-size: 0.85rem; margin: 0.3rem 0 0.9rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.35rem 0.7rem; border-bottom: 1px solid #e1e5ea; }
th { background: #f3f5f8; text-align: left; font-weight: 600; white-space: nowrap;
     position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef3f9; }
th.primary { background: #ffe9a8; }
/* The method column stays in view when a wide table scrolls sideways. */
th:nth-child(2), td:nth-child(2) { position: sticky; left: 0; background: #ffffff; z-index: 1; }
th:nth-child(2) { background: #f3f5f8; z-index: 2; }
tbody tr:nth-child(even) td:nth-child(2) { background: #fafbfc; }
td.primary { background: #fff6d6; font-weight: 600; }
tbody tr:nth-child(even) td.primary { background: #fff1c4; }
""".strip()


def _header(metric, stat=""):
    """A table header: the metric's name, the statistic, the better direction.

    >>> _header("vi_split", "mean"), _header("coco_ap")
    ('VI split mean ↓', 'COCO mask AP ↑')
    """
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑" if metric in HIGHER_IS_BETTER else ""
    return " ".join(w for w in (LABELS.get(metric, metric), stat, arrow) if w)


def leaderboard_html(methods, out_html, *, metric="iou"):
    """The leaderboard as a standalone HTML page: one row per method, by ``rank``.

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table.
    out_html : str or os.PathLike
        Where to write the page (inline CSS, no outside files).
    metric : str
        The primary metric: its mean and median (or, for a COCO AP, its value) come
        first and are highlighted.

    Notes
    -----
    Columns: rank, method, kind, images ok, errors, seconds per image of the method alone
    (``segment_s``) and of the whole row (decoding, writing, measuring and scoring too),
    the primary metric, then the mean of each other per-image ground-truth metric and
    each COCO AP with values. Numbers have 3 significant digits; a dash marks a missing
    value. The method column stays in view when the table scrolls sideways.
    """
    rows = methods.sort_values("rank", na_position="last", kind="stable")
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
    spec = ([s for s in fixed if s[0] in rows.columns]
            + [s for s in scores if has_values(rows, s[0])])
    primary = any(is_primary for *_, is_primary in spec)

    def cell(tag, text, fmt, is_primary):
        classes = " ".join(c for c in ("num" if fmt is not str else "",
                                       "primary" if is_primary else "") if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", header, fmt, p) for _, header, fmt, p in spec)
    body = "\n".join(
        "<tr>" + "".join(cell("td", fmt(row[c]), fmt, p) for c, _, fmt, p in spec)
        + "</tr>"
        for _, row in rows.iterrows()
    )
    name = LABELS.get(metric, metric)
    if primary:
        note = (f"Sorted by rank. Highlighted: {html.escape(name)}, the primary metric. "
                "↑ higher is better, ↓ lower is better; numbers to 3 significant digits; "
                "– no value: the metric does not apply to what the method's labels mean "
                "(foreground scores, object F1 and COCO AP need a foreground or instances; "
                "classes and regions have partition scores only), or no image was scored.")
    else:
        note = (f"No ground truth: there is no {html.escape(name)} to compare methods by. "
                "Sorted by rank; numbers to 3 significant digits; – no value.")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>segpipe leaderboard</title>
<style>
{_CSS}
</style>
</head>
<body>
<h1>Leaderboard</h1>
<p class="note">{note}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
    write_bytes_atomic(out_html, page.encode("utf-8"))
