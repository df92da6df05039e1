"""Shared steps of the object methods (watershed, region growing): foreground, clean-up."""

from __future__ import annotations

import cv2
import numpy as np

from segpipe.imageio import label_dtype
from segpipe.methods.threshold import compute_threshold, foreground_mask


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
    from segpipe.imageio import intensity_max

    if isinstance(threshold, str):
        t = compute_threshold(grey, method=threshold)
    else:
        t = float(threshold) * intensity_max(grey.dtype)
    mask, polarity = foreground_mask(grey, t, foreground)
    if min_size > 1:
        mask = remove_small(mask, min_size, connectivity=8)
        mask = ~remove_small(~mask, min_size, connectivity=4, keep_border=True)
    return mask, polarity, t


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
