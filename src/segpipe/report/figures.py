"""The report's figures of the summary tables: metric distributions, objects, and
quality against runtime.

Every function here reads the per-image table (``metrics``: one row per image and
method), the per-object table or the per-method table (``methods``), draws one file, and
writes it atomically (:func:`segpipe.report.drawing.save_png`). Ground-truth metrics may
be missing: each figure then falls back to what every run has (runtime, label counts), so
the report never shows an empty figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cbook import boxplot_stats
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter

from segpipe.report.columns import (
    HIGHER_IS_BETTER,
    LABELS,
    LOWER_IS_BETTER,
    has_values,
    label_of,
    method_column,
    sort_best_first,
)
from segpipe.report.drawing import message_figure, save_png
from segpipe.table import IMAGE_METRICS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Annotation

# Shown when the run has no ground truth: every run has these.
FALLBACK_COLUMNS = ("runtime_s", "n_labels", "foreground_fraction")

# Metrics on a 0..1 scale share that axis range, so panels compare at a glance.
UNIT_RANGE = frozenset({"iou", "dice", "precision", "recall", "boundary_f1",
                        "object_f1_50", "object_f1_mean", "foreground_fraction"})

BOX_COLOUR = "#c6d8ee"
EDGE_COLOUR = "#5b6f86"
POINT_COLOUR = "#1f3b5c"
MEDIAN_COLOUR = "#d95f02"


def plot_metric_distributions(metrics: pd.DataFrame, out_png: str | os.PathLike, *,
                              metrics_to_plot: Sequence[str] | None = None,
                              primary: str | None = None) -> Figure:
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
        return save_png(message_figure("No successful segmentations: nothing to plot."), out_png)
    medians = ok.groupby("method")[columns[0]].median().reindex(methods)
    order = list(sort_best_first(medians, columns[0]).index)

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
    return save_png(fig, out_png)


# Points drawn per method in the object figure; its boxes use every object.
OBJECT_POINTS = 2000


def plot_objects(objects: pd.DataFrame, metrics: pd.DataFrame,
                 out_png: str | os.PathLike) -> Figure:
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
        return save_png(message_figure("No method with objects (instances or a foreground)."),
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
    return save_png(fig, out_png)


_TEXT_TO_PATH = TextToPath()


def _text_width_in(texts: Iterable[str], *, size: float) -> float:
    """The width in inches of the widest of ``texts`` in the default font at ``size`` pt."""
    font = FontProperties(size=size)
    widths = [_TEXT_TO_PATH.get_text_width_height_descent(t, font, ismath=False)[0]
              for t in texts]
    return max(widths) / 72


def _draw_boxes(ax: Axes, data: Sequence[np.ndarray], places: Sequence[float | np.integer],
                half: float = 0.3) -> None:
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


def _log_x(ax: Axes) -> None:
    """A log x axis with plain tick labels (0.02, not 2x10^-2), not crowded."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))

    def minor(x: float, _: int | None) -> str:
        # Read at draw time, when the limits are final. Under two decades there may be
        # one major tick or none, so some minor ticks are labelled, fewer as it widens.
        low, high = ax.get_xlim()
        decades = np.log10(high / low)
        leading = round(x / 10 ** np.floor(np.log10(x)))
        wanted = (2, 3, 5) if decades < 1 else (2, 5) if decades < 2 else ()
        return f"{x:g}" if leading in wanted else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))



def plot_quality_runtime(methods: pd.DataFrame, out_png: str | os.PathLike, *,
                         metric: str = "iou") -> Figure:
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
        The figure written, as :func:`plot_metric_distributions` returns it.

    Notes
    -----
    Without values of the metric the figure is a bar chart of seconds per image,
    fastest first, and its title says there is no ground truth.
    """
    column = method_column(metric)
    if not has_values(methods, column):
        return save_png(_runtime_bars(methods, metric), out_png)
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
    return save_png(fig, out_png)


def _separate_labels(fig: Figure, labels: Sequence[Annotation], *, step_pt: float = 2.0,
                     tries: int = 60) -> None:
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


def _with_errors(method: str, n_error: float) -> str:
    """A method's name, with its error count when it has errors."""
    if not n_error > 0:
        return method
    return f"{method} ({int(n_error)} error{'s' if n_error > 1 else ''})"


def _runtime_bars(methods: pd.DataFrame, metric: str) -> Figure:
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
