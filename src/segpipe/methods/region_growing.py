"""Seeded region growing: objects grown from the most extreme pixels within a tolerance."""

from __future__ import annotations

import cv2
import numpy as np

from segpipe.imageio import intensity_max
from segpipe.methods.base import Segmentation
from segpipe.methods.objects import cleaned_foreground, relabel


def segment_region_growing(grey: np.ndarray, *, tolerance: float = 0.3,
                           threshold: str | float = "otsu", foreground: str = "auto",
                           min_distance: int = 5, sigma: float = 1.0,
                           min_size: int = 32) -> Segmentation:
    """Grow one object from each local extreme of the foreground, within a tolerance.

    Seeds are the local maxima (bright foreground) or minima (dark) of the image smoothed
    with a Gaussian of ``sigma``, at least ``min_distance`` apart and inside the
    thresholded foreground. From the most extreme seed down, each grows over the
    connected pixels whose smoothed intensity lies within ``tolerance`` of the seed's
    (``skimage.segmentation.flood``), inside the foreground and outside objects grown
    before it. A seed inside an earlier object grows nothing.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    tolerance : float
        On the 0..1 intensity scale.
    threshold : {"otsu", "mean"} or float
        Where objects may grow (a float is on the 0..1 scale).
    foreground : {"bright", "dark", "auto"}
    min_distance : int
        Least distance between two seeds, in pixels.
    sigma : float
        Smoothing before seeds are found and regions grown (0: none).
    min_size : int
        Objects (and foreground specks) with fewer pixels are dropped.

    Returns
    -------
    Segmentation
        ``labels``: instances 1..K in raster order; ``thresholds``: the foreground
        threshold on the 0..1 scale; ``foreground``: the side used.

    Examples
    --------
    >>> grey = np.zeros((12, 24), np.uint8)
    >>> grey[3:9, 2:8], grey[3:9, 14:20] = 200, 120
    >>> seg = segment_region_growing(grey, tolerance=0.1, foreground="bright", min_size=4)
    >>> int(seg.labels.max()), int(seg.labels[5, 4]), int(seg.labels[5, 16])
    (2, 1, 2)
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import flood

    mask, polarity, t = cleaned_foreground(grey, threshold=threshold, foreground=foreground,
                                           min_size=min_size)
    image = grey.astype(np.float32) * np.float32(1.0 / intensity_max(grey.dtype))
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if polarity == "dark":
        image = 1.0 - image
    n, components, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    labels = np.zeros(mask.shape, np.int32)
    if n == 1:
        return Segmentation(labels=labels.astype(np.uint8), foreground=polarity,
                            thresholds=(t / intensity_max(grey.dtype),))
    seeds = peak_local_max(image, min_distance=min_distance, labels=components,
                           exclude_border=False)
    # Most extreme first; ties by position, so the result depends on the image alone.
    order = np.lexsort((seeds[:, 1], seeds[:, 0], -image[seeds[:, 0], seeds[:, 1]]))
    next_label = 1
    for y, x in seeds[order]:
        if labels[y, x]:
            continue
        c = components[y, x]
        left, top, w, h = stats[c, :4]
        box = (slice(top, top + h), slice(left, left + w))
        # Pixels outside this component or taken already cannot be reached: +inf is never
        # within the tolerance of a finite seed value.
        crop = np.where((components[box] == c) & (labels[box] == 0), image[box], np.inf)
        grown = flood(crop, (y - top, x - left), tolerance=tolerance)
        labels[box][grown] = next_label
        next_label += 1
    return Segmentation(labels=relabel(labels, min_size), foreground=polarity,
                        thresholds=(t / intensity_max(grey.dtype),))
