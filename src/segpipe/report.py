"""Figures and the leaderboard table of the run's report, drawn from the summary tables.

Every function here reads the per-image table (``metrics``: one row per image and
method) or the per-method table (``methods``), draws one file, and writes it atomically
(see :func:`segpipe.imageio.write_bytes_atomic`). Ground-truth metrics may be missing:
each figure then falls back to what every run has (runtime, label counts), so the report
never shows an empty figure.

Matplotlib's :class:`~matplotlib.figure.Figure` is used directly, never ``pyplot``: there
is no global figure registry to leak figures into and no backend to select, so the same
code runs headless, in parallel jobs, and without a display.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from segpipe.errors import ImageReadError
from segpipe.imageio import intensity_max, read_image, read_label_image, write_bytes_atomic

# The ground-truth metrics, in the order the figures and the table show them.
GT_METRICS = ("iou", "dice", "precision", "recall", "boundary_f1", "ari",
              "vi_split", "vi_merge", "object_f1_50", "object_f1_mean")

# Shown when the run has no ground truth: every run has these.
FALLBACK_COLUMNS = ("runtime_s", "n_labels", "foreground_fraction")

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
    "object_f1_mean": "Object F1 (mean)",
    "runtime_s": "Runtime per image (s)",
    "n_labels": "Labels per image",
    "foreground_fraction": "Foreground fraction",
}

# Variation of information counts bits lost or invented: less is better. Columns in
# neither set (label counts, foreground) have no better direction.
LOWER_IS_BETTER = frozenset({"vi_split", "vi_merge", "runtime_s"})
HIGHER_IS_BETTER = frozenset(GT_METRICS) - LOWER_IS_BETTER

# Metrics on a 0..1 scale share that axis range, so panels compare at a glance.
UNIT_RANGE = frozenset({"iou", "dice", "precision", "recall", "boundary_f1",
                        "object_f1_50", "object_f1_mean", "foreground_fraction"})

DPI = 100
BOX_COLOUR = "#c6d8ee"
POINT_COLOUR = "#1f3b5c"
MEDIAN_COLOUR = "#d95f02"
OUTLINE_RGB = (1.0, 0.85, 0.0)
# One overlay panel, in inches; images are shrunk to at most this many pixels a side
# so that matplotlib shows them without resampling and the PNG stays well under 1 MB.
PANEL_IN = 3.6
PANEL_PX = int(PANEL_IN * DPI) - 20


def label_of(column):
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


def has_values(table, column):
    """Whether ``table`` has ``column`` with at least one non-null value."""
    return column in table.columns and bool(table[column].notna().any())


def _save(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_bytes_atomic(path, buffer.getvalue())


def _sort_best_first(values, column):
    """``values`` (a Series) sorted best first; no better direction means largest first."""
    return values.sort_values(ascending=column in LOWER_IS_BETTER, na_position="last",
                              kind="stable")


def plot_metric_distributions(metrics, out_png, *, metrics_to_plot=None):
    """One panel per metric: each method's per-image values as a box with the points.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; only rows with ``status == "ok"`` are drawn.
    out_png : str or os.PathLike
        Where to write the figure.
    metrics_to_plot : sequence of str, optional
        Columns to draw, default :data:`GT_METRICS`. Columns without any value are left
        out; if none is left, :data:`FALLBACK_COLUMNS` are drawn instead.

    Notes
    -----
    Methods are rows, best at the top by the median of the first panel's column, so long
    method names stay horizontal and readable. The whiskers reach 1.5 IQR; every image
    is drawn as a point, jittered vertically, so no outlier is hidden.
    """
    ok = metrics[metrics["status"] == "ok"]
    wanted = GT_METRICS if metrics_to_plot is None else tuple(metrics_to_plot)
    columns = [c for c in wanted if has_values(ok, c)]
    fallback = not columns
    if fallback:
        columns = [c for c in FALLBACK_COLUMNS if has_values(ok, c)]
    methods = sorted(metrics["method"].unique())
    if not columns:
        _save(_message_figure("No successful segmentations: nothing to plot."), out_png)
        return
    medians = ok.groupby("method")[columns[0]].median().reindex(methods)
    order = list(_sort_best_first(medians, columns[0]).index)

    ncols = min(len(columns), 4)
    nrows = -(-len(columns) // ncols)
    row_height = 0.9 + 0.26 * len(order)
    name_width = 0.2 + 0.075 * max(len(m) for m in order)
    fig = Figure(figsize=(name_width + 3.3 * ncols, 0.5 + row_height * nrows),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    # Best at the top: the first method gets the highest position.
    positions = np.arange(len(order), 0, -1)
    rng = np.random.default_rng(0)  # a fixed jitter: the same data draws the same figure
    groups = ok.groupby("method")
    for ax, column in zip(axes, columns):
        data, places = [], []
        for method, y in zip(order, positions):
            if method in groups.groups:
                values = groups.get_group(method)[column].dropna().to_numpy(float)
                if values.size:
                    data.append(values)
                    places.append(y)
        ax.boxplot(data, positions=places, orientation="horizontal", widths=0.6,
                   showfliers=False, patch_artist=True,
                   boxprops={"facecolor": BOX_COLOUR, "edgecolor": "#5b6f86"},
                   medianprops={"color": MEDIAN_COLOUR, "linewidth": 2})
        xs = np.concatenate(data)
        ys = np.repeat(places, [len(d) for d in data]) + rng.uniform(-0.2, 0.2, xs.size)
        alpha = 0.6 if xs.size / len(data) < 50 else 0.25
        ax.scatter(xs, ys, s=7, color=POINT_COLOUR, alpha=alpha, linewidths=0, zorder=3)
        ax.set_title(label_of(column), fontsize=10)
        ax.grid(axis="x", color="#e3e3e3", linewidth=0.8)
        ax.set_axisbelow(True)
        if column in UNIT_RANGE and xs.min() >= 0 and xs.max() <= 1:
            ax.set_xlim(-0.03, 1.03)
        if column == "runtime_s" and xs.min() > 0:
            ax.set_xscale("log")
    for ax in axes[len(columns):]:
        ax.remove()
    axes[0].set_yticks(positions, order, fontsize=9)
    axes[0].set_ylim(0.4, len(order) + 0.6)
    n_images = ok["image_id"].nunique()
    if fallback:
        title = f"No ground truth: runtime and label statistics ({n_images} images)"
    else:
        title = (f"Per-image scores, {n_images} images; methods ordered by median "
                 f"{LABELS.get(columns[0], columns[0])}")
    fig.suptitle(title, fontsize=11)
    _save(fig, out_png)


def _message_figure(text):
    fig = Figure(figsize=(6, 1.5))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    return fig


def plot_quality_runtime(methods, out_png, *, metric="iou"):
    """Each method's mean ``metric`` against its seconds per image (log scale).

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table, with ``method``, ``kind``, ``n_error``,
        ``seconds_per_image`` and ``<metric>_mean``.
    out_png : str or os.PathLike
        Where to write the figure.
    metric : str
        The ground-truth metric on the y axis.

    Notes
    -----
    Without values of ``<metric>_mean`` the figure is a bar chart of seconds per image,
    fastest first, and its title says there is no ground truth.
    """
    column = f"{metric}_mean"
    if not has_values(methods, column):
        _save(_runtime_bars(methods, metric), out_png)
        return
    shown = methods[methods[column].notna() & (methods["seconds_per_image"] > 0)]
    left_out = sorted(set(methods["method"]) - set(shown["method"]))
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    kinds = sorted(shown["kind"].unique())
    colours = {kind: f"C{i % 10}" for i, kind in enumerate(kinds)}
    for kind in kinds:
        mine = shown[shown["kind"] == kind]
        ax.scatter(mine["seconds_per_image"], mine[column], s=45, color=colours[kind],
                   label=kind, edgecolors="white", linewidths=0.8, zorder=3)
    for row in shown.itertuples():
        ax.annotate(_with_errors(row.method, row.n_error),
                    (row.seconds_per_image, getattr(row, column)),
                    xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("Seconds per image (log scale, left is faster)")
    ax.set_ylabel(f"Mean {label_of(metric)}")
    ax.grid(color="#e3e3e3", linewidth=0.8, which="both")
    ax.set_axisbelow(True)
    if kinds:
        ax.legend(title="kind", fontsize=8, title_fontsize=8, loc="best")
    # Labels sit up and right of their point: leave room for them inside the axes.
    ax.margins(x=0.15, y=0.1)
    ax.set_title(f"Quality against speed: mean {LABELS.get(metric, metric)} per method",
                 fontsize=11)
    if left_out:
        fig.text(0.01, 0.005, f"Not shown (no {LABELS.get(metric, metric)} or runtime): "
                 + ", ".join(left_out), fontsize=8, color="#555555")
    _save(fig, out_png)


def _with_errors(method, n_error):
    """A method's name, with its error count when it has errors."""
    return f"{method} ({int(n_error)} errors)" if n_error and n_error > 0 else method


def _runtime_bars(methods, metric):
    """Seconds per image per method as horizontal bars, fastest at the top."""
    rows = methods.sort_values("seconds_per_image", na_position="last", kind="stable")
    names = [_with_errors(m, e) for m, e in zip(rows["method"], rows["n_error"])]
    seconds = rows["seconds_per_image"].to_numpy(float)
    fig = Figure(figsize=(7.5, 1.2 + 0.3 * len(rows)), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(rows), 0, -1)
    timed = np.isfinite(seconds)
    ax.barh(positions[timed], seconds[timed], height=0.6, color=BOX_COLOUR,
            edgecolor="#5b6f86")
    for y, value in zip(positions[timed], seconds[timed]):
        ax.annotate(f"{value:.3g} s", (value, y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    for y in positions[~timed]:
        ax.text(0.01, y, "no runtime", transform=ax.get_yaxis_transform(), va="center",
                fontsize=8, color="#555555")
    ax.set_yticks(positions, names, fontsize=9)
    # Runtimes of the methods span orders of magnitude (a threshold against a CNN).
    if timed.any() and seconds[timed].min() > 0:
        ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.set_xlabel("Seconds per image" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_title(f"Runtime per method: no ground truth (no {LABELS.get(metric, metric)})",
                 fontsize=11)
    return fig


def _sig3(value):
    """A number to 3 significant digits, trailing zeros kept, for a table cell.

    >>> _sig3(0.5), _sig3(12.345), _sig3(100.0), _sig3(1234.0), _sig3(float("nan"))
    ('0.500', '12.3', '100', '1.23e+03', '–')
    """
    if value is None or np.isnan(value):
        return "–"
    text = f"{value:#.3g}"
    return text if "e" in text else text.rstrip(".")


def _int_cell(value):
    return "–" if value is None or np.isnan(value) else str(int(value))


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
td.primary { background: #fff6d6; font-weight: 600; }
tbody tr:nth-child(even) td.primary { background: #fff1c4; }
""".strip()


def leaderboard_html(methods, out_html, *, metric="iou"):
    """The leaderboard as a standalone HTML page: one row per method, by ``rank``.

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table.
    out_html : str or os.PathLike
        Where to write the page (inline CSS, no outside files).
    metric : str
        The primary metric: its mean and median columns come first and are highlighted.

    Notes
    -----
    Columns: rank, method, kind, images ok, errors, seconds per image, the primary
    metric's mean and median, then the mean of each other ground-truth metric with
    values. Numbers have 3 significant digits; a dash marks a missing value.
    """
    rows = methods.sort_values("rank", na_position="last", kind="stable")
    primary = [c for c in (f"{metric}_mean", f"{metric}_median") if has_values(rows, c)]
    others = [f"{m}_mean" for m in GT_METRICS
              if m != metric and has_values(rows, f"{m}_mean")]
    # (column, header, how to format, is it the primary metric)
    spec = [("rank", "Rank", _int_cell, False),
            ("method", "Method", str, False),
            ("kind", "Kind", str, False),
            ("n_ok", "Images ok", _int_cell, False),
            ("n_error", "Errors", _int_cell, False),
            ("seconds_per_image", "s / image", _sig3, False)]
    for column in primary + others:
        base, _, stat = column.rpartition("_")
        arrow = "↓" if base in LOWER_IS_BETTER else "↑" if base in HIGHER_IS_BETTER else ""
        header = f"{LABELS.get(base, base)} {stat} {arrow}".strip()
        spec.append((column, header, _sig3, column in primary))
    spec = [s for s in spec if s[0] in rows.columns]

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
                "– no value.")
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


def _ranked(metrics, method, metric):
    """The method's ok rows, best first, and the column that ordered them.

    Ordered by ``metric``; without it by ``n_labels`` (most first); without either by
    image id, and the column is then None. Rows without a value of the column are left
    out; ties keep image id order.
    """
    rows = metrics[(metrics["method"] == method) & (metrics["status"] == "ok")]
    rows = rows.sort_values("image_id", kind="stable")
    for column in (metric, "n_labels"):
        if has_values(rows, column):
            rows = rows[rows[column].notna()]
            return rows.loc[_sort_best_first(rows[column], column).index], column
    return rows, None


def _spread(count, n):
    """Positions of ``n`` examples spread evenly over ``count`` ranked rows, ends included.

    >>> _spread(7, 3), _spread(2, 3), _spread(0, 3)
    ([0, 3, 6], [0, 1], [])
    """
    if count == 0 or n <= 0:
        return []
    return sorted({int(p) for p in np.round(np.linspace(0, count - 1, n))})


def pick_examples(metrics, method, metric="iou", n=3):
    """Image ids of one method's examples: best, median and worst by ``metric``.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; only the method's rows with ``status == "ok"`` count.
    method : str
        The method.
    metric : str
        The column to rank by. Higher is better unless it is in :data:`LOWER_IS_BETTER`.
        Without values of it, images are ranked by ``n_labels`` (most first), and
        without that by image id.
    n : int
        How many examples, spread evenly from best to worst (3: best, median, worst).
        Fewer come back when the method has fewer ok images.

    Returns
    -------
    list of str
        Image ids, best first.
    """
    rows, _ = _ranked(metrics, method, metric)
    return [rows["image_id"].iloc[p] for p in _spread(len(rows), n)]


def plot_overlays(metrics, out_png, *, input_dir, method, metric="iou", n=3):
    """Example images of one method with its mask outlines drawn on top.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; ``mask_path`` is relative to the working directory.
    out_png : str or os.PathLike
        Where to write the figure.
    input_dir : str or os.PathLike
        The input folder; an image is ``input_dir / image_id``.
    method : str
        The method to show.
    metric : str
        The column to rank images by, see :func:`pick_examples`.
    n : int
        How many examples (panels), best first.

    Raises
    ------
    ValueError
        If ``metrics`` has no row of ``method``.

    Notes
    -----
    Images are scaled from their full 8- or 16-bit range to 0..1 and shrunk to at most
    about 340 pixels a side; the outlines are found on the shrunk mask so they stay one
    pixel wide and visible. An image or mask that cannot be read gets a panel saying why,
    so one missing file does not stop the report.
    """
    if not (metrics["method"] == method).any():
        known = ", ".join(sorted(metrics["method"].unique()))
        raise ValueError(f"no rows of method {method!r} (methods: {known})")
    rows, column = _ranked(metrics, method, metric)
    picks = _spread(len(rows), n)
    if not picks:
        _save(_message_figure(f"{method}: no successful images to show."), out_png)
        return
    fig = Figure(figsize=(PANEL_IN * len(picks), PANEL_IN + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(picks)))
    for ax, position in zip(axes, picks):
        row = rows.iloc[position]
        ax.set_axis_off()
        try:
            ax.imshow(_overlay(Path(input_dir) / row["image_id"], row["mask_path"]),
                      interpolation="nearest")
        except ImageReadError as err:
            ax.text(0.5, 0.5, str(err), ha="center", va="center", wrap=True, fontsize=8,
                    transform=ax.transAxes)
        where = f"{position + 1} of {len(rows)}"
        if column is None:
            detail = f"image {where}"
        else:
            value = row[column]
            detail = f"{LABELS.get(column, column)} = {value:.3g}  ({where})"
        ax.set_title(f"{_shorten(row['image_id'], 42)}\n{detail}", fontsize=9)
    fig.suptitle(_overlay_title(method, metric, column, len(picks)), fontsize=11)
    _save(fig, out_png)


def _overlay_title(method, metric, column, count):
    """What the overlay panels are, in the order they are shown.

    >>> _overlay_title("otsu", "iou", "iou", 3)
    'otsu: best, median and worst images by IoU'
    >>> _overlay_title("otsu", "iou", None, 5)
    'otsu: 5 images spread over the image ids (no ground truth)'
    """
    name = LABELS.get(metric, metric)
    if count == 3:
        what = {metric: f"best, median and worst images by {name}",
                "n_labels": "images with the most, median and fewest labels (no ground truth)",
                None: "first, middle and last images (no ground truth)"}
    else:
        what = {metric: f"{count} images from best to worst by {name}",
                "n_labels": f"{count} images from most to fewest labels (no ground truth)",
                None: f"{count} images spread over the image ids (no ground truth)"}
    return f"{method}: {what[column]}"


def _overlay(image_path, mask_path):
    """The image as RGB floats in 0..1, shrunk for display, with mask outlines drawn."""
    image = read_image(image_path, mode="rgb")
    labels = read_label_image(mask_path)
    rgb = image.astype(np.float32) / intensity_max(image.dtype)
    height, width = rgb.shape[:2]
    scale = min(1.0, PANEL_PX / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if labels.shape != rgb.shape[:2]:
        # Nearest keeps labels whole: averaging two labels would invent a third.
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
    return rgb


def _shorten(text, width):
    """``text`` cut from the left to ``width`` characters: the file name end matters most.

    >>> _shorten("plate1/well 2/c.png", 12)
    '…ell 2/c.png'
    """
    return text if len(text) <= width else "…" + text[-(width - 1):]
