"""Superpixels: SLIC and Felzenszwalb's graph-based segmentation (scikit-image)."""

from __future__ import annotations

import math

import numpy as np

from segpipe.imageio import intensity_max, label_dtype
from segpipe.methods.base import Segmentation
from segpipe.stitch import stitch_tiles
from segpipe.tiles import TileSource, Tiling

ALGORITHMS = ("slic", "felzenszwalb")


def segment_superpixels(rgb: np.ndarray, *, algorithm: str = "slic", n_segments: int = 250,
                        compactness: float = 10.0, scale: float = 100.0, sigma: float = 0.8,
                        min_size: int = 50) -> Segmentation:
    """Partition the image into superpixels: compact regions of similar colour.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8 or uint16
        A grey image arrives as three equal channels, which gives SLIC on the grey values.
    algorithm : {"slic", "felzenszwalb"}
        ``slic``: k-means in colour (CIELAB) and position, ``n_segments`` regions of about
        equal size, ``compactness`` trading colour for shape
        (``skimage.segmentation.slic``). ``felzenszwalb``: merges regions of a pixel graph
        while the difference between them is small relative to ``scale``; region count
        follows the image (``skimage.segmentation.felzenszwalb``).
    n_segments, compactness : int, float
        SLIC's settings.
    scale, min_size : float, int
        Felzenszwalb's settings (``min_size`` in pixels).
    sigma : float
        Gaussian smoothing before segmenting, both algorithms.

    Returns
    -------
    Segmentation
        ``labels``: regions 1..K covering every pixel (no background).

    Examples
    --------
    >>> rgb = np.zeros((20, 20, 3), np.uint8); rgb[:, 10:] = 255
    >>> labels = segment_superpixels(rgb, algorithm="felzenszwalb", sigma=0, min_size=5).labels
    >>> int(labels.min()), int(labels.max())
    (1, 2)
    """
    from skimage.segmentation import felzenszwalb, slic

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    image = rgb.astype(np.float32) * np.float32(1.0 / intensity_max(rgb.dtype))
    if algorithm == "slic":
        labels = slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma,
                      channel_axis=-1, start_label=1)
    else:
        labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size,
                              channel_axis=-1) + 1
    return Segmentation(labels=labels.astype(label_dtype(int(labels.max()))))


# Tiled SLIC needs at least this many superpixels per tile core (see superpixels_tiled).
MIN_SLIC_PER_TILE = 4


def superpixels_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                      algorithm: str = "slic", n_segments: int = 250, compactness: float = 10.0,
                      scale: float = 100.0, sigma: float = 0.8,
                      min_size: int = 50) -> Segmentation:
    """:func:`segment_superpixels` on an image read tile by tile, its regions stitched.

    Superpixels partition the image, so the stitching keeps every tile's core (no pixel is
    left unlabelled at a tile line) and merges the pieces of a region that two tiles agree
    on in their overlap (:mod:`segpipe.stitch`, ``partition=True``).

    ``n_segments`` is SLIC's count for the whole image: each tile asks for its read
    region's share of it, ``n_segments * tile pixels / image pixels`` rounded (at least 1),
    so superpixels keep the size they have on the whole image; the tiles' overlaps and the
    pieces at the lines give a few more regions in all. Felzenszwalb's settings are local
    (``scale``, ``sigma``, ``min_size``) and apply as they are.

    Limit: SLIC places its superpixels on a grid that starts at each tile's corner, so the
    regions differ from the whole image's; a region two tiles do not agree on is cut at
    the core line, and each region that its tile saw touching a cut side and that merged
    with nothing counts in ``cut_objects``.

    SLIC superpixels must be well smaller than a tile: with fewer than
    :data:`MIN_SLIC_PER_TILE` per tile core, neighbouring tiles' large regions agree in every
    overlap and the stitching would chain them into a few regions across the image
    (3.4e8 pixels with 250 superpixels gave 5). Such a tiling is refused, naming the
    ``n_segments`` that would do.

    Memory: per tile: ``threads`` tiles segmented at a time, each needing what
    :func:`segment_superpixels` needs for an image of one tile's size, and the labels of
    at most ``2 * threads`` tiles waiting to be stitched; the stitched labels are on disk
    (:mod:`segpipe.scratch`).

    Parameters
    ----------
    source : TileSource
        The RGB image (:mod:`segpipe.tiles`).
    tiling : Tiling
        Tile size and overlap.
    threads : int
        Tiles segmented at the same time; the result does not depend on it.
    algorithm, n_segments, compactness, scale, sigma, min_size
        As for :func:`segment_superpixels`.

    Returns
    -------
    Segmentation
        ``labels``: regions 1..K covering every pixel, in raster order; ``tiles``: the
        tiles; ``cut_objects``: regions cut at a tile line.

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> rgb = np.zeros((30, 50, 3), np.uint8); rgb[:, 25:] = 255  # two halves
    >>> seg = superpixels_tiled(ArraySource(rgb), tiling=Tiling(size=20, overlap=8),
    ...                         algorithm="felzenszwalb", sigma=0, min_size=5)
    >>> labels = np.asarray(seg.labels)
    >>> int(labels.min()), int(labels.max()), seg.cut_objects
    (1, 2, 0)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    grid = tiling.tiles_of(source.shape)
    image_pixels = source.shape[0] * source.shape[1]
    per_tile = n_segments * tiling.core**2 / image_pixels
    if algorithm == "slic" and len(grid) > 1 and per_tile < MIN_SLIC_PER_TILE:
        needed = math.ceil(MIN_SLIC_PER_TILE * image_pixels / tiling.core**2)
        raise ValueError(
            f"n_segments {n_segments} makes superpixels of about "
            f"{math.isqrt(image_pixels // n_segments)} pixels a side, too large for tiles of "
            f"{tiling.size} (fewer than {MIN_SLIC_PER_TILE} per tile core): set n_segments to at "
            f"least {needed} for this image, or a larger tiles size")

    def segment(rgb: np.ndarray) -> np.ndarray:
        share = rgb.shape[0] * rgb.shape[1] / image_pixels
        return segment_superpixels(rgb, algorithm=algorithm,
                                   n_segments=max(1, round(n_segments * share)),
                                   compactness=compactness, scale=scale, sigma=sigma,
                                   min_size=min_size).labels

    stitched = stitch_tiles(source, grid, segment, threads=threads, partition=True)
    return Segmentation(labels=stitched.labels, tiles=len(grid),
                        cut_objects=stitched.cut_objects)
