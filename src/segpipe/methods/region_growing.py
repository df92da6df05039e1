"""Seeded region growing: objects grown from the most extreme pixels within a tolerance."""

from __future__ import annotations

import cv2
import numpy as np

from segpipe.imageio import intensity_max
from segpipe.methods.base import Segmentation
from segpipe.methods.objects import (
    cleaned_foreground,
    relabel,
    streamed_foreground,
    without_specks,
)
from segpipe.methods.threshold import foreground_mask
from segpipe.stitch import stitch_tiles
from segpipe.tiles import TileSource, Tiling


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
    mask, polarity, t = cleaned_foreground(grey, threshold=threshold, foreground=foreground,
                                           min_size=min_size)
    labels = grow_regions(grey, mask, polarity, tolerance=tolerance, min_distance=min_distance,
                          sigma=sigma, min_size=min_size)
    return Segmentation(labels=labels, foreground=polarity,
                        thresholds=(t / intensity_max(grey.dtype),))


def grow_regions(grey: np.ndarray, mask: np.ndarray, polarity: str, *,
                 tolerance: float = 0.3, min_distance: int = 5, sigma: float = 1.0,
                 min_size: int = 32) -> np.ndarray:
    """The growing of :func:`segment_region_growing` inside a foreground ``mask`` already
    cleaned, its objects on the ``polarity`` side (``"bright"`` or ``"dark"``).

    Returns
    -------
    (M, N) ndarray of uint8, uint16 or uint32
        Instances 1..K in raster order, objects under ``min_size`` pixels dropped.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import flood

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
        return labels.astype(np.uint8)
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
    return relabel(labels, min_size)


def region_growing_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                         tolerance: float = 0.3, threshold: str | float = "otsu",
                         foreground: str = "auto", min_distance: int = 5, sigma: float = 1.0,
                         min_size: int = 32) -> Segmentation:
    """:func:`segment_region_growing` on an image read tile by tile, its objects stitched.

    The threshold and polarity come from the whole image, streamed over the tiles' cores
    (:func:`segpipe.methods.objects.streamed_foreground`), so every tile grows inside the
    same foreground and ``thresholds`` and ``foreground`` equal the whole-image run's.
    Each tile's read region is grown as a whole image would be and the objects are
    stitched by ownership (:mod:`segpipe.stitch`): an object is kept whole by one tile.

    Limit: an object at most ``2 * (overlap // 2) - 1`` pixels tall and wide is never cut;
    a larger one is cut at the core lines unless one tile's read region holds it, and each
    piece kept counts in ``cut_objects``. Seeds are taken per tile, so an object grown from
    a seed outside the tile's read region can differ from the whole image's.

    Memory: the labels go to disk (:mod:`segpipe.scratch`); the rest is per tile:
    ``threads`` tiles segmented at a time, each needing what :func:`segment_region_growing`
    needs for an image of one tile's size, and the labels of at most ``2 * threads`` tiles
    waiting to be stitched.

    Parameters
    ----------
    source : TileSource
        The grey image (:mod:`segpipe.tiles`).
    tiling : Tiling
        Tile size and overlap.
    threads : int
        Tiles segmented at the same time; the result does not depend on it.
    tolerance, threshold, foreground, min_distance, sigma, min_size
        As for :func:`segment_region_growing`.

    Returns
    -------
    Segmentation
        ``labels``: instances 1..K in raster order; ``tiles``: the tiles;
        ``cut_objects``: the pieces of cut objects.

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> grey = np.zeros((20, 60), np.uint8)
    >>> grey[6:14, 10:18], grey[6:14, 28:36] = 200, 120  # each across a tile line
    >>> seg = region_growing_tiled(ArraySource(grey), tiling=Tiling(size=24, overlap=12),
    ...                            tolerance=0.1, foreground="bright", min_size=4)
    >>> int(np.asarray(seg.labels).max()), seg.cut_objects
    (2, 0)
    """
    grid = tiling.tiles_of(source.shape)
    level, polarity = streamed_foreground(source, grid, threshold=threshold,
                                          foreground=foreground, threads=threads)

    def segment(grey: np.ndarray) -> np.ndarray:
        mask, _ = foreground_mask(grey, level, polarity)
        return grow_regions(grey, without_specks(mask, min_size), polarity,
                            tolerance=tolerance, min_distance=min_distance, sigma=sigma,
                            min_size=min_size)

    stitched = stitch_tiles(source, grid, segment, threads=threads, min_size=min_size)
    return Segmentation(labels=stitched.labels, foreground=polarity,
                        thresholds=(level / intensity_max(source.dtype),), tiles=len(grid),
                        cut_objects=stitched.cut_objects)
