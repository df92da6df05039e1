"""Per-object measurements and the deterministic confidence of classical objects.

One row per object of an image (its instances, or the connected components of its
foreground; :func:`segpipe.evaluation.objects_of`) goes to
``results/objects/{method}/{shard}.parquet``, gathered into ``summary/objects.parquet``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

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


def grey_of(image):
    """The grey image of a decoded image: itself, or the BT.601 luma of an RGB image."""
    from segpipe.imageio import luma

    return image if image.ndim == 2 else luma(image)


def contrast_scores(objects, grey, *, margin=SCORE_MARGIN):
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
    image_background = values[background].mean() if sizes[0] else None
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


def measure_objects(objects, grey, *, image_id, method, scores=None, class_names=None,
                    shape=True):
    """One row per object of an image, as columns for :data:`OBJECTS_SCHEMA`.

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

    Returns
    -------
    dict of lists or arrays, or None when the image has no object.
    """
    ids = np.unique(objects)
    ids = ids[ids != 0]
    if ids.size == 0:
        return None
    if scores is None:
        scores = contrast_scores(objects, grey)[ids - 1]
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
    }
    if shape:
        from skimage.measure import regionprops_table

        properties = ["label", "area", "centroid", "bbox", "eccentricity", "solidity",
                      "perimeter"]
        if grey is not None:
            properties += ["intensity_mean", "intensity_max"]
        table = regionprops_table(objects, intensity_image=grey, properties=properties)
        columns.update(
            area=table["area"].astype(np.int64),
            centroid_y=table["centroid-0"], centroid_x=table["centroid-1"],
            bbox=np.stack([table[f"bbox-{k}"] for k in range(4)], axis=1).astype(np.int32),
            eccentricity=table["eccentricity"], solidity=table["solidity"],
            perimeter=table["perimeter"],
        )
        if grey is not None:
            columns.update(mean_intensity=table["intensity_mean"].astype(np.float64),
                           max_intensity=table["intensity_max"].astype(np.float64))
    else:
        from scipy.ndimage import find_objects

        boxes = find_objects(objects)
        columns["area"] = np.bincount(objects.ravel().astype(np.intp))[ids].astype(np.int64)
        columns["bbox"] = np.array(
            [[boxes[i - 1][0].start, boxes[i - 1][1].start, boxes[i - 1][0].stop,
              boxes[i - 1][1].stop] for i in ids], np.int32)
    return columns


def objects_table(parts):
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
