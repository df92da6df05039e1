"""Per-object measurements and the deterministic confidence of classical objects.

One row per object of an image (its instances, or the connected components of its
foreground; :func:`segpipe.evaluation.objects_of`) goes to
``results/objects/{method}/{shard}.parquet``, gathered into ``summary/objects.parquet``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from math import sqrt
from typing import Any

import numpy as np
import pyarrow as pa

from segpipe.table import without_pandas

# Pixels around an object's bounding box whose background is its surroundings.
SCORE_MARGIN = 5

SHAPE_COLUMNS = ("eccentricity", "solidity", "perimeter", "mean_intensity", "max_intensity")

OBJECTS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("area", pa.int64(), nullable=False),
        pa.field("centroid_y", pa.float64()),
        pa.field("centroid_x", pa.float64()),
        pa.field("bbox", pa.list_(pa.int32(), 4)),
        pa.field("eccentricity", pa.float64()),
        pa.field("solidity", pa.float64()),
        pa.field("perimeter", pa.float64()),
        pa.field("mean_intensity", pa.float64()),
        pa.field("max_intensity", pa.float64()),
        pa.field("class_name", pa.string()),
        pa.field("score", pa.float64(), nullable=False),
    ],
    metadata={
        "description": "segpipe: one row per object (instance, or foreground component)",
        "columns": json.dumps(
            {
                "label": "the object's id: its label in the mask (instances) or its "
                         "8-connected component number in raster order (foreground)",
                "area": "pixels",
                "bbox": "min_row, min_col, max_row, max_col (max exclusive), scikit-image's "
                        "order",
                "eccentricity": "of the ellipse with the same second moments (0 = circle)",
                "solidity": "area / area of the convex hull",
                "perimeter": "scikit-image's perimeter (4-connected contour length)",
                "mean_intensity": "mean of the grey image as decoded (0..255 or 0..65535)",
                "max_intensity": "maximum of the grey image as decoded",
                "class_name": "Mask R-CNN: the detected class",
                "score": "Mask R-CNN: the detection score; classical methods: contrast, "
                         "|mean inside - mean of the background around it| on the 0..1 "
                         "scale (segpipe.measure.contrast_scores)",
            }
        ),
    },
)


def grey_of(image: np.ndarray) -> np.ndarray:
    """The grey image of a decoded image: itself, or the BT.601 luma of an RGB image."""
    from segpipe.imageio import luma

    return image if image.ndim == 2 else luma(image)


def contrast_scores(objects: np.ndarray, grey: np.ndarray, *, margin: int = SCORE_MARGIN,
                    image_background: float | None = None) -> np.ndarray:
    """A deterministic confidence per object: its contrast to its surroundings.

    ``|mean intensity inside - mean intensity of the background (label 0) pixels in the
    object's bounding box grown by margin pixels|``, on the 0..1 intensity scale; where
    that box holds no background pixel, the whole image's background is used, and where
    the image has none, the score is 0. Classical methods have no confidence of their own;
    without one, COCO AP would rank their objects by the order they were listed, which
    depends on image order (``segpipe.method_scores``). Contrast ranks clear objects above
    faint specks, and depends on the image alone.

    Parameters
    ----------
    objects : (M, N) ndarray of int
        Object ids 1..K (0 = background), as :func:`segpipe.evaluation.objects_of` gives.
    grey : (M, N) ndarray of uint8 or uint16
    margin : int
    image_background : float, optional
        The mean background intensity (0..1) of the whole image, for ``objects`` that are
        a region of a larger image; default: that of ``objects`` and ``grey``.

    Returns
    -------
    (K,) ndarray of float64
        The score of object 1..K (0.0 for an id with no pixels).

    Examples
    --------
    >>> grey = np.full((7, 7), 50, np.uint8); grey[2:5, 2:5] = 250
    >>> objects = (grey > 100).astype(np.int32)
    >>> contrast_scores(objects, grey).round(3)
    array([0.784])
    """
    from scipy.ndimage import find_objects

    from segpipe.imageio import intensity_max

    objects = np.asarray(objects)
    n = int(objects.max()) if objects.size else 0
    scores = np.zeros(n, np.float64)
    if n == 0:
        return scores
    values = grey.astype(np.float64) / intensity_max(grey.dtype)
    flat = objects.ravel().astype(np.intp)
    sizes = np.bincount(flat, minlength=n + 1)
    sums = np.bincount(flat, weights=values.ravel(), minlength=n + 1)
    inside = sums[1:] / np.maximum(sizes[1:], 1)
    background = objects == 0
    if image_background is None and sizes[0]:
        image_background = values[background].mean()
    height, width = objects.shape
    for i, box in enumerate(find_objects(objects), start=0):
        if box is None:
            continue
        rows = slice(max(0, box[0].start - margin), min(height, box[0].stop + margin))
        cols = slice(max(0, box[1].start - margin), min(width, box[1].stop + margin))
        around = background[rows, cols]
        if around.any():
            outside = values[rows, cols][around].mean()
        elif image_background is not None:
            outside = image_background
        else:
            continue
        scores[i] = abs(inside[i] - outside)
    return scores


# scikit-image's perimeter (skimage.measure.perimeter, neighborhood 4): a border pixel (one
# with a 4-neighbour outside the object) gets a code from the border pixels around it, and
# the perimeter is the histogram of the codes times these weights.
_PERIMETER_CODES = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]])
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + sqrt(2)) / 2

# Beyond any column, for the first column of an empty row.
_FAR = np.iinfo(np.int64).max // 4


def _packed(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The masks laid out on one canvas in shelves, each box with background all around.

    Parameters
    ----------
    masks : list of (M, N) ndarray of bool

    Returns
    -------
    canvas : ndarray of bool
    owner : ndarray of int32
        Which mask's box each canvas pixel lies in, -1 outside the boxes.
    tops, lefts : (K,) ndarray of int64
        Where each mask's box lies on the canvas.
    """
    heights = np.array([mask.shape[0] for mask in masks], np.int64)
    widths = np.array([mask.shape[1] for mask in masks], np.int64)
    width = max(int(widths.max()), int(np.sqrt(np.sum((heights + 1) * (widths + 1)))))
    tops = np.zeros(len(masks), np.int64)
    lefts = np.zeros(len(masks), np.int64)
    top, left, shelf = 1, 1, 0
    for k in np.argsort(-heights, kind="stable"):
        if left + widths[k] > width + 1:
            top, left, shelf = top + shelf + 1, 1, 0
        shelf = max(shelf, heights[k])
        tops[k], lefts[k] = top, left
        left += widths[k] + 1
    canvas = np.zeros((top + shelf + 1, width + 2), bool)
    owner = np.full(canvas.shape, -1, np.int32)
    for k, mask in enumerate(masks):
        box = np.s_[tops[k]:tops[k] + heights[k], lefts[k]:lefts[k] + widths[k]]
        canvas[box] = mask
        owner[box] = k
    return canvas, owner, tops, lefts


def _lower_hull_ceilings(x: np.ndarray, y: np.ndarray, segment: np.ndarray, queries: np.ndarray,
                         query_segment: np.ndarray) -> np.ndarray:
    """``ceil(h(q) / 2)`` for the lower convex hull ``h`` of each segment's points.

    In exact integer arithmetic.

    Parameters
    ----------
    x, y : (P,) ndarray of int64
        The points, by segment, and by increasing x within one.
    segment : (P,) ndarray of int64
        The point set each point belongs to, nondecreasing.
    queries : (Q,) ndarray of int64
        x positions, each strictly between the first and last x of its segment.
    query_segment : (Q,) ndarray of int64

    Returns
    -------
    (Q,) ndarray of int64
    """
    # Drop every point on or above the chord of its neighbours until none is: what is left
    # of each segment is convex, its lower hull. A point dropped is no corner of the hull,
    # so dropping all of them at once is safe.
    while True:
        inner = (segment[1:-1] == segment[:-2]) & (segment[1:-1] == segment[2:])
        above = ((y[1:-1] - y[:-2]) * (x[2:] - x[:-2])
                 >= (y[2:] - y[:-2]) * (x[1:-1] - x[:-2]))
        drop = inner & above
        if not drop.any():
            break
        keep = np.concatenate([[True], ~drop, [True]])
        x, y, segment = x[keep], y[keep], segment[keep]
    lowest = x.min()
    span = int(x.max() - lowest) + 1
    after = np.searchsorted(segment * span + (x - lowest),
                            query_segment * span + (queries - lowest))
    x0, y0, x1, y1 = x[after - 1], y[after - 1], x[after], y[after]
    # h(q) = y0 + (y1 - y0) (q - x0) / (x1 - x0), halved and rounded up.
    numerator = y0 * (x1 - x0) + (y1 - y0) * (queries - x0)
    return -(-numerator // (2 * (x1 - x0)))


def _hull_pixel_counts(first: np.ndarray, last: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """The pixel count of scikit-image's convex hull image of each mask.

    :func:`skimage.morphology.convex_hull_image` takes the convex hull of the midpoints of
    the pixels' edges and keeps the pixels whose centres lie in it or on its border; on
    these half-integer coordinates its arithmetic is exact, so that is the number of
    pixel centres in the hull. Counted here row by row in exact integer arithmetic, on
    doubled coordinates (row ``r`` at ``2r``): a row's extent is bounded by the hull of the
    left side's points and that of the right side's.

    Parameters
    ----------
    first, last : (R,) ndarray of int64
        The first and last pixel column of every row of every mask, mask after mask
        (``_FAR`` and -1 for an empty row).
    heights : (K,) ndarray of int64
        The rows of each mask.

    Returns
    -------
    (K,) ndarray of int64
    """
    n = heights.size
    mask_of = np.repeat(np.arange(n), heights)
    starts = np.cumsum(heights) - heights
    row = np.arange(mask_of.size) - starts[mask_of]
    filled = last >= 0
    # Between a row and the next (x = 2 row + 1): the outermost of their pixels' corners
    # there; none below a mask's last row but its own.
    below = np.ones(mask_of.size, bool)
    below[starts + heights - 1] = False
    next_first = np.where(below, np.roll(first, -1), _FAR)
    next_last = np.where(below, np.roll(last, -1), -1)
    cornered = np.minimum(first, next_first) < _FAR
    x = np.insert(np.stack([2 * row, 2 * row + 1], axis=1).ravel(), 2 * starts, -1)
    ok = np.insert(np.stack([filled, cornered], axis=1).ravel(), 2 * starts, True)
    segment = np.insert(np.repeat(mask_of, 2), 2 * starts, np.arange(n))
    points_x, points_y, points_segment = [], [], []
    # The left side: a row's first pixel's left corner, the corners between rows, the top
    # corner of the first row. The right side likewise, negated: its hull is an upper one.
    for side, between, top in (
        (2 * first - 1, 2 * np.minimum(first, next_first), 2 * first[starts]),
        (-2 * last - 1, -2 * np.maximum(last, next_last), -2 * last[starts]),
    ):
        y = np.insert(np.stack([side, between], axis=1).ravel(), 2 * starts, top)
        points_x.append(x[ok])
        points_y.append(y[ok])
        points_segment.append(segment[ok] + len(points_segment) * n)
    ceilings = _lower_hull_ceilings(
        np.concatenate(points_x), np.concatenate(points_y), np.concatenate(points_segment),
        np.tile(2 * row, 2), np.concatenate([mask_of, mask_of + n]))
    per_row = np.maximum(-ceilings[row.size:] - ceilings[:row.size] + 1, 0)
    return np.bincount(mask_of, weights=per_row, minlength=n).astype(np.int64)


def _shapes_of(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Area, coordinate sums, eccentricity, solidity and perimeter of object masks.

    Each as :func:`skimage.measure.regionprops` computes it (default spacing of 1), to the
    bit: the eccentricity from scikit-image's own central moments, then the same float64
    arithmetic on them; the solidity from the exact pixel count of the convex hull image
    (:func:`_hull_pixel_counts`); the perimeter from the same codes of the border pixels.
    All three depend on the mask alone, not on where it lies. Measured for all masks at
    once, laid out on one canvas (:func:`_packed`), but for the central moments.

    Parameters
    ----------
    masks : list of (M, N) ndarray of bool
        Objects in their bounding boxes.

    Returns
    -------
    tuple of (K,) ndarray
        ``(area, row_sum, col_sum, eccentricity, solidity, perimeter)``: the pixel count and
        the sums of the pixels' row and column indices in the box (int64), then float64.
    """
    from skimage.measure import moments_central

    n = len(masks)
    canvas, owner, tops, lefts = _packed(masks)
    # Runs of object pixels along the canvas rows (background all around each box).
    rows, cols = np.nonzero(np.diff(canvas.view(np.int8), axis=1))
    rows, starts, ends = rows[::2], cols[::2] + 1, cols[1::2]
    mask_of = owner[rows, starts].astype(np.int64)
    rows -= tops[mask_of]
    starts -= lefts[mask_of]
    ends -= lefts[mask_of]
    lengths = ends - starts + 1
    # float64 sums of integers below 2**53: exact.
    area = np.bincount(mask_of, weights=lengths, minlength=n).astype(np.int64)
    row_sum = np.bincount(mask_of, weights=rows * lengths, minlength=n).astype(np.int64)
    col_sum = np.bincount(mask_of, weights=(starts + ends) * lengths // 2,
                          minlength=n).astype(np.int64)

    heights = np.array([mask.shape[0] for mask in masks], np.int64)
    row_of = (np.cumsum(heights) - heights)[mask_of] + rows
    first = np.full(heights.sum(), _FAR)
    last = np.full(heights.sum(), -1)
    np.minimum.at(first, row_of, starts)
    np.maximum.at(last, row_of, ends)
    # regionprops: area / convex area, both float64 pixel counts.
    solidity = area / _hull_pixel_counts(first, last, heights).astype(np.float64)

    # Border pixels (a 4-neighbour outside the object: binary erosion by a cross) and their
    # codes. Other pixels of a box have even codes, which weigh 0: adding their zero terms
    # changes no bit of the sum, so their counts are left 0.
    inner = canvas[1:-1, 1:-1]
    border = np.zeros(canvas.shape, np.uint8)
    border[1:-1, 1:-1] = inner & ~(canvas[:-2, 1:-1] & canvas[2:, 1:-1]
                                   & canvas[1:-1, :-2] & canvas[1:-1, 2:])
    r, c = np.nonzero(border)
    # The convolution with _PERIMETER_CODES at those pixels (at most 49: fits uint8).
    codes = sum(int(weight) * border[r + dr - 1, c + dc - 1]
                for (dr, dc), weight in np.ndenumerate(_PERIMETER_CODES))
    histograms = np.bincount(owner[r, c] * 50 + codes, minlength=50 * n).reshape(n, 50)
    # One product per mask, as scikit-image computes it (a matrix product could sum in
    # another order).
    perimeter = np.array([histogram @ _PERIMETER_WEIGHTS for histogram in histograms])

    # regionprops: the central moments about the centroid (its raw moments M[1, 0] /
    # M[0, 0]: integer sums, so the same quotient), the inertia tensor, its eigenvalues
    # clipped at 0, and sqrt(1 - l2 / l1); elementwise, so the same for all masks at once.
    spacing = np.ones(2)
    moments = np.empty((n, 4))
    for k, mask in enumerate(masks):
        centroid = np.array([row_sum[k] / area[k], col_sum[k] / area[k]])
        mu = moments_central(mask.astype(np.uint8), centroid, order=3, spacing=spacing)
        moments[k] = mu[0, 0], mu[2, 0], mu[0, 2], mu[1, 1]
    mu0, mu20, mu02, mu11 = moments.T
    tensor = np.empty((n, 2, 2))
    tensor[:, 0, 0] = (mu20 + mu02 - mu20) / mu0
    tensor[:, 1, 1] = (mu20 + mu02 - mu02) / mu0
    tensor[:, 0, 1] = tensor[:, 1, 0] = -mu11 / mu0
    eigenvalues = np.clip(np.linalg.eigvalsh(tensor), 0, None)
    smaller, larger = eigenvalues[:, 0], eigenvalues[:, 1]
    eccentricity = np.zeros(n)
    elongated = larger != 0
    eccentricity[elongated] = np.sqrt(1 - smaller[elongated] / larger[elongated])
    return area, row_sum, col_sum, eccentricity, solidity, perimeter


# Small images' masks are measured in one batch: below this, batches only add overhead.
_BATCH_MIN_PIXELS = 2**20


def _batches(masks: Iterable[np.ndarray], pixels: int) -> Iterator[list[np.ndarray]]:
    """``masks`` in consecutive groups whose boxes (with a margin) add up to about
    ``pixels``; a larger mask makes a group of its own."""
    group, size = [], 0
    for mask in masks:
        cost = (mask.shape[0] + 1) * (mask.shape[1] + 1)
        if group and size + cost > pixels:
            yield group
            group, size = [], 0
        group.append(mask)
        size += cost
    if group:
        yield group


def measure_objects(objects: np.ndarray, grey: np.ndarray | None, *, image_id: str, method: str,
                    scores: np.ndarray | Sequence[float] | None = None,
                    class_names: Sequence[str] | None = None,
                    shape: bool = True, only: np.ndarray | None = None,
                    origin: tuple[int, int] = (0, 0),
                    image_background: float | None = None) -> dict[str, Any] | None:
    """One row per object of an image, as columns for :data:`OBJECTS_SCHEMA`.

    The measurements are those of :func:`skimage.measure.regionprops_table` (area,
    centroid, bbox, eccentricity, solidity, perimeter, intensity_mean, intensity_max), to
    the bit, without its cost per object: the shape of each distinct object mask is
    measured once, all masks together (:func:`_shapes_of`).

    Parameters
    ----------
    objects : (M, N) ndarray of int
        Object ids 1..K, 0 = background.
    grey : (M, N) ndarray of uint8 or uint16, or None
        The intensity image; None leaves the intensity columns null.
    scores : (K,) array, optional
        The objects' confidences (Mask R-CNN's); default :func:`contrast_scores`.
    class_names : sequence of str, optional
        Per object (Mask R-CNN).
    shape : bool
        Measure shape and intensity (``measure_objects``); False keeps only what
        scoring needs (label, area, bounding box, score), which is much cheaper.
    only : array of int, optional
        Measure only these ids (a region of a larger image: the objects it holds whole
        with the surroundings their score looks at).
    origin : (int, int)
        Where ``objects`` lies in the image: boxes and centroids are in the image's
        coordinates, computed as they are for the whole image.
    image_background : float, optional
        For a region: the whole image's mean background, for :func:`contrast_scores`.

    Returns
    -------
    dict of lists or arrays, or None when the image has no object.
    """
    from scipy.ndimage import find_objects

    boxes = find_objects(objects)
    ids = np.array([i + 1 for i, box in enumerate(boxes) if box is not None], np.intp)
    if only is not None:
        ids = ids[np.isin(ids, only)]
    if ids.size == 0:
        return None
    if scores is None:
        scores = contrast_scores(objects, grey, image_background=image_background)[ids - 1]
    else:
        scores = np.asarray(scores, np.float64)[ids - 1]
    columns = {
        "image_id": [image_id] * ids.size,
        "method": [method] * ids.size,
        "label": ids.astype(np.int32),
        "score": scores,
        "class_name": (
            [class_names[i - 1] for i in ids] if class_names is not None else [None] * ids.size
        ),
        "bbox": np.array([[boxes[i - 1][0].start, boxes[i - 1][1].start,
                           boxes[i - 1][0].stop, boxes[i - 1][1].stop] for i in ids],
                         np.int32).reshape(-1, 4) + np.array(origin * 2, np.int32),
    }
    if not shape:
        columns["area"] = np.bincount(objects.ravel().astype(np.intp))[ids].astype(np.int64)
        return columns

    distinct = {}  # (shape, bytes) of a mask: its index in masks
    masks, mask_of, means, maxima = [], [], [], []
    for i in ids:
        box = boxes[i - 1]
        mask = objects[box] == i
        mask_of.append(distinct.setdefault((mask.shape, mask.tobytes()), len(masks)))
        if mask_of[-1] == len(masks):
            masks.append(mask)
        if grey is not None:
            # The samples regionprops reduces, in its order: the same mean, to the bit.
            inside = grey[box][mask]
            means.append(np.mean(inside))
            maxima.append(inside.max())
    # The canvas of _shapes_of holds the masks' boxes side by side: boxes overlap in the
    # image (instances, nested objects), so it is filled in batches of about the image's
    # size, which keeps memory at a few times the image's whatever the objects.
    budget = max(objects.size, _BATCH_MIN_PIXELS)
    batches = [_shapes_of(batch) for batch in _batches(masks, budget)]
    area, row_sum, col_sum, eccentricity, solidity, perimeter = (
        np.concatenate(column)[mask_of] for column in zip(*batches))
    # regionprops' centroid is the mean of the pixels' float64 coordinates: an exact integer
    # sum divided by the count, as here.
    top_left = columns["bbox"][:, :2].astype(np.int64)
    columns.update(
        area=area,
        centroid_y=(top_left[:, 0] * area + row_sum) / area,
        centroid_x=(top_left[:, 1] * area + col_sum) / area,
        eccentricity=eccentricity,
        solidity=solidity,
        perimeter=perimeter,
    )
    if grey is not None:
        columns.update(mean_intensity=np.array(means, np.float64),
                       max_intensity=np.array(maxima, np.float64))
    return columns


@without_pandas
def objects_table(parts: Iterable[dict[str, Any] | None]) -> pa.Table:
    """Concatenate :func:`measure_objects` results (None skipped) into one table."""
    tables = []
    for columns in parts:
        if columns is None:
            continue
        n = len(columns["label"])
        data = {}
        for field in OBJECTS_SCHEMA:
            value = columns.get(field.name)
            if value is None:
                data[field.name] = pa.nulls(n, field.type)
            elif field.name == "bbox":
                data[field.name] = pa.FixedSizeListArray.from_arrays(
                    pa.array(np.asarray(value, np.int32).ravel()), 4)
            else:
                data[field.name] = pa.array(value, type=field.type)
        tables.append(pa.table(data, schema=OBJECTS_SCHEMA))
    if not tables:
        return OBJECTS_SCHEMA.empty_table()
    return pa.concat_tables(tables)
