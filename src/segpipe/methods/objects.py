"""Shared steps of the object methods (watershed, region growing): foreground, clean-up."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from segpipe.imageio import intensity_max, label_dtype
from segpipe.methods.threshold import (
    POLARITIES,
    compute_threshold,
    foreground_mask,
)
from segpipe.tiles import Tile, TileSource


def cleaned_foreground(grey: np.ndarray, *, threshold: str | float = "otsu",
                       foreground: str = "auto",
                       min_size: int = 16) -> tuple[np.ndarray, str, float]:
    """A thresholded foreground without specks and holes smaller than ``min_size``.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    threshold : {"otsu", "mean"} or float
        Otsu's threshold, the image mean, or a fixed value on the 0..1 scale.
    foreground : {"bright", "dark", "auto"}
    min_size : int
        8-connected foreground components with fewer pixels are dropped; holes (4-connected
        background components not touching the border) with fewer pixels are filled.

    Returns
    -------
    mask : (M, N) ndarray of bool
    polarity : {"bright", "dark"}
    threshold : float
        On the image's own intensity scale.
    """
    if isinstance(threshold, str):
        t = compute_threshold(grey, method=threshold)
    else:
        t = float(threshold) * intensity_max(grey.dtype)
    mask, polarity = foreground_mask(grey, t, foreground)
    return without_specks(mask, min_size), polarity, t


def without_specks(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_size`` pixels, its
    holes (4-connected background not touching the border) of fewer pixels filled.

    >>> mask = np.ones((5, 5), bool); mask[2, 2] = False; mask[0, 4] = False
    >>> without_specks(mask, 2).astype(int)[1:4, 1:4]  # the hole filled
    array([[1, 1, 1],
           [1, 1, 1],
           [1, 1, 1]])
    """
    if min_size > 1:
        mask = remove_small(mask, min_size, connectivity=8)
        mask = ~remove_small(~mask, min_size, connectivity=4, keep_border=True)
    return mask


def streamed_foreground(source: TileSource, tiles: Sequence[Tile], *,
                        threshold: str | float = "otsu", foreground: str = "auto",
                        threads: int = 1) -> tuple[float, str]:
    """The threshold and polarity :func:`cleaned_foreground` would pick on the whole
    image, from its tiles' cores read one at a time.

    Tiles segmented with them agree on what is foreground. Otsu's threshold and the mean
    come from the intensity histogram summed over the cores, which partition the image, so
    they equal the whole image's exactly; ``auto`` polarity counts the bright pixels on the
    image's frame as :func:`segpipe.methods.threshold.auto_polarity` does, from a histogram
    of the frame's pixels. One pass over the image, skipped when the threshold is a number
    and the polarity given.

    Parameters
    ----------
    source : TileSource
        A grey image (:mod:`segpipe.tiles`).
    tiles : sequence of Tile
        Its grid.
    threshold : {"otsu", "mean"} or float
        A float is on the 0..1 scale.
    foreground : {"bright", "dark", "auto"}
    threads : int
        Cores read at the same time.

    Returns
    -------
    threshold : float
        On the image's own intensity scale.
    polarity : {"bright", "dark"}

    Examples
    --------
    >>> from segpipe.tiles import ArraySource, tile_grid
    >>> grey = np.full((6, 8), 20, np.uint8); grey[2:4, 3:6] = 200
    >>> streamed_foreground(ArraySource(grey), tile_grid(grey.shape, core=3))
    (20.0, 'bright')
    """
    from segpipe.methods.threshold import (
        _integer_threshold,
        histogram_threshold,
        streamed_histograms,
    )

    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    if isinstance(threshold, str) and threshold not in ("otsu", "mean"):
        raise ValueError(f"threshold must be 'otsu', 'mean' or a number, got {threshold!r}")
    top = intensity_max(source.dtype)
    if not isinstance(threshold, str) and foreground != "auto":
        return float(threshold) * top, foreground
    found = streamed_histograms(source, tiles, border=foreground == "auto", threads=threads)
    if isinstance(threshold, str):
        t = histogram_threshold(found.counts, found.centers, method=threshold)
    else:
        t = float(threshold) * top
    if foreground != "auto":
        return t, foreground
    return t, found.polarity(_integer_threshold(np.dtype(source.dtype), t))


def remove_small(mask: np.ndarray, min_size: int, *, connectivity: int = 8,
                 keep_border: bool = False) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_size`` pixels.

    ``keep_border`` keeps components touching the image border whatever their size (used
    for filling holes: background touching the border is no hole).

    >>> mask = np.array([[1, 0, 0, 1], [0, 0, 0, 1]], bool)
    >>> remove_small(mask, 2).astype(int)
    array([[0, 0, 0, 1],
           [0, 0, 0, 1]])
    """
    _, components, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    if keep_border:
        x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
        w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
        keep |= (x == 0) | (y == 0) | (x + w == mask.shape[1]) | (y + h == mask.shape[0])
    keep[0] = False
    return keep[components]


def relabel(labels: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Number the labels of at least ``min_size`` pixels 1..K in order of first appearance
    in raster order; smaller ones become 0. Returns the smallest PNG-storable type.

    Raster order makes the numbering depend only on the image, never on the order in which
    an algorithm visited its seeds.

    >>> relabel(np.array([[5, 5, 0, 2], [7, 0, 0, 2]]))
    array([[1, 1, 0, 2],
           [3, 0, 0, 2]], dtype=uint8)
    """
    flat = labels.ravel()
    sizes = np.bincount(flat)
    ids, first = np.unique(flat, return_index=True)
    keep = (ids != 0) & (sizes[ids] >= min_size)
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first, kind="stable")]
    lut = np.zeros(sizes.size, dtype=np.int64)
    lut[order] = np.arange(1, order.size + 1)
    return lut[labels].astype(label_dtype(order.size))
