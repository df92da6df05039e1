"""Global thresholds: the image mean, Otsu's threshold, or a fixed value; whole or in tiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from segpipe.imageio import intensity_max
from segpipe.methods.base import Segmentation
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, TileSource, Tiling, map_tiles, tile_grid

_BINCOUNT_BLOCK = 2**20


def intensity_histogram(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of every possible intensity of a uint8 or uint16 image.

    Integer counts are exact and much faster than a float histogram (OpenCV's calcHist
    for 8 bits, faster still than ``np.bincount``); scikit-image's thresholds accept them
    through their ``hist=`` argument.

    Returns
    -------
    counts : (256,) or (65536,) ndarray of int64
    centers : ndarray of int64, the intensity of each count
    """
    size = intensity_max(grey.dtype) + 1
    if grey.dtype == np.uint8 and grey.ndim == 2 and grey.shape[1] < 2**24:
        # calcHist counts in float32, exact up to 2**24 per bin: larger images are counted
        # in blocks of rows (np.bincount would first copy every pixel to a 64-bit index).
        rows = max(1, (2**24 - 1) // max(1, grey.shape[1]))
        counts = np.zeros(256, np.int64)
        for start in range(0, grey.shape[0], rows):
            block = np.ascontiguousarray(grey[start : start + rows])
            counts += cv2.calcHist([block], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:
        # np.bincount first copies its input to 64-bit indices: counting a million pixels
        # at a time keeps that copy at 8 MB instead of four times the image.
        flat = grey.ravel()
        counts = np.zeros(size, np.int64)
        for start in range(0, flat.size, _BINCOUNT_BLOCK):
            counts += np.bincount(flat[start : start + _BINCOUNT_BLOCK], minlength=size)
    return counts, np.arange(size)


def otsu_threshold(counts: np.ndarray, centers: np.ndarray) -> np.number:
    """Otsu's threshold from a histogram: the center that maximises between-class variance.

    The same arithmetic, in the same order, as ``skimage.filters.threshold_otsu(hist=...)``
    (zero bins trimmed from both ends, first maximum on ties), so the two agree exactly
    (``tests/test_threshold.py`` checks it on random histograms). Written here because
    importing scikit-image's thresholding module imports ``scipy.ndimage``, 0.22 s of each
    segment job's 0.7 s start-up on the 2-core development machine; Otsu itself is a few
    vector operations.

    Parameters
    ----------
    counts : (K,) ndarray of int
        Pixel count per bin, at least two of them non-zero.
    centers : (K,) ndarray
        The intensity of each bin.

    Returns
    -------
    threshold : float
        Pixels strictly above it are the brighter class.

    Examples
    --------
    >>> float(otsu_threshold(np.array([0, 5, 0, 0, 5, 0]), np.arange(6)))
    1.0
    """
    nonzero = np.flatnonzero(counts)
    counts = counts[nonzero[0] : nonzero[-1] + 1]
    centers = centers[nonzero[0] : nonzero[-1] + 1]
    below = np.cumsum(counts)
    above = np.cumsum(counts[::-1])[::-1]
    weighted = counts * centers
    mean_below = np.cumsum(weighted) / below
    mean_above = (np.cumsum(weighted[::-1]) / above[::-1])[::-1]
    # The split after bin i pairs "below" up to i with "above" from i + 1.
    between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return centers[np.argmax(between)]


def compute_threshold(grey: np.ndarray, *, method: str = "otsu",
                      value: float | None = None) -> float:
    """The intensity threshold of a grey image, on the image's own scale.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    method : {"mean", "otsu", "value"}
        ``value`` takes ``value`` (0..1) times the type's maximum.
    value : float, optional
        The fixed threshold for ``method="value"``, on the 0..1 scale.

    Returns
    -------
    threshold : float
        Pixels strictly above it are "bright".

    Examples
    --------
    >>> grey = np.array([[10, 10, 200, 200]], dtype=np.uint8)
    >>> compute_threshold(grey, method="mean")
    105.0
    """
    if method == "value":
        if value is None:
            raise ValueError("method 'value' needs a 'value' setting")
        return float(value) * intensity_max(grey.dtype)
    if method not in ("mean", "otsu"):
        raise ValueError(f"method must be 'mean', 'otsu' or 'value', got {method!r}")
    return histogram_threshold(*intensity_histogram(grey), method=method)


def histogram_threshold(counts: np.ndarray, centers: np.ndarray, *, method: str) -> float:
    """The mean or Otsu threshold of an image from its :func:`intensity_histogram`.

    Tiled images sum their tiles' histograms, so they get the whole image's threshold.

    Parameters
    ----------
    counts, centers : (K,) ndarray of int
        Pixel count per intensity, and the intensities.
    method : {"mean", "otsu"}

    Returns
    -------
    threshold : float

    Notes
    -----
    The mean is the exact integer sum over the pixel count, rounded once. That is the
    float ``grey.mean()`` gives too: NumPy sums integer samples in float64, and while the
    sum stays below 2**53 every partial sum is an integer, exact in float64, whatever the
    order of summation; the division then rounds the same exact quotient. The sum of
    10**10 16-bit pixels (the tiled limit) is below 2**50.

    Examples
    --------
    >>> histogram_threshold(np.array([2, 0, 1]), np.arange(3), method="mean")
    0.6666666666666666
    """
    if method == "mean":
        return int(counts @ centers) / int(counts.sum())
    if method != "otsu":
        raise ValueError(f"method must be 'mean' or 'otsu', got {method!r}")
    if np.count_nonzero(counts) < 2:
        # A flat image has no threshold; everything lies at or below its one value.
        return float(centers[np.flatnonzero(counts)[0]])
    return float(otsu_threshold(counts, centers))


POLARITIES = ("bright", "dark", "auto")


def auto_polarity(bright: np.ndarray) -> str:
    """The side of a threshold that holds the objects: ``"bright"`` or ``"dark"``.

    Objects (nuclei, cells, particles) seldom fill the image border, while the background
    surrounds them: the side that covers less of the border pixels is the foreground. On
    a tie (no border pixel on either side, or as many on both) the side with fewer pixels
    is, as objects usually cover less of an image than their background.

    Parameters
    ----------
    bright : (M, N) ndarray of bool
        Pixels above the threshold.

    Examples
    --------
    >>> bright = np.ones((5, 5), bool); bright[1:4, 1:4] = False  # a dark blob inside
    >>> auto_polarity(bright)
    'dark'
    """
    border = np.concatenate((bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]))
    on_border = int(np.count_nonzero(border))
    n_bright = int(np.count_nonzero(bright))
    return _polarity(on_border=on_border, off_border=border.size - on_border,
                     bright=n_bright, dark=bright.size - n_bright)


def _polarity(*, on_border: int, off_border: int, bright: int, dark: int) -> str:
    """:func:`auto_polarity`'s rule on pixel counts, which tiles can add up."""
    if on_border != off_border:
        return "bright" if on_border < off_border else "dark"
    return "bright" if bright <= dark else "dark"


def _integer_threshold(dtype: np.dtype, threshold: float) -> float | np.integer:
    """A threshold integer samples can be compared with directly, with the same outcome.

    ``uint8 > 101.7`` makes NumPy turn every pixel into a float64 first (0.3 ms per
    megapixel, more than Otsu's whole search); ``uint8 > 101`` compares bytes, and for
    integer samples ``x > t`` is ``x > floor(t)``. Thresholds outside the type's range
    are left as Python integers below it (all pixels pass) and clipped to its top (none).

    >>> _integer_threshold(np.dtype(np.uint8), 101.7), _integer_threshold(np.dtype(np.uint8), -3.5)
    (np.uint8(101), -4)
    """
    if dtype.kind not in "ui" or not np.isfinite(threshold):
        return threshold
    info = np.iinfo(dtype)
    floor = math.floor(threshold)
    if floor < info.min:
        return floor  # a Python int below the range: NumPy compares it exactly
    return dtype.type(min(floor, info.max))


def foreground_mask(grey: np.ndarray, threshold: float,
                    foreground: str = "bright") -> tuple[np.ndarray, str]:
    """The foreground of a threshold: pixels above it (bright), the rest (dark), or auto.

    Dark foreground is every pixel at or below the threshold, so that bright and dark are
    exact complements.

    Returns
    -------
    mask : (M, N) ndarray of bool
    polarity : {"bright", "dark"}
        The side used (``auto`` resolved by :func:`auto_polarity`).
    """
    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    bright = grey > _integer_threshold(grey.dtype, threshold)
    if foreground == "auto":
        foreground = auto_polarity(bright)
    return (bright if foreground == "bright" else ~bright), foreground


def segment_threshold(grey: np.ndarray, *, method: str = "otsu", value: float | None = None,
                      foreground: str = "bright") -> Segmentation:
    """Binary segmentation by one global threshold.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    method : {"mean", "otsu", "value"}
    value : float, optional
        Fixed threshold on the 0..1 scale, for ``method="value"``.
    foreground : {"bright", "dark", "auto"}
        Which side of the threshold gets label 1: pixels strictly above it (bright), pixels
        at or below it (dark), or the side :func:`auto_polarity` picks for each image.

    Returns
    -------
    Segmentation
        ``labels`` is uint8 with 1 for foreground and 0 elsewhere; ``thresholds`` holds
        the threshold on the 0..1 scale; ``foreground`` the side used.

    Examples
    --------
    >>> grey = np.array([[0, 50, 200, 255]], dtype=np.uint8)
    >>> segment_threshold(grey, method="value", value=0.5).labels
    array([[0, 0, 1, 1]], dtype=uint8)
    """
    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    t = compute_threshold(grey, method=method, value=value)
    mask, polarity = foreground_mask(grey, t, foreground)
    return Segmentation(labels=mask.view(np.uint8), thresholds=(t / intensity_max(grey.dtype),),
                        foreground=polarity)


# Multi-Otsu searches all threshold combinations over the histogram bins; 16-bit images
# are binned to 256 levels first so the search stays fast (65536 bins would be too slow).
_MULTI_OTSU_BINS = 256


def segment_multi_threshold(grey: np.ndarray, *, classes: int | None = None,
                            thresholds: Sequence[float] | None = None,
                            foreground: str = "bright") -> Segmentation:
    """Several thresholds give intensity bands labelled 0..N-1 from the background side.

    Parameters
    ----------
    grey : (M, N) ndarray of uint8 or uint16
    classes : int, optional
        Number of bands found by multi-Otsu (at least 2).
    thresholds : sequence of float, optional
        Fixed, strictly rising thresholds on the 0..1 scale; N thresholds give N+1 bands.
        Exactly one of ``classes`` and ``thresholds`` is given.
    foreground : {"bright", "dark", "auto"}
        ``bright``: band 0 is the darkest (a pixel above k of the thresholds gets label k);
        ``dark``: the order is reversed, band 0 is the brightest; ``auto`` picks the order
        per image by :func:`auto_polarity` of Otsu's threshold.

    Returns
    -------
    Segmentation
        ``labels`` is uint8, ``thresholds`` the cuts on the 0..1 scale (rising),
        ``foreground`` the order used.

    Examples
    --------
    >>> grey = np.array([[0, 100, 200]], dtype=np.uint8)
    >>> segment_multi_threshold(grey, thresholds=[0.2, 0.6]).labels
    array([[0, 1, 2]], dtype=uint8)
    """
    given = _check_bands(classes, thresholds, foreground, intensity_max(grey.dtype))
    cuts = given if given is not None else _multi_otsu(*intensity_histogram(grey), classes)
    if foreground == "auto":
        foreground = auto_polarity(grey > compute_threshold(grey, method="otsu"))
    labels = _bands(grey, _band_lut(cuts, intensity_max(grey.dtype), foreground))
    return Segmentation(labels=labels, thresholds=_unit_cuts(cuts, grey.dtype),
                        foreground=foreground)


def _check_bands(classes: int | None, thresholds: Sequence[float] | None, foreground: str,
                 top: int) -> np.ndarray | None:
    """Check multi-threshold settings; the given thresholds on the image's scale, if any."""
    if (classes is None) == (thresholds is None):
        raise ValueError("give exactly one of 'classes' and 'thresholds'")
    cuts = None
    if thresholds is not None:
        cuts = np.asarray(thresholds, dtype=np.float64) * top
        if cuts.size == 0 or np.any(np.diff(cuts) <= 0):
            raise ValueError(f"thresholds must be a rising, non-empty list, got {thresholds}")
    elif classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    return cuts


def _band_lut(cuts: np.ndarray, top: int, foreground: str) -> np.ndarray:
    """The band of every possible intensity, numbered from the ``foreground`` side."""
    # Looked up per pixel: the same result as np.digitize over the image, at a fraction of
    # its cost.
    lut = np.digitize(np.arange(top + 1), cuts, right=True).astype(np.uint8)
    if foreground == "dark":
        lut = (cuts.size - lut).astype(np.uint8)
    return lut


def _bands(grey: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return cv2.LUT(grey, lut) if grey.dtype == np.uint8 else lut[grey]


def _unit_cuts(cuts: np.ndarray, dtype: np.dtype) -> tuple[float, ...]:
    return tuple(float(c) / intensity_max(dtype) for c in cuts)


def _multi_otsu(counts: np.ndarray, centers: np.ndarray, classes: int) -> np.ndarray:
    """Multi-Otsu cuts from an :func:`intensity_histogram`."""
    if counts.size > _MULTI_OTSU_BINS:
        factor = counts.size // _MULTI_OTSU_BINS
        counts = counts.reshape(_MULTI_OTSU_BINS, factor).sum(axis=1)
        # Upper edge of each bin, so "above the cut" keeps whole bins together.
        centers = np.arange(_MULTI_OTSU_BINS) * factor + (factor - 1)
    if np.count_nonzero(counts) < classes:
        # Too few distinct levels to split: put the cuts at the levels that exist.
        levels = centers[counts > 0]
        cuts = np.full(classes - 1, float(levels[-1]))
        cuts[: levels.size - 1] = levels[:-1]
        return np.maximum.accumulate(cuts)
    # Imported here: scikit-image's thresholding module imports scipy.ndimage, which other
    # methods' jobs need not pay for at start-up.
    from skimage.filters import threshold_multiotsu

    return threshold_multiotsu(classes=classes, hist=(counts, centers)).astype(np.float64)


def threshold_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                    method: str = "otsu", value: float | None = None,
                    foreground: str = "bright") -> Segmentation:
    """:func:`segment_threshold` of an image read tile by tile; the same result, bit for bit.

    The first pass streams the tiles' intensity histograms (and, for ``auto``, the
    histogram of the image border's pixels) and sums them: integer counts, so the sum is
    the whole image's histogram, and the mean, Otsu's threshold and the polarity follow
    from it as they do for the whole image (:func:`histogram_threshold`). The second pass
    labels each tile's core. ``method="value"`` with a fixed polarity needs only the
    second.

    Parameters
    ----------
    source : TileSource
        A grey ``(M, N)`` image of uint8 or uint16 (:mod:`segpipe.tiles`).
    tiling : Tiling
        Tiles of ``tiling.core`` pixels a side; the overlap is not needed.
    threads : int
        Threads the tiles are spread over; the result does not depend on it.
    method, value, foreground
        As for :func:`segment_threshold`.

    Returns
    -------
    Segmentation
        As :func:`segment_threshold`'s, with ``tiles`` the number of tiles.

    Raises
    ------
    ValueError
        For the settings :func:`segment_threshold` refuses, or a source that is not grey.

    Notes
    -----
    Memory: the uint8 labels go to disk (:mod:`segpipe.scratch`); everything else is per
    tile (its pixels and mask, and its histogram: 2 KB, or 512 KB for 16 bits).

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> grey = np.array([[0, 50, 200], [255, 90, 10]], dtype=np.uint8)
    >>> seg = threshold_tiled(ArraySource(grey), tiling=Tiling(size=2))
    >>> np.asarray(seg.labels), seg.tiles
    (array([[0, 0, 1],
           [1, 0, 0]], dtype=uint8), 2)
    """
    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    if method == "value" and value is None:
        raise ValueError("method 'value' needs a 'value' setting")
    if method not in ("mean", "otsu", "value"):
        raise ValueError(f"method must be 'mean', 'otsu' or 'value', got {method!r}")
    grid = _grey_tiles(source, tiling)
    histograms = None
    if method != "value" or foreground == "auto":
        histograms = streamed_histograms(source, grid, border=foreground == "auto", threads=threads)
    if method == "value":
        t = float(value) * intensity_max(source.dtype)
    else:
        t = histogram_threshold(histograms.counts, histograms.centers, method=method)
    if foreground == "auto":
        foreground = histograms.polarity(_integer_threshold(np.dtype(source.dtype), t))
    labels = ScratchLabels(source.shape, np.uint8)

    def label(tile: Tile) -> None:
        labels[tile.core] = foreground_mask(source.read(*tile.core), t, foreground)[0]

    for _ in map_tiles(label, grid, threads=threads):
        pass
    return Segmentation(labels=labels, thresholds=(t / intensity_max(source.dtype),),
                        foreground=foreground, tiles=len(grid))


def multi_threshold_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1,
                          classes: int | None = None, thresholds: Sequence[float] | None = None,
                          foreground: str = "bright") -> Segmentation:
    """:func:`segment_multi_threshold` of an image read tile by tile; the same result, bit
    for bit.

    Multi-Otsu's cuts, and Otsu's threshold for ``auto``, come from the tiles' summed
    intensity histograms (as in :func:`threshold_tiled`), the bands from the same
    lookup table applied to each tile's core. Fixed thresholds with a fixed order read
    the tiles once.

    Parameters
    ----------
    source : TileSource
        A grey ``(M, N)`` image of uint8 or uint16.
    tiling : Tiling
        Tiles of ``tiling.core`` pixels a side; the overlap is not needed.
    threads : int
        Threads the tiles are spread over; the result does not depend on it.
    classes, thresholds, foreground
        As for :func:`segment_multi_threshold`.

    Returns
    -------
    Segmentation
        As :func:`segment_multi_threshold`'s, with ``tiles`` the number of tiles.

    Raises
    ------
    ValueError
        For the settings :func:`segment_multi_threshold` refuses, or a source that is not
        grey.

    Notes
    -----
    Memory: the uint8 labels go to disk (:mod:`segpipe.scratch`); everything else is per
    tile (its pixels and bands, and its histogram: 2 KB, or 512 KB for 16 bits).

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> grey = np.array([[0, 100, 200]], dtype=np.uint8)
    >>> np.asarray(multi_threshold_tiled(ArraySource(grey), tiling=Tiling(size=2),
    ...                                  thresholds=[0.2, 0.6]).labels)
    array([[0, 1, 2]], dtype=uint8)
    """
    top = intensity_max(source.dtype)
    cuts = _check_bands(classes, thresholds, foreground, top)
    grid = _grey_tiles(source, tiling)
    if cuts is None or foreground == "auto":
        histograms = streamed_histograms(source, grid, border=foreground == "auto", threads=threads)
        if cuts is None:
            cuts = _multi_otsu(histograms.counts, histograms.centers, classes)
        if foreground == "auto":
            foreground = histograms.polarity(
                histogram_threshold(histograms.counts, histograms.centers, method="otsu"))
    lut = _band_lut(cuts, top, foreground)
    labels = ScratchLabels(source.shape, np.uint8)

    def label(tile: Tile) -> None:
        labels[tile.core] = _bands(source.read(*tile.core), lut)

    for _ in map_tiles(label, grid, threads=threads):
        pass
    return Segmentation(labels=labels, thresholds=_unit_cuts(cuts, source.dtype),
                        foreground=foreground, tiles=len(grid))


def _grey_tiles(source: TileSource, tiling: Tiling) -> list[Tile]:
    """The grid of a grey source, cores only: thresholds look at one pixel at a time."""
    if len(source.shape) != 2:
        raise ValueError(f"a grey image has shape (M, N), got {tuple(source.shape)}")
    return tile_grid(source.shape, core=tiling.core)


@dataclass(frozen=True)
class StreamedHistograms:
    """An image's intensity histogram summed over its tiles and, for ``auto``, the
    histogram of its border pixels, each counted as often as :func:`auto_polarity`
    counts it."""

    counts: np.ndarray
    centers: np.ndarray
    border: np.ndarray | None

    def polarity(self, threshold: float | np.integer) -> str:
        """:func:`auto_polarity` of the pixels above ``threshold``."""
        above = self.centers > threshold
        on_border = int(self.border[above].sum())
        bright = int(self.counts[above].sum())
        return _polarity(on_border=on_border, off_border=int(self.border.sum()) - on_border,
                         bright=bright, dark=int(self.counts.sum()) - bright)


def streamed_histograms(source: TileSource, grid: Sequence[Tile], *, border: bool,
                        threads: int) -> StreamedHistograms:
    """The first pass of every tiled threshold (these kinds', and the foreground of
    watershed and region growing): the tiles' core histograms, summed, and with ``border``
    the histogram of the image border's pixels."""
    shape = source.shape

    def scan(tile: Tile) -> tuple[np.ndarray, np.ndarray | None]:
        grey = source.read(*tile.core)
        counts = intensity_histogram(grey)[0]
        edge = _border_pixels(grey, tile, shape) if border else None
        return counts, None if edge is None else np.bincount(edge, minlength=counts.size)

    size = intensity_max(source.dtype) + 1
    counts = np.zeros(size, np.int64)
    border_counts = np.zeros(size, np.int64) if border else None
    for tile_counts, tile_border in map_tiles(scan, grid, threads=threads):
        counts += tile_counts
        if tile_border is not None:
            border_counts += tile_border
    return StreamedHistograms(counts=counts, centers=np.arange(size), border=border_counts)


def _border_pixels(grey: np.ndarray, tile: Tile, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of a tile's core on the image border, as :func:`auto_polarity` strings
    them together: the first and last rows, then the first and last columns without
    those rows (so a one-row or one-column image counts its pixels twice)."""
    height, width = shape
    rows, cols = tile.core
    pieces = []
    if rows.start == 0:
        pieces.append(grey[0])
    if rows.stop == height:
        pieces.append(grey[-1])
    sides = grey[max(1, rows.start) - rows.start : min(height - 1, rows.stop) - rows.start]
    if cols.start == 0:
        pieces.append(sides[:, 0])
    if cols.stop == width:
        pieces.append(sides[:, -1])
    return np.concatenate(pieces) if pieces else np.empty(0, grey.dtype)
