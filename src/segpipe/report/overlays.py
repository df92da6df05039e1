"""Example images of each method, with the outlines of its labels (and the truth's) drawn
on top, and how the examples are picked."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from segpipe.errors import ImageReadError
from segpipe.imageio import intensity_max, read_image, read_label_image, read_label_level
from segpipe.planes import DEFAULT_READING, Reading, for_plane, split_plane
from segpipe.report.columns import LABELS, has_values, sort_best_first
from segpipe.report.drawing import DPI, message_figure, save_png
from segpipe.sources import image_shape, reduced_image
from segpipe.table import IMAGE_METRICS

if TYPE_CHECKING:
    from segpipe.ground_truth import GroundTruth

OUTLINE_RGB = (1.0, 0.85, 0.0)
# Ground-truth outlines, drawn under the method's where both fall on a pixel.
TRUTH_RGB = (0.0, 0.75, 1.0)
# One overlay panel, in inches; images are shrunk to at most this many pixels a side
# so that matplotlib shows them without resampling and the PNG stays well under 1 MB.
PANEL_IN = 3.6
PANEL_PX = int(PANEL_IN * DPI) - 20
# Larger images (16.7 megapixels, 4096 x 4096) are drawn from a subsampled read of the
# image and of the mask, never decoded whole: a tiled scan of 10^9 pixels would need GBs.
REDUCED_ABOVE_PIXELS = 4096 * 4096


# Without ground truth, examples are spread over a figure of each image that varies with
# what the method's labels mean, first choice first. A label count says nothing of a
# threshold (always one label) or of k-means (always k), an object count nothing of
# classes or regions (they have no objects); for classes, whose label 0 is a class of its
# own (the darkest band or cluster of the built-in kinds), ``foreground_fraction`` is the
# share of pixels outside class 0, and it does vary.
EXAMPLE_FIGURES = {
    "foreground": ("n_objects", "foreground_fraction"),
    "instances": ("n_objects", "foreground_fraction"),
    "regions": ("n_labels", "foreground_fraction"),
    "classes": ("foreground_fraction", "n_labels"),
}
# Every figure that can rank examples, in the order tried after a meaning's own (and for
# a kind this process does not know).
ALL_EXAMPLE_FIGURES = ("n_objects", "n_labels", "foreground_fraction")


def meaning_of(metrics: pd.DataFrame, method: str) -> str | None:
    """What ``method``'s labels mean (:attr:`segpipe.methods.MethodSpec.labels`), from the
    ``kind`` of its rows; None without a ``kind`` column or for an unknown kind."""
    from segpipe.methods import REGISTRY

    if "kind" not in metrics.columns:
        return None
    kinds = metrics.loc[metrics["method"] == method, "kind"]
    spec = REGISTRY.get(kinds.iloc[0]) if len(kinds) else None
    return None if spec is None else spec.labels


def _ranked(metrics: pd.DataFrame, method: str, metric: str,
            meaning: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The method's ok rows, best first, and the column that ordered them.

    Ordered by ``metric``; without values of it (a COCO AP has none per image) by the
    first per-image ground-truth metric with values. Without ground truth, by the first
    figure whose values differ between the images, those of :data:`EXAMPLE_FIGURES` for
    ``meaning`` first, then the others of :data:`ALL_EXAMPLE_FIGURES`; else the first with
    values; largest first. Without any, by image id, and the column is then None. Rows
    without a value of the column are left out; ties keep image id order.
    """
    rows = metrics[(metrics["method"] == method) & (metrics["status"] == "ok")]
    rows = rows.sort_values("image_id", kind="stable")
    column = next((c for c in (metric, *IMAGE_METRICS) if has_values(rows, c)), None)
    if column is None:
        first = EXAMPLE_FIGURES.get(meaning, ())
        figures = [c for c in (*first, *ALL_EXAMPLE_FIGURES) if has_values(rows, c)]
        varying = [c for c in figures if rows[c].nunique() > 1]
        column = (varying or figures or [None])[0]
    if column is None:
        return rows, None
    rows = rows[rows[column].notna()]
    return rows.loc[sort_best_first(rows[column], column).index], column


def _spread(count: int, n: int) -> list[int]:
    """Positions of ``n`` examples spread evenly over ``count`` ranked rows, ends included.

    Halves round up, so of an even count the median example is always the lower of the
    two middle rows, not one or the other as round-half-to-even would pick.

    >>> _spread(7, 3), _spread(4, 3), _spread(6, 3), _spread(2, 3), _spread(0, 3)
    ([0, 3, 6], [0, 2, 3], [0, 3, 5], [0, 1], [])
    """
    if count == 0 or n <= 0:
        return []
    return sorted({int(p) for p in np.floor(np.linspace(0, count - 1, n) + 0.5)})


def pick_examples(metrics: pd.DataFrame, method: str, metric: str = "iou", n: int = 3, *,
                  meaning: str | None = None) -> list[str]:
    """Image ids of one method's examples: best, median and worst by ``metric``.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The per-image table; only the method's rows with ``status == "ok"`` count.
    method : str
        The method.
    metric : str
        The column to rank by. Higher is better unless it is in
        :data:`segpipe.report.columns.LOWER_IS_BETTER`. Without values of it, images are
        ranked by the first per-image ground-truth metric with values; without ground
        truth, by a figure that varies for what the labels mean (:data:`EXAMPLE_FIGURES`:
        objects of a foreground or instances, labels of regions, the share of pixels
        outside class 0 of classes; largest first), else by image id.
    n : int
        How many examples, spread evenly from best to worst (3: best, median, worst).
        Fewer come back when the method has fewer ok images.
    meaning : {"foreground", "classes", "regions", "instances"}, optional
        What the method's labels mean; default :func:`meaning_of` its rows.

    Returns
    -------
    list of str
        Image ids, best first.
    """
    if meaning is None:
        meaning = meaning_of(metrics, method)
    rows, _ = _ranked(metrics, method, metric, meaning)
    return [rows["image_id"].iloc[p] for p in _spread(len(rows), n)]


def plot_overlays(metrics: pd.DataFrame, out_png: str | os.PathLike, *,
                  input_dir: str | os.PathLike, method: str, metric: str = "iou", n: int = 3,
                  reading: Reading | None = None,
                  ground_truth: GroundTruth | None = None) -> Figure:
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
    meaning = meaning_of(metrics, method)
    rows, column = _ranked(metrics, method, metric, meaning)
    picks = _spread(len(rows), n)
    if not picks:
        return save_png(message_figure(f"{method}: no successful images to show."), out_png)
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
            detail = f"{_figure_name(column, meaning)} = {row[column]:.3g}  ({where})"
        ax.set_title(f"{_shorten(row['image_id'], 42)}\n{detail}", fontsize=9)
    fig.suptitle(_overlay_title(method, column, len(picks), meaning), fontsize=11)
    if with_truth:
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=OUTLINE_RGB, label=method),
                            Patch(color=TRUTH_RGB, label="ground truth")],
                   loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    return save_png(fig, out_png)


def _figure_name(column: str, meaning: str | None) -> str:
    """A ranking column's name in a panel title: for classes, ``foreground_fraction`` is
    the share outside class 0, which is no foreground."""
    if column == "foreground_fraction" and meaning == "classes":
        return "Share outside class 0"
    return LABELS.get(column, column)


def _overlay_title(method: str, column: str | None, count: int,
                   meaning: str | None = None) -> str:
    """What the overlay panels are, in the order they are shown.

    >>> _overlay_title("otsu", "iou", 3)
    'otsu: best, median and worst images by IoU'
    >>> _overlay_title("km", "foreground_fraction", 3, "classes")
    'km: images with the largest, median and smallest share outside class 0 (no ground truth)'
    >>> _overlay_title("otsu", None, 5)
    'otsu: 5 images spread over the image ids (no ground truth)'
    """
    if column in ALL_EXAMPLE_FIGURES:
        # Counts run from most to fewest, a share from largest to smallest.
        counts = {"n_objects": "objects", "n_labels": "labels"}
        most, least = ("most", "fewest") if column in counts else ("largest", "smallest")
        unit = counts.get(column) or _figure_name(column, meaning).lower()
        what = (f"images with the {most}, median and {least} {unit}" if count == 3
                else f"{count} images from {most} to {least} {unit}")
        return f"{method}: {what} (no ground truth)"
    if column is None:
        what = ("first, middle and last images" if count == 3
                else f"{count} images spread over the image ids")
        return f"{method}: {what} (no ground truth)"
    name = LABELS.get(column, column)
    what = ("best, median and worst images" if count == 3
            else f"{count} images from best to worst")
    return f"{method}: {what} by {name}"


def _overlay(image_path: str | os.PathLike, mask_path: str | os.PathLike,
             reading: Reading | None = None, truth: np.ndarray | None = None) -> np.ndarray:
    """The image as RGB floats in 0..1, shrunk for display, with mask outlines drawn
    (and the outlines of ``truth``, a label image the image's size, under them).

    Shrunk in its own integer type before anything else, so memory stays near the
    decoded file (at most max_image_pixels x 3 or 6 bytes), not four float copies of it.
    """
    shape = image_shape(image_path)
    reduced = shape is not None and math.prod(shape) > REDUCED_ABOVE_PIXELS
    if reduced:
        # A large (tiled) image: a subsampled level of the image and of its mask, never
        # either whole; the same [::s, ::s] for both, so they line up.
        image = reduced_image(image_path, PANEL_PX, reading=reading)
    else:
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
    mask = read_label_level(mask_path, PANEL_PX) if reduced else read_label_image(mask_path)
    labels = _shrunk(mask, size)
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
    return rgb


def _shrunk(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label image resized to ``size`` (width, height) by nearest neighbour."""
    if labels.shape[::-1] == tuple(size):
        return labels
    if labels.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
        labels = labels.astype(np.int32)  # OpenCV resizes no 32-bit unsigned type
    # Nearest keeps labels whole: averaging two labels would invent a third.
    return cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


def _shorten(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` characters: the file name end matters most.

    >>> _shorten("plate1/well 2/c.png", 12)
    '…ell 2/c.png'
    """
    return text if len(text) <= width else "…" + text[-(width - 1):]
