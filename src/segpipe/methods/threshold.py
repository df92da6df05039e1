"""Global thresholds: the image mean, Otsu's threshold, or a fixed value."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from segpipe.imageio import intensity_max
from segpipe.methods.base import Segmentation


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
        counts = np.bincount(grey.ravel(), minlength=size)
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
    if method == "mean":
        return float(grey.mean())
    if method == "otsu":
        counts, centers = intensity_histogram(grey)
        if np.count_nonzero(counts) < 2:
            # A flat image has no threshold; everything lies at or below its one value.
            return float(grey.flat[0])
        return float(otsu_threshold(counts, centers))
    if method == "value":
        if value is None:
            raise ValueError("method 'value' needs a 'value' setting")
        return float(value) * intensity_max(grey.dtype)
    raise ValueError(f"method must be 'mean', 'otsu' or 'value', got {method!r}")


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
    off_border = border.size - on_border
    if on_border != off_border:
        return "bright" if on_border < off_border else "dark"
    n_bright = int(np.count_nonzero(bright))
    return "bright" if 2 * n_bright <= bright.size else "dark"


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
    if (classes is None) == (thresholds is None):
        raise ValueError("give exactly one of 'classes' and 'thresholds'")
    top = intensity_max(grey.dtype)
    if thresholds is not None:
        cuts = np.asarray(thresholds, dtype=np.float64) * top
        if cuts.size == 0 or np.any(np.diff(cuts) <= 0):
            raise ValueError(f"thresholds must be a rising, non-empty list, got {thresholds}")
    else:
        if classes < 2:
            raise ValueError(f"classes must be >= 2, got {classes}")
        cuts = _multi_otsu(grey, classes)
    # The band of every possible intensity, looked up per pixel: same result as
    # np.digitize over the image, at a fraction of its cost.
    lut = np.digitize(np.arange(top + 1), cuts, right=True).astype(np.uint8)
    if foreground not in POLARITIES:
        raise ValueError(f"foreground must be one of {POLARITIES}, got {foreground!r}")
    if foreground == "auto":
        foreground = auto_polarity(grey > compute_threshold(grey, method="otsu"))
    if foreground == "dark":
        lut = (cuts.size - lut).astype(np.uint8)
    labels = cv2.LUT(grey, lut) if grey.dtype == np.uint8 else lut[grey]
    return Segmentation(labels=labels, thresholds=tuple(float(c) / top for c in cuts),
                        foreground=foreground)


def _multi_otsu(grey: np.ndarray, classes: int) -> np.ndarray:
    counts, centers = intensity_histogram(grey)
    if grey.dtype == np.uint16:
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
