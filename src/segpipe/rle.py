"""COCO run-length encoding (RLE): the one encoder of the project.

COCO RLE lists the lengths of alternating runs of 0 and 1 over the mask read in column-major
(Fortran) order, starting with a run of 0 (possibly empty). pycocotools' ``encode`` wants a
full-size Fortran-ordered uint8 copy of every mask; for many small objects in a large image
that copy is most of the cost. Here the runs are found inside each object's bounding box
(its crop), as the sorted positions where runs of 1 start and end ("boundaries"), and only
the final, short step, compressing the run lengths into COCO's text form, is left to
pycocotools (``frPyObjects``), so every RLE in segpipe is byte-identical to what
pycocotools itself would write.

The device side of Mask R-CNN (``segpipe.maskrcnn.postprocess``) finds the same boundaries
with torch on the GPU; :func:`counts_from_boundaries` and :func:`compress` finish them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def crop_boundaries(crop: np.ndarray, *, top: int, left: int, height: int) -> np.ndarray:
    """Where runs of 1 of a box crop start and end, as positions in the full image.

    Parameters
    ----------
    crop : (h, w) ndarray of bool
        The mask inside its box; the mask is 0 outside the box.
    top, left : int
        The box's first row and column in the full image.
    height : int
        The full image's height (the column length of the column-major order).

    Returns
    -------
    (2k,) ndarray of int64
        Ascending: start of run 1, end (exclusive) of run 1, start of run 2, ...

    Examples
    --------
    >>> crop = np.array([[1, 0], [1, 1]], bool)
    >>> crop_boundaries(crop, top=1, left=0, height=3).tolist()  # column 0: rows 1-2, column 1: row 2
    [1, 3, 5, 6]
    """
    padded = np.zeros((crop.shape[1], crop.shape[0] + 2), np.int8)
    padded[:, 1:-1] = crop.T
    column, row = np.nonzero(np.diff(padded, axis=1))
    return (left + column.astype(np.int64)) * height + top + row


def counts_from_boundaries(boundaries: np.ndarray | Sequence[int], height: int,
                           width: int) -> np.ndarray:
    """COCO run lengths from ascending run boundaries over an image of ``height x width``.

    A run that ends at the bottom of one column and one that starts at the top of the next
    are one run in column-major order: their shared boundary is dropped.

    >>> counts_from_boundaries(np.array([1, 3, 3, 4]), 2, 2).tolist()
    [1, 3]
    >>> counts_from_boundaries(np.array([], np.int64), 2, 3).tolist()
    [6]
    """
    boundaries = np.asarray(boundaries, dtype=np.int64)
    if boundaries.size > 1:
        shared = boundaries[1:] == boundaries[:-1]
        if shared.any():
            keep = np.ones(boundaries.size, bool)
            keep[1:][shared] = False
            keep[:-1][shared] = False
            boundaries = boundaries[keep]
    total = height * width
    edges = np.concatenate(([0], boundaries, [total]))
    counts = np.diff(edges)
    # pycocotools ends the list with the last run of 1 when the mask ends in 1.
    if boundaries.size and boundaries[-1] == total:
        counts = counts[:-1]
    return counts.astype(np.uint32)


def compress(counts_list: Sequence[np.ndarray], height: int,
             width: int) -> list[dict[str, Any]]:
    """COCO compressed RLEs (``counts`` as ASCII text) from run-length arrays.

    Returns
    -------
    list of dict
        ``{"size": [height, width], "counts": str}``, one per array.
    """
    from pycocotools import mask as mask_utils

    if not len(counts_list):
        return []
    size = [int(height), int(width)]
    rles = mask_utils.frPyObjects([{"size": size, "counts": c} for c in counts_list], *size)
    return [{"size": size, "counts": r["counts"].decode("ascii")} for r in rles]


def encode_crops(crops: Iterable[np.ndarray], boxes: Iterable[tuple[int, int]], height: int,
                 width: int) -> list[dict[str, Any]]:
    """Compressed RLE of each mask given by its crop.

    Parameters
    ----------
    crops : sequence of (h, w) ndarray of bool
    boxes : sequence of (top, left)
        Where each crop's first pixel is in the full image.
    height, width : int
    """
    counts = [
        counts_from_boundaries(crop_boundaries(c, top=t, left=l, height=height), height, width)
        for c, (t, l) in zip(crops, boxes)
    ]
    return compress(counts, height, width)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of one (M, N) bool mask.

    >>> rle = encode_mask(np.array([[0, 1], [0, 1]], bool))
    >>> rle["size"], decode(rle).astype(int).tolist()
    ([2, 2], [[0, 1], [0, 1]])
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return encode_crops([mask[:0, :0]], [(0, 0)], *mask.shape)[0]
    cols = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return encode_crops([crop], [(rows[0], cols[0])], *mask.shape)[0]


def encode_objects(objects: np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLE of each object of an object label map, in id order (absent ids skipped).

    >>> [decode(r).astype(int).tolist() for r in encode_objects(np.array([[1, 0, 2]]))]
    [[[1, 0, 0]], [[0, 0, 1]]]
    """
    # Imported here so that jobs without ground truth do not pay for scipy.ndimage.
    from scipy import ndimage as ndi

    crops, corners = [], []
    for object_id, box in enumerate(ndi.find_objects(objects), start=1):
        if box is None:
            continue
        crops.append(objects[box] == object_id)
        corners.append((box[0].start, box[1].start))
    return encode_crops(crops, corners, *objects.shape)


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """An (M, N) bool mask from a compressed RLE whose ``counts`` is text or bytes."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": [int(s) for s in rle["size"]], "counts": counts}).astype(bool)
