"""Edge-based segmentation: 3x3 Sobel and Laplace kernels, and the regions edges enclose;
whole or in tiles."""

from __future__ import annotations

import cv2
import numpy as np

from segpipe.components import label_components
from segpipe.imageio import intensity_max, label_dtype
from segpipe.methods.base import Segmentation
from segpipe.methods.threshold import intensity_histogram, otsu_threshold
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, TileSource, Tiling, map_tiles, tile_grid

# The kernels exactly as the design fixes them. They are applied as a true convolution
# (kernel flipped), which is what scipy.ndimage.convolve computes.
KERNELS = {
    "sobel_h": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32),
    "sobel_v": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32),
    "laplace": np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=np.float32),
}
OPERATORS = ("sobel_h", "sobel_v", "sobel", "laplace")

# Largest possible edge strength on a 0..1 image, used to scale the stored edge map.
_MAX_STRENGTH = {"sobel_h": 4.0, "sobel_v": 4.0, "sobel": float(np.hypot(4.0, 4.0)), "laplace": 8.0}


def convolve3x3(grey: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a float image with a 3x3 kernel, borders reflected.

    Same result as ``scipy.ndimage.convolve(grey, kernel, mode="reflect")`` (OpenCV's
    BORDER_REFLECT is scipy's "reflect"), in float32 and without scipy's generic loop.

    >>> out = convolve3x3(np.eye(3, dtype=np.float32), KERNELS["laplace"])
    >>> float(out[1, 1])
    -6.0
    """
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    return cv2.filter2D(grey, cv2.CV_32F, flipped, borderType=cv2.BORDER_REFLECT)


def edge_strength(grey: np.ndarray, operator: str) -> np.ndarray:
    """Edge strength of a grey image scaled to 0..1: the absolute kernel response.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    operator : {"sobel_h", "sobel_v", "sobel", "laplace"}
        ``sobel`` is the magnitude of the horizontal and vertical responses.

    Returns
    -------
    strength : (M, N) ndarray of float32, non-negative, in units of the 0..1 intensity scale
    """
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    # Bit-reproducible on every machine: the kernels are applied to the integer samples,
    # so every product and sum is an integer below 2**24, exact in float32 whatever order
    # or fused multiply-adds OpenCV's vector code uses. The magnitude is then NumPy's
    # separate multiply, add and sqrt, each correctly rounded (IEEE) in its vector and
    # scalar loops alike; 8-bit squares are even exact. cv2.magnitude, used before, gave
    # results 1 ulp apart depending on buffer alignment: edge maps differed between two
    # identical runs.
    image = grey.astype(np.float32)
    scale = np.float32(1.0 / intensity_max(grey.dtype))
    if operator == "sobel":
        gx = convolve3x3(image, KERNELS["sobel_h"])
        gy = convolve3x3(image, KERNELS["sobel_v"])
        np.multiply(gx, gx, out=gx)
        np.multiply(gy, gy, out=gy)
        np.add(gx, gy, out=gx)
        np.sqrt(gx, out=gx)
        np.multiply(gx, scale, out=gx)
        return gx
    response = np.abs(convolve3x3(image, KERNELS[operator]))
    np.multiply(response, scale, out=response)
    return response


def segment_edges(grey: np.ndarray, *, operator: str = "sobel", threshold: str | float = "otsu",
                  min_region_size: int = 16) -> Segmentation:
    """Edge mask from a kernel, then the regions the edges enclose.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    operator : {"sobel_h", "sobel_v", "sobel", "laplace"}
    threshold : "otsu" or float
        Edge pixels have strength above this (0..1 intensity units), or above Otsu's
        threshold of the edge map.
    min_region_size : int
        Enclosed regions with fewer pixels are set to 0 with the edges: speckle between
        noisy edges would otherwise give thousands of one-pixel regions.

    Returns
    -------
    Segmentation
        ``labels``: regions 1..N (4-connected, so a one-pixel-wide diagonal edge still
        separates them), numbered in raster order, 0 on edges and small regions.
        ``edge_map``: uint16 strength, 65535 = the kernel's largest possible response.
        ``thresholds``: the edge threshold used.

    Examples
    --------
    >>> grey = np.zeros((8, 8), dtype=np.uint8); grey[:, 4:] = 255
    >>> seg = segment_edges(grey, operator="sobel_v", min_region_size=1)
    >>> int(seg.labels.max()), bool((seg.labels[:, 3:5] == 0).all())
    (2, True)
    """
    edge_map = _edge_map(grey, operator)
    scale = 65535.0 / _MAX_STRENGTH[operator]
    if threshold == "otsu":
        t16 = _otsu16(intensity_histogram(edge_map)[0])
    else:
        t16 = float(threshold) * scale
    edges = edge_map > t16
    # SAUF scans line by line: the only OpenCV labelling documented to number components
    # in raster order (the default algorithms scan in blocks).
    n, regions = cv2.connectedComponentsWithAlgorithm(
        (~edges).view(np.uint8), 4, cv2.CV_32S, cv2.CCL_SAUF)
    if min_region_size > 1 and n > 1:
        sizes = np.bincount(regions.ravel(), minlength=n)
        keep = sizes >= min_region_size
        keep[0] = False
        # Renumber the kept regions 1..K in their raster order; dropped ones become 0.
        lut = np.zeros(n, dtype=np.int32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1)
        regions = lut[regions]
        n = int(keep.sum()) + 1
    return Segmentation(
        labels=regions.astype(label_dtype(n - 1)),
        thresholds=(t16 / scale,) if np.isfinite(t16) else (),
        edge_map=edge_map,
    )


def _edge_map(grey: np.ndarray, operator: str) -> np.ndarray:
    """The stored edge map: the 16-bit strength, 65535 = the kernel's largest response."""
    strength = edge_strength(grey, operator)
    scale = 65535.0 / _MAX_STRENGTH[operator]
    # Thresholding this map (Otsu on its exact integer histogram) is several times faster
    # than Otsu on the float image, and the edges are then exactly "edge map above
    # threshold" for anyone reading the file.
    return (np.minimum(strength * np.float32(scale), 65535.0) + 0.5).astype(np.uint16)


def _otsu16(counts: np.ndarray) -> float:
    """Otsu's threshold of an edge map's histogram; infinite (no edges) when flat."""
    if np.count_nonzero(counts) > 1:
        return float(otsu_threshold(counts, np.arange(counts.size)))
    return np.inf


def edges_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                operator: str = "sobel", threshold: str | float = "otsu",
                min_region_size: int = 16) -> Segmentation:
    """:func:`segment_edges` of an image read tile by tile; the same result, bit for bit.

    1. Each tile is read with a one-pixel halo (the kernels are 3x3; ``tiling.overlap``
       is not needed) and its edge map kept for its core. The kernel sums are exact
       integers and the rest is pixel by pixel, so the core's values are the whole
       image's. At the image border a tile has no halo there, and OpenCV reflects its
       edge exactly as it reflects the whole image's.
    2. Otsu's threshold comes from the tiles' summed edge-map histograms.
    3. The regions, 4-connected non-edge pixels, are labelled per tile and merged across
       tile borders (:func:`segpipe.components.label_components`), their sizes summed for
       ``min_region_size``, and numbered in raster order as the whole image numbers them.

    Parameters
    ----------
    source : TileSource
        A grey ``(M, N)`` image of uint8 or uint16 (:mod:`segpipe.tiles`).
    tiling : Tiling
        Tiles of ``tiling.core`` pixels a side, each read with a one-pixel halo.
    threads : int
        Threads the tiles are spread over; the result does not depend on it.
    operator, threshold, min_region_size
        As for :func:`segment_edges`.

    Returns
    -------
    Segmentation
        As :func:`segment_edges`'s, with ``tiles`` the number of tiles.

    Raises
    ------
    ValueError
        For an unknown operator, or a source that is not grey.

    Notes
    -----
    Memory: the labels (1, 2 or 4 bytes per pixel) and the uint16 edge map, both
    returned, go to disk (:mod:`segpipe.scratch`); everything else is per tile (its pixels, float32 responses
    and int32 region labels) or per region.

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> grey = np.zeros((8, 8), dtype=np.uint8); grey[:, 4:] = 255
    >>> seg = edges_tiled(ArraySource(grey), tiling=Tiling(size=3), operator="sobel_v",
    ...                   min_region_size=1)
    >>> labels = np.asarray(seg.labels)  # read from disk (segpipe.scratch)
    >>> int(labels.max()), bool((labels[:, 3:5] == 0).all()), seg.tiles
    (2, True, 9)
    """
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    if len(source.shape) != 2:
        raise ValueError(f"a grey image has shape (M, N), got {tuple(source.shape)}")
    shape = tuple(source.shape)
    grid = tile_grid(shape, core=tiling.core, margin=1)
    edge_map = ScratchLabels(shape, np.uint16)
    scale = 65535.0 / _MAX_STRENGTH[operator]

    def scan(tile: Tile) -> np.ndarray | None:
        core = _edge_map(source.read(*tile.read), operator)[tile.inner]
        edge_map[tile.core] = core
        return intensity_histogram(core)[0] if threshold == "otsu" else None

    counts = np.zeros(65536, np.int64)
    for tile_counts in map_tiles(scan, grid, threads=threads):
        if tile_counts is not None:
            counts += tile_counts
    t16 = _otsu16(counts) if threshold == "otsu" else float(threshold) * scale
    regions = label_components(lambda tile: ~(edge_map[tile.core] > t16), grid, shape=shape,
                               connectivity=4, min_size=min_region_size, threads=threads)
    return Segmentation(
        labels=regions.labels,
        thresholds=(t16 / scale,) if np.isfinite(t16) else (),
        edge_map=edge_map,
        tiles=len(grid),
    )
