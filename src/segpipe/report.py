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
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cbook import boxplot_stats
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter
from skimage.segmentation import find_boundaries

from segpipe.errors import ImageReadError
from segpipe.imageio import intensity_max, read_image, read_label_image, write_bytes_atomic
from segpipe.planes import DEFAULT_READING, for_plane, split_plane
from segpipe.table import IMAGE_METRICS, METHOD_METRICS
from segpipe.table import LOWER_IS_BETTER as LOWER_IS_BETTER_METRICS

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
    "object_f1_mean": "Object F1, IoU-averaged",
    "coco_ap": "COCO mask AP",
    "coco_ap50": "COCO mask AP50",
    "coco_ap75": "COCO mask AP75",
    "runtime_s": "Runtime per image, s",
    "n_labels": "Labels per image",
    "foreground_fraction": "Foreground fraction",
}

# Columns in neither set (label counts, foreground) have no better direction.
LOWER_IS_BETTER = LOWER_IS_BETTER_METRICS | {"runtime_s"}
HIGHER_IS_BETTER = frozenset(IMAGE_METRICS + METHOD_METRICS) - LOWER_IS_BETTER

# Metrics on a 0..1 scale share that axis range, so panels compare at a glance.
UNIT_RANGE = frozenset({"iou", "dice", "precision", "recall", "boundary_f1",
                        "object_f1_50", "object_f1_mean", "foreground_fraction"})

DPI = 100
BOX_COLOUR = "#c6d8ee"
EDGE_COLOUR = "#5b6f86"
POINT_COLOUR = "#1f3b5c"
MEDIAN_COLOUR = "#d95f02"
OUTLINE_RGB = (1.0, 0.85, 0.0)
# Ground-truth outlines, drawn under the method's where both fall on a pixel.
TRUTH_RGB = (0.0, 0.75, 1.0)
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
    """Write ``fig`` as an RGB PNG at :data:`DPI`, atomically; return it.

    OpenCV encodes the rendered pixels, not ``savefig``: Pillow's encoder took a third
    of the time of a large distributions figure, OpenCV's at level 3 takes half of that
    for the same size, and dropping the opaque alpha channel costs nothing.
    """
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    bgr = cv2.cvtColor(np.asarray(canvas.buffer_rgba()), cv2.COLOR_RGBA2BGR)
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    write_bytes_atomic(path, encoded.tobytes())
    return fig


def method_column(metric):
    """The column of the per-method table that holds ``metric``: its mean, or itself
    for a whole-method score (COCO AP).

    >>> method_column("iou"), method_column("coco_ap")
    ('iou_mean', 'coco_ap')
    """
    return metric if metric in METHOD_METRICS else f"{metric}_mean"


def _sort_best_first(values, column):
    """``values`` (a Series) sorted best first; no better direction means largest first."""
    return values.sort_values(ascending=column in LOWER_IS_BETTER, na_position="last",
                              kind="stable")


def plot_metric_distributions(metrics, out_png, *, metrics_to_plot=None, primary=None):
    """One panel per metric: each method's per-image values as a box with the points.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; only rows with ``status == "ok"`` are drawn.
    out_png : str or os.PathLike
        Where to write the figure.
    metrics_to_plot : sequence of str, optional
        Columns to draw, default :data:`segpipe.table.IMAGE_METRICS`. Columns without
        any value are left out; if none is left, :data:`FALLBACK_COLUMNS` are drawn.
    primary : str, optional
        The primary metric: drawn first, and the methods ordered by it.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written, to inspect; pyplot does not hold it, so dropping it frees it.

    Notes
    -----
    Methods are rows, best at the top by the median of the first panel's column, so long
    method names stay horizontal and readable. The whiskers reach 1.5 IQR; every image
    is drawn as a point, jittered vertically, so no outlier is hidden.
    """
    ok = metrics[metrics["status"] == "ok"]
    wanted = IMAGE_METRICS if metrics_to_plot is None else tuple(metrics_to_plot)
    if primary in wanted:
        wanted = (primary, *(c for c in wanted if c != primary))
    columns = [c for c in wanted if has_values(ok, c)]
    fallback = not columns
    if fallback:
        columns = [c for c in FALLBACK_COLUMNS if has_values(ok, c)]
    methods = sorted(metrics["method"].unique())
    if not columns:
        return _save(_message_figure("No successful segmentations: nothing to plot."), out_png)
    medians = ok.groupby("method")[columns[0]].median().reindex(methods)
    order = list(_sort_best_first(medians, columns[0]).index)

    ncols = min(len(columns), 5 if len(columns) > 8 else 4)
    nrows = -(-len(columns) // ncols)
    # The layout is worked out here in inches rather than by constrained layout, which
    # measured every tick label of every panel and took half the time of a large figure.
    panel_w, panel_h, gap_w, gap_h = 3.0, max(1.0, 0.3 + 0.22 * len(order)), 0.25, 0.75
    names_w = 0.3 + _text_width_in(order, size=9)
    top, bottom = 0.55, 0.45
    width = names_w + ncols * panel_w + (ncols - 1) * gap_w + 0.2
    height = top + nrows * panel_h + (nrows - 1) * gap_h + bottom
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False, gridspec_kw={
        "left": names_w / width, "right": 1 - 0.2 / width,
        "top": 1 - top / height, "bottom": bottom / height,
        "wspace": gap_w / panel_w, "hspace": gap_h / panel_h,
    }).ravel()
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
        _draw_boxes(ax, data, places)
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
            _log_x(ax)
    for ax in axes[len(columns):]:
        ax.remove()
    axes[0].set_yticks(positions, order, fontsize=9)
    axes[0].set_ylim(0.4, len(order) + 0.6)
    n_images = ok["image_id"].nunique()
    first = LABELS.get(columns[0], columns[0]).split(",")[0]
    if columns[0] not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
        first = f"{first.lower()} (largest at the top)"
    elif fallback:
        first = f"{first.lower()} (best at the top)"
    else:
        first = f"{first} (best at the top)"
    what = ("No ground truth: runtime and label statistics" if fallback
            else "Per-image scores")
    title = f"{what}, {n_images} images; methods ordered by median {first}"
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    return _save(fig, out_png)


# Points drawn per method in the object figure; its boxes use every object.
OBJECT_POINTS = 2000


def plot_objects(objects, metrics, out_png):
    """Object areas and objects per image, one row per method with objects.

    Parameters
    ----------
    objects : pandas.DataFrame
        ``method`` and ``area`` of every object (``summary/objects.parquet``).
    metrics : pandas.DataFrame
        The per-image table: ``n_objects`` of the ok rows (null for methods whose labels
        are classes or regions, which are left out).
    out_png : str or os.PathLike

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Both axes are logarithmic: nuclei and specks differ by orders of magnitude. Methods
    are ordered by median object area, largest at the top. The boxes use every object;
    at most :data:`OBJECT_POINTS` points per method are drawn (a fixed random sample).
    """
    ok = metrics[(metrics["status"] == "ok") & metrics["n_objects"].notna()]
    methods = sorted(set(ok["method"]))
    if not methods:
        return _save(_message_figure("No method with objects (instances or a foreground)."),
                     out_png)
    areas = {m: g["area"].to_numpy(float) for m, g in objects.groupby("method") if m in methods}
    counts = {m: g["n_objects"].to_numpy(float) for m, g in ok.groupby("method")}
    medians = pd.Series({m: np.median(areas[m]) if m in areas else np.nan for m in methods})
    order = list(medians.sort_values(ascending=False, na_position="last", kind="stable").index)
    positions = np.arange(len(order), 0, -1)
    names_w = 0.3 + _text_width_in(order, size=9)
    panel_w, panel_h = 3.6, max(1.2, 0.3 + 0.25 * len(order))
    width, height = names_w + 2 * panel_w + 0.5, panel_h + 1.1
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, 2, sharey=True, gridspec_kw={
        "left": names_w / width, "right": 1 - 0.2 / width, "top": 1 - 0.6 / height,
        "bottom": 0.5 / height, "wspace": 0.3 / panel_w})
    rng = np.random.default_rng(0)
    for ax, values, title in ((axes[0], areas, "Object area (pixels)"),
                              (axes[1], counts, "Objects per image")):
        data, places = [], []
        for method, y in zip(order, positions):
            v = values.get(method, np.empty(0))
            v = v[v > 0]  # log axis: an image without objects has no point
            if v.size:
                data.append(v)
                places.append(y)
        if not data:
            ax.set_title(title + ": none", fontsize=10)
            continue
        _draw_boxes(ax, data, places)
        for v, y in zip(data, places):
            shown = v if v.size <= OBJECT_POINTS else rng.choice(v, OBJECT_POINTS, replace=False)
            ys = y + rng.uniform(-0.2, 0.2, shown.size)
            ax.scatter(shown, ys, s=5, color=POINT_COLOUR, alpha=0.3, linewidths=0, zorder=3)
        _log_x(ax)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", color="#e3e3e3", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[0].set_yticks(positions, order, fontsize=9)
    axes[0].set_ylim(0.4, len(order) + 0.6)
    n_objects = sum(v.size for v in areas.values())
    fig.suptitle(f"{n_objects:,} objects of {ok['image_id'].nunique()} images; methods by "
                 "median area, largest at the top", fontsize=11, y=1 - 0.12 / height, va="top")
    return _save(fig, out_png)


_TEXT_TO_PATH = TextToPath()


def _text_width_in(texts, *, size):
    """The width in inches of the widest of ``texts`` in the default font at ``size`` pt."""
    font = FontProperties(size=size)
    widths = [_TEXT_TO_PATH.get_text_width_height_descent(t, font, ismath=False)[0]
              for t in texts]
    return max(widths) / 72


def _draw_boxes(ax, data, places, half=0.3):
    """Horizontal box plots (whiskers at 1.5 IQR, no fliers) as three collections.

    ``Axes.boxplot`` makes six artists per box: with tens of methods in ten panels,
    laying those out and drawing them took most of the figure's time.
    """
    stats = boxplot_stats(data)
    boxes, whiskers, medians = [], [], []
    for s, y in zip(stats, places):
        low, high = y - half, y + half
        boxes.append([(s["q1"], low), (s["q3"], low), (s["q3"], high), (s["q1"], high)])
        whiskers += [[(s["whislo"], y), (s["q1"], y)], [(s["q3"], y), (s["whishi"], y)],
                     [(s["whislo"], y - half / 2), (s["whislo"], y + half / 2)],
                     [(s["whishi"], y - half / 2), (s["whishi"], y + half / 2)]]
        medians.append([(s["med"], low), (s["med"], high)])
    ax.add_collection(PolyCollection(boxes, facecolors=BOX_COLOUR, edgecolors=EDGE_COLOUR,
                                     linewidths=0.8, zorder=1))
    ax.add_collection(LineCollection(whiskers, colors=EDGE_COLOUR, linewidths=0.8, zorder=1))
    # Above the points, which would otherwise hide the median of a dense method.
    ax.add_collection(LineCollection(medians, colors=MEDIAN_COLOUR, linewidths=2, zorder=4))


def _log_x(ax):
    """A log x axis with plain tick labels (0.02, not 2x10^-2), not crowded."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))

    def minor(x, _):
        # Read at draw time, when the limits are final. Under two decades there may be
        # one major tick or none, so some minor ticks are labelled, fewer as it widens.
        low, high = ax.get_xlim()
        decades = np.log10(high / low)
        leading = round(x / 10 ** np.floor(np.log10(x)))
        wanted = (2, 3, 5) if decades < 1 else (2, 5) if decades < 2 else ()
        return f"{x:g}" if leading in wanted else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def _message_figure(text):
    """A small figure that says ``text``: the report shows why a figure has no data."""
    fig = Figure(figsize=(6, 1.5))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    return fig


def plot_quality_runtime(methods, out_png, *, metric="iou"):
    """Each method's score on ``metric`` against its seconds per image (log scale).

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table, with ``method``, ``kind``, ``n_error``,
        ``seconds_per_image`` and the metric's column (see :func:`method_column`).
    out_png : str or os.PathLike
        Where to write the figure.
    metric : str
        The ground-truth metric on the y axis: a per-image metric (its mean is plotted)
        or a whole-method COCO AP.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written, to inspect; pyplot does not hold it, so dropping it frees it.

    Notes
    -----
    Without values of the metric the figure is a bar chart of seconds per image,
    fastest first, and its title says there is no ground truth.
    """
    column = method_column(metric)
    if not has_values(methods, column):
        return _save(_runtime_bars(methods, metric), out_png)
    shown = methods[methods[column].notna() & (methods["seconds_per_image"] > 0)]
    left_out = sorted(set(methods["method"]) - set(shown["method"]))
    score = LABELS.get(metric, metric) if column == metric else f"mean {LABELS.get(metric, metric)}"
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    kinds = sorted(shown["kind"].unique())
    for i, kind in enumerate(kinds):
        mine = shown[shown["kind"] == kind]
        ax.scatter(mine["seconds_per_image"], mine[column], s=45, color=f"C{i % 10}",
                   label=kind, edgecolors="white", linewidths=0.8, zorder=3)
    labels = [ax.annotate(_with_errors(name, errors), (x, y), xytext=(5, 4),
                          textcoords="offset points", fontsize=8)
              for name, errors, x, y in zip(shown["method"], shown["n_error"],
                                            shown["seconds_per_image"], shown[column])]
    _log_x(ax)
    ax.set_xlabel("Seconds per image (log scale, left is faster)")
    ax.set_ylabel(score[0].upper() + score[1:] + (
        " (lower is better)" if metric in LOWER_IS_BETTER else " (higher is better)"))
    ax.grid(color="#e3e3e3", linewidth=0.8)
    ax.grid(color="#f2f2f2", linewidth=0.6, which="minor", axis="x")
    ax.set_axisbelow(True)
    if kinds:
        ax.legend(title="kind", fontsize=8, title_fontsize=8, loc="best")
    # Labels sit up and right of their point: leave room for them inside the axes.
    ax.margins(x=0.15, y=0.1)
    ax.set_title(f"Quality against speed: {score} per method", fontsize=11)
    if left_out:
        fig.text(0.01, 0.005, f"Not shown (no {LABELS.get(metric, metric)} or runtime): "
                 + ", ".join(left_out), fontsize=8, color="#555555")
    _separate_labels(fig, labels)
    return _save(fig, out_png)


def _separate_labels(fig, labels, *, step_pt=2.0, tries=60):
    """Move point labels up or down (in offset points) until no two overlap.

    Methods with similar scores and speeds (sweeps, or a method and its variant) put their
    labels on top of each other. Labels are placed one by one, highest point first; each
    is nudged alternately above and below its place until its box meets no box placed
    before it. Boxes are measured after the figure's layout, so they are the drawn ones.
    """
    if len(labels) < 2:
        return
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # runs the constrained layout: positions are final
    renderer = fig.canvas.get_renderer()
    placed = []
    order = sorted(labels, key=lambda t: -t.xy[1])
    for label in order:
        x0, y0 = label.xyann
        for k in range(tries):
            shift = (k + 1) // 2 * step_pt * (1 if k % 2 else -1)
            label.xyann = (x0, y0 + shift)
            box = label.get_window_extent(renderer).padded(1)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))


def _with_errors(method, n_error):
    """A method's name, with its error count when it has errors."""
    if not n_error > 0:
        return method
    return f"{method} ({int(n_error)} error{'s' if n_error > 1 else ''})"


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
            edgecolor=EDGE_COLOUR)
    for y, value in zip(positions[timed], seconds[timed]):
        ax.annotate(f"{value:.3g} s", (value, y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    for y in positions[~timed]:
        ax.text(0.01, y, "no runtime", transform=ax.get_yaxis_transform(), va="center",
                fontsize=8, color="#555555")
    ax.set_yticks(positions, names, fontsize=9)
    # A log axis only when runtimes span orders of magnitude (a threshold against a
    # CNN): otherwise bar lengths on a linear axis compare more honestly.
    low, high = (seconds[timed].min(), seconds[timed].max()) if timed.any() else (0, 0)
    if low > 0 and high > 30 * low:
        _log_x(ax)
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


def _ranked(metrics, method, metric):
    """The method's ok rows, best first, and the column that ordered them.

    Ordered by ``metric``; without values of it (a COCO AP has none per image) by the
    first per-image ground-truth metric with values, then by ``n_objects`` (most first:
    a threshold's label count is always 1, its object count is not), then ``n_labels``,
    then by image id, and the column is then None. Rows without a value of the column
    are left out; ties keep image id order.
    """
    rows = metrics[(metrics["method"] == method) & (metrics["status"] == "ok")]
    rows = rows.sort_values("image_id", kind="stable")
    for column in (metric, *IMAGE_METRICS, "n_objects", "n_labels"):
        if has_values(rows, column):
            rows = rows[rows[column].notna()]
            return rows.loc[_sort_best_first(rows[column], column).index], column
    return rows, None


def _spread(count, n):
    """Positions of ``n`` examples spread evenly over ``count`` ranked rows, ends included.

    Halves round up, so of an even count the median example is always the lower of the
    two middle rows, not one or the other as round-half-to-even would pick.

    >>> _spread(7, 3), _spread(4, 3), _spread(6, 3), _spread(2, 3), _spread(0, 3)
    ([0, 3, 6], [0, 2, 3], [0, 3, 5], [0, 1], [])
    """
    if count == 0 or n <= 0:
        return []
    return sorted({int(p) for p in np.floor(np.linspace(0, count - 1, n) + 0.5)})


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
        Without values of it, images are ranked by the first per-image ground-truth
        metric with values, else by ``n_labels`` (most first), else by image id.
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


def plot_overlays(metrics, out_png, *, input_dir, method, metric="iou", n=3, reading=None,
                  ground_truth=None):
    """Example images of one method with its mask outlines (and the truth's) on top.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; ``mask_path`` is relative to the working directory.
    out_png : str or os.PathLike
        Where to write the figure.
    input_dir : str or os.PathLike
        The input folder; an image is ``input_dir / image_id``.
    reading : segpipe.planes.Reading, optional
        The channel, slice and intensity range the method segmented.
    ground_truth : segpipe.ground_truth.GroundTruth, optional
        Its outlines are drawn too, in another colour, with a legend.
    method : str
        The method to show.
    metric : str
        The column to rank images by, see :func:`pick_examples`.
    n : int
        How many examples (panels), best first.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written, to inspect; pyplot does not hold it, so dropping it frees it.

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
        return _save(_message_figure(f"{method}: no successful images to show."), out_png)
    shown, with_truth = [], False
    for position in picks:
        row = rows.iloc[position]
        try:
            rel, plane = split_plane(row["image_id"], input_dir)
            truth = None
            if ground_truth is not None and pd.notna(row.get("height")):
                truth, _, _ = ground_truth.read(row["image_id"],
                                                (int(row["height"]), int(row["width"])))
                with_truth |= truth is not None
            shown.append(_overlay(Path(input_dir) / rel, row["mask_path"],
                                  for_plane(reading or DEFAULT_READING, plane), truth))
        except ImageReadError as err:
            shown.append(str(err))
    # Panels as tall as the tallest image needs, up to square: no band of white below.
    aspect = max([a.shape[0] / a.shape[1] for a in shown if not isinstance(a, str)],
                 default=1.0)
    fig = Figure(figsize=(PANEL_IN * len(picks), PANEL_IN * min(aspect, 1.0) + 0.8),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(picks)))
    for ax, position, panel in zip(axes, picks, shown):
        row = rows.iloc[position]
        ax.set_axis_off()
        if isinstance(panel, str):
            ax.text(0.5, 0.5, panel, ha="center", va="center", wrap=True, fontsize=8,
                    transform=ax.transAxes)
        else:
            ax.imshow(panel, interpolation="nearest")
        where = f"{position + 1} of {len(rows)}"
        if column is None:
            detail = f"image {where}"
        else:
            value = row[column]
            detail = f"{LABELS.get(column, column)} = {value:.3g}  ({where})"
        ax.set_title(f"{_shorten(row['image_id'], 42)}\n{detail}", fontsize=9)
    fig.suptitle(_overlay_title(method, column, len(picks)), fontsize=11)
    if with_truth:
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=OUTLINE_RGB, label=method),
                            Patch(color=TRUTH_RGB, label="ground truth")],
                   loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    return _save(fig, out_png)


def _overlay_title(method, column, count):
    """What the overlay panels are, in the order they are shown.

    >>> _overlay_title("otsu", "iou", 3)
    'otsu: best, median and worst images by IoU'
    >>> _overlay_title("otsu", None, 5)
    'otsu: 5 images spread over the image ids (no ground truth)'
    """
    if column in ("n_objects", "n_labels"):
        unit = "objects" if column == "n_objects" else "labels"
        what = (f"images with the most, median and fewest {unit}" if count == 3
                else f"{count} images from most to fewest {unit}")
        return f"{method}: {what} (no ground truth)"
    if column is None:
        what = ("first, middle and last images" if count == 3
                else f"{count} images spread over the image ids")
        return f"{method}: {what} (no ground truth)"
    name = LABELS.get(column, column)
    what = ("best, median and worst images" if count == 3
            else f"{count} images from best to worst")
    return f"{method}: {what} by {name}"


def _overlay(image_path, mask_path, reading=None, truth=None):
    """The image as RGB floats in 0..1, shrunk for display, with mask outlines drawn
    (and the outlines of ``truth``, a label image the image's size, under them).

    Shrunk in its own integer type before anything else, so memory stays near the
    decoded file (at most max_image_pixels x 3 or 6 bytes), not four float copies of it.
    """
    image = read_image(image_path, mode="rgb", max_pixels=None, reading=reading)
    height, width = image.shape[:2]
    scale = min(1.0, PANEL_PX / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    rgb = image.astype(np.float32) / intensity_max(image.dtype)
    del image
    if truth is not None:
        rgb[find_boundaries(_shrunk(truth, size), mode="inner")] = TRUTH_RGB
    labels = _shrunk(read_label_image(mask_path), size)
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
    return rgb


def _shrunk(labels, size):
    """A label image resized to ``size`` (width, height) by nearest neighbour."""
    if labels.shape[::-1] == tuple(size):
        return labels
    if labels.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
        labels = labels.astype(np.int32)  # OpenCV resizes no 32-bit unsigned type
    # Nearest keeps labels whole: averaging two labels would invent a third.
    return cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


def _shorten(text, width):
    """``text`` cut from the left to ``width`` characters: the file name end matters most.

    >>> _shorten("plate1/well 2/c.png", 12)
    '…ell 2/c.png'
    """
    return text if len(text) <= width else "…" + text[-(width - 1):]
