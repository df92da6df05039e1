"""Marker-controlled watershed: touching objects split along the valleys between markers."""

from __future__ import annotations

import cv2
import numpy as np

from segpipe.evaluation import disk
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

MARKERS = ("distance", "threshold")
# Below this distance a float32 result of OpenCV is within 0.5 of the exact squared
# distance (an integer), so rounding its square recovers the exact value; see
# euclidean_distance.
_SNAP_BELOW = 1024.0
ELEVATIONS = ("distance", "sobel")


def euclidean_distance(mask: np.ndarray) -> np.ndarray:
    """The exact Euclidean distance of each ``mask`` pixel to the nearest background pixel.

    OpenCV's precise transform is fast, but its last bits depend on where NumPy happened to
    place the output array and on the thread count: the same image gave watershed masks
    that differed by a pixel from run to run, so a resumed run did not reproduce an
    uninterrupted one. The squared distance is an integer, so it is recovered by rounding
    and its square root taken in float64; beyond ``_SNAP_BELOW`` pixels, where float32 is
    too coarse for that, SciPy's exact transform (4x slower) is used. Both give
    ``sqrt(integer)`` rounded once to float32, so the result is the same everywhere.

    Parameters
    ----------
    mask : (M, N) ndarray of bool

    Returns
    -------
    (M, N) ndarray of float32
        0 on the background.

    Examples
    --------
    >>> mask = np.ones((3, 5), bool)
    >>> mask[0, 0] = False
    >>> bool(euclidean_distance(mask)[2, 2] == np.float32(np.sqrt(8)))
    True
    """
    distance = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if distance.size and distance.max() >= _SNAP_BELOW:
        from scipy.ndimage import distance_transform_edt

        return distance_transform_edt(mask).astype(np.float32)
    return np.sqrt(np.rint(np.square(distance, dtype=np.float64))).astype(np.float32)


def distance_markers(mask: np.ndarray, *, h: float | None = 0.5, sigma: float = 1.0,
                     min_distance: int = 7,
                     footprint: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One marker per peak of the distance to the background, inside ``mask``.

    The Euclidean distance transform is smoothed with a Gaussian of ``sigma`` pixels: the
    raw transform has ridges and plateaus whose many equal maxima would each become a
    marker and cut one object into several. Its peaks are then either the regional maxima
    at least ``h`` pixels higher than the saddle to any higher peak
    (``skimage.morphology.h_maxima``, when ``h`` is set), or the local maxima at least
    ``min_distance`` apart (``skimage.feature.peak_local_max``; a square ``footprint`` of
    that side overrides the neighbourhood). Touching peaks form one marker. A foreground
    component without a peak gets a marker of its own, so no object is lost.

    Returns
    -------
    markers : (M, N) ndarray of int32
        0 = no marker, 1..K markers.
    distance : (M, N) ndarray of float32
        The smoothed distance transform.
    """
    distance = euclidean_distance(mask)
    if sigma > 0:
        distance = cv2.GaussianBlur(distance, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        distance[~mask] = 0
    n, components = cv2.connectedComponents(mask.view(np.uint8), connectivity=8,
                                            ltype=cv2.CV_32S)
    peaks = np.zeros(mask.shape, np.uint8)
    if n > 1 and h is not None:
        from skimage.morphology import h_maxima

        peaks = h_maxima(distance, h).astype(np.uint8) & mask.view(np.uint8)
    elif n > 1:
        from skimage.feature import peak_local_max

        kwargs = {"footprint": np.ones((footprint, footprint), bool)} if footprint else {}
        coords = peak_local_max(distance, min_distance=min_distance, labels=components,
                                exclude_border=False, **kwargs)
        peaks[tuple(coords.T)] = 1
    _, markers = cv2.connectedComponents(peaks, connectivity=8, ltype=cv2.CV_32S)
    has_marker = np.zeros(n, bool)
    has_marker[components[markers > 0]] = True
    lonely = ~has_marker
    lonely[0] = False
    if lonely.any():
        extra = np.zeros(n, np.int32)
        extra[lonely] = markers.max() + 1 + np.arange(np.count_nonzero(lonely))
        markers = np.where(markers > 0, markers, extra[components])
    return markers, distance


def threshold_markers(mask: np.ndarray, *, min_distance: int = 5) -> np.ndarray:
    """Markers from the threshold itself: the foreground's cores and the background.

    The foreground eroded by a disk of radius ``min_distance // 2`` gives one marker per
    remaining component (the confident interior of each object); the background eroded
    likewise is the background marker. Flooding then decides the uncertain band between
    them, following the elevation (the Sobel gradient: the seed's combination of a region
    method for the markers and an edge method for the boundaries).

    Returns
    -------
    markers : (M, N) ndarray of int32
        0 = undecided, 1 = background, 2..K+1 = object cores.
    """
    kernel = disk(max(1, min_distance // 2))
    core = cv2.erode(mask.view(np.uint8), kernel)
    # An object too small to survive the erosion keeps its whole self as its core.
    n, components = cv2.connectedComponents(mask.view(np.uint8), connectivity=8,
                                            ltype=cv2.CV_32S)
    survived = np.zeros(n, bool)
    survived[components[core > 0]] = True
    core |= (~survived[components] & mask).view(np.uint8)
    _, cores = cv2.connectedComponents(core, connectivity=8, ltype=cv2.CV_32S)
    background = cv2.erode((~mask).view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE)
    markers = np.where(cores > 0, cores + 1, 0).astype(np.int32)
    markers[background > 0] = 1
    return markers


def segment_watershed(grey: np.ndarray, *, markers: str = "distance",
                      elevation: str = "distance", threshold: str | float = "otsu",
                      foreground: str = "auto", min_size: int = 32, h: float | None = 0.5,
                      sigma: float = 1.0, min_distance: int = 7,
                      footprint: int | None = None) -> Segmentation:
    """Marker-controlled watershed of a thresholded foreground.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    markers : {"distance", "threshold"}
        ``distance``: peaks of the smoothed distance transform (:func:`distance_markers`),
        which split touching round objects at their necks. ``threshold``: the
        foreground's eroded cores (:func:`threshold_markers`).
    elevation : {"distance", "sobel"}
        What is flooded: the negated distance transform (splits by shape) or the Sobel
        gradient of the image (splits along intensity edges).
    threshold : {"otsu", "mean"} or float
        The foreground threshold (a float is on the 0..1 intensity scale).
    foreground : {"bright", "dark", "auto"}
    min_size : int
        Specks and holes smaller than this are removed first; objects smaller than this
        after the split are dropped.
    h : float or None
        Distance markers: least height of a peak above the saddle to a higher one, in
        pixels (h-maxima); None finds peaks by ``min_distance`` instead.
    sigma : float
        Distance markers: Gaussian smoothing of the distance transform, in pixels.
    min_distance : int
        Least distance between two markers, in pixels (about the smallest object radius):
        of distance peaks when ``h`` is None; threshold markers erode the foreground by
        half of it.
    footprint : int, optional
        Side of the square neighbourhood a distance peak must be the maximum of (with
        ``h`` None).

    Returns
    -------
    Segmentation
        ``labels``: instances 1..K numbered in raster order; ``thresholds``: the threshold
        on the 0..1 scale; ``foreground``: the side used.

    Examples
    --------
    >>> grey = np.zeros((20, 40), np.uint8)
    >>> yy, xx = np.mgrid[:20, :40]
    >>> grey[(yy - 10) ** 2 + (xx - 12) ** 2 <= 49] = 200  # two touching discs
    >>> grey[(yy - 10) ** 2 + (xx - 25) ** 2 <= 49] = 200
    >>> int(segment_watershed(grey, foreground="bright").labels.max())
    2
    """
    from segpipe.imageio import intensity_max

    _check_choices(markers, elevation)
    mask, polarity, t = cleaned_foreground(grey, threshold=threshold, foreground=foreground,
                                           min_size=min_size)
    labels = split_foreground(grey, mask, markers=markers, elevation=elevation,
                              min_size=min_size, h=h, sigma=sigma, min_distance=min_distance,
                              footprint=footprint)
    return Segmentation(labels=labels, foreground=polarity,
                        thresholds=(t / intensity_max(grey.dtype),))


def split_foreground(grey: np.ndarray, mask: np.ndarray, *, markers: str = "distance",
                     elevation: str = "distance", min_size: int = 32, h: float | None = 0.5,
                     sigma: float = 1.0, min_distance: int = 7,
                     footprint: int | None = None) -> np.ndarray:
    """The watershed of :func:`segment_watershed` on a foreground ``mask`` already cleaned.

    Returns
    -------
    (M, N) ndarray of uint8, uint16 or uint32
        Instances 1..K in raster order, objects under ``min_size`` pixels dropped.
    """
    from skimage.segmentation import watershed

    if markers == "distance":
        seeds, distance = distance_markers(mask, h=h, sigma=sigma, min_distance=min_distance,
                                           footprint=footprint)
    else:
        seeds = threshold_markers(mask, min_distance=min_distance)
        distance = None
    if elevation == "sobel":
        from segpipe.methods.edges import edge_strength

        surface = edge_strength(grey, "sobel")
    else:
        if distance is None:
            distance = euclidean_distance(mask)
        surface = -distance
    if markers == "distance":
        labels = watershed(surface, seeds, mask=mask)
    else:
        # The background marker floods too; what it takes is background.
        labels = watershed(surface, seeds)
        labels[labels == 1] = 0
    return relabel(labels, min_size)


def watershed_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                    markers: str = "distance", elevation: str = "distance",
                    threshold: str | float = "otsu", foreground: str = "auto",
                    min_size: int = 32, h: float | None = 0.5, sigma: float = 1.0,
                    min_distance: int = 7, footprint: int | None = None) -> Segmentation:
    """:func:`segment_watershed` on an image read tile by tile, its objects stitched.

    The threshold and polarity come from the whole image, streamed over the tiles' cores
    (:func:`segpipe.methods.objects.streamed_foreground`), so every tile agrees on the
    foreground and ``thresholds`` and ``foreground`` equal the whole-image run's. Each
    tile's read region is then cleaned and split as a whole image would be, and the
    objects are stitched by ownership (:mod:`segpipe.stitch`): an object is kept whole by
    one tile.

    Limit: an object at most ``2 * (overlap // 2) - 1`` pixels tall and wide is never cut;
    a larger one is cut at the core lines unless one tile's read region holds it, and each
    piece kept counts in ``cut_objects``. Near a tile line the split of touching objects
    can differ from the whole image's, as each tile sees only its read region.

    Memory: the labels go to disk (:mod:`segpipe.scratch`); the rest is per tile:
    ``threads`` tiles segmented at a time, each needing what :func:`segment_watershed`
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
    markers, elevation, threshold, foreground, min_size, h, sigma, min_distance, footprint
        As for :func:`segment_watershed`.

    Returns
    -------
    Segmentation
        ``labels``: instances 1..K in raster order; ``tiles``: the tiles;
        ``cut_objects``: the pieces of cut objects.

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> grey = np.zeros((40, 90), np.uint8)
    >>> yy, xx = np.mgrid[:40, :90]
    >>> for cx in (15, 45, 75):  # three discs, each across a tile line
    ...     grey[(yy - 20) ** 2 + (xx - cx) ** 2 <= 36] = 200
    >>> seg = watershed_tiled(ArraySource(grey), tiling=Tiling(size=32, overlap=16))
    >>> labels = np.asarray(seg.labels)
    >>> int(labels.max()), seg.tiles, seg.cut_objects
    (3, 18, 0)
    >>> bool((labels == segment_watershed(grey).labels).all())
    True
    """
    from segpipe.imageio import intensity_max

    _check_choices(markers, elevation)
    grid = tiling.tiles_of(source.shape)
    level, polarity = streamed_foreground(source, grid, threshold=threshold,
                                          foreground=foreground, threads=threads)

    def segment(grey: np.ndarray) -> np.ndarray:
        mask, _ = foreground_mask(grey, level, polarity)
        return split_foreground(grey, without_specks(mask, min_size), markers=markers,
                                elevation=elevation, min_size=min_size, h=h, sigma=sigma,
                                min_distance=min_distance, footprint=footprint)

    stitched = stitch_tiles(source, grid, segment, threads=threads, min_size=min_size)
    return Segmentation(labels=stitched.labels, foreground=polarity,
                        thresholds=(level / intensity_max(source.dtype),), tiles=len(grid),
                        cut_objects=stitched.cut_objects)


def _check_choices(markers: str, elevation: str) -> None:
    if markers not in MARKERS:
        raise ValueError(f"markers must be one of {MARKERS}, got {markers!r}")
    if elevation not in ELEVATIONS:
        raise ValueError(f"elevation must be one of {ELEVATIONS}, got {elevation!r}")
