"""Scores of a label image against a ground-truth label image of the same shape.

Pure functions: arrays in, numbers out. Label images are 2-D integer arrays with 0 as
background, except class maps, where 0 is a class like the others. Three kinds of ground
truth are known (see `image_scores`): ``"binary"`` (non-zero is foreground), ``"labels"``
(one id per class) and ``"instances"`` (one id per object).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np

from segpipe.rle import encode_mask, encode_objects

TRUTH_KINDS = ("binary", "labels", "instances")

# The IoU thresholds of COCO, written out: np.arange(0.5, 1.0, 0.05) drifts above the
# round values (0.7000000000000002), which would shift matches under a strict ">".
IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

# Ids below this bound are numbered 0..n-1 through a lookup table, in linear time; larger
# ids (or negative ones) go through np.unique, which sorts the pixels.
_LOOKUP_MAX = 1 << 24


def foreground_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Overlap of the foregrounds ``pred > 0`` and ``truth > 0``.

    Parameters
    ----------
    pred, truth : (M, N) ndarray of int or bool
        Label images of the same shape; only whether a pixel is non-zero matters.

    Returns
    -------
    dict of float
        ``iou`` (intersection over union), ``dice``, ``precision`` (share of predicted
        foreground that is true foreground) and ``recall`` (share of true foreground that
        is predicted). Where a denominator is zero the score is 1.0 if both foregrounds
        are empty and 0.0 otherwise.

    Examples
    --------
    >>> pred = np.array([[1, 1, 0, 0]])
    >>> truth = np.array([[0, 2, 2, 0]])
    >>> foreground_scores(pred, truth)
    {'iou': 0.3333333333333333, 'dice': 0.5, 'precision': 0.5, 'recall': 0.5}
    """
    _check_same_shape(pred, truth)
    p = pred > 0
    t = truth > 0
    tp = np.count_nonzero(p & t)
    n_pred = np.count_nonzero(p)
    n_truth = np.count_nonzero(t)
    return _foreground_of(tp, n_pred, n_truth)


def _foreground_of(tp: int, n_pred: int, n_truth: int) -> dict[str, float]:
    both_empty = n_pred == 0 and n_truth == 0
    return {
        "iou": _ratio(tp, n_pred + n_truth - tp, both_empty),
        "dice": _ratio(2 * tp, n_pred + n_truth, both_empty),
        "precision": _ratio(tp, n_pred, both_empty),
        "recall": _ratio(tp, n_truth, both_empty),
    }


def boundary_f1(pred: np.ndarray, truth: np.ndarray, *, tolerance: float = 2,
                background: int | None = 0) -> float:
    """F1 score of the label boundaries, with a distance tolerance.

    A boundary pixel is a pixel with a 4-neighbour of another label. With a
    ``background`` label, its pixels are never boundary pixels, as
    ``skimage.segmentation.find_boundaries(labels, mode="inner")`` marks them: the
    outermost pixel ring of each object, on both sides where two objects touch. Without
    one, every label is a region of a partition and the boundary lies on both sides of
    every label change, as ``mode="thick"`` marks it. The image border is no boundary.

    Parameters
    ----------
    pred, truth : (M, N) ndarray of int
        Label images of the same shape.
    tolerance : float
        A boundary pixel counts as found when a boundary pixel of the other image lies
        within this Euclidean distance in pixels (inclusive; 0 asks for the same pixel).
    background : int or None
        The label that is no region in either image (objects on a background): its
        pixels are never boundary pixels. None: every label is a region, 0 included
        (classes, where 0 is a class too).

    Returns
    -------
    float
        2 P R / (P + R), with precision P the share of predicted boundary pixels near a
        true one and recall R the share of true boundary pixels near a predicted one.
        1.0 if neither image has a boundary, 0.0 if only one has.

    Examples
    --------
    >>> truth = np.zeros((5, 6), dtype=np.uint8)
    >>> truth[1:4, 1:4] = 1
    >>> pred = np.roll(truth, 1, axis=1)
    >>> boundary_f1(pred, truth, tolerance=0)  # 4 of the 8 ring pixels coincide
    0.5
    >>> boundary_f1(pred, truth, tolerance=1)
    1.0

    The same two classes named 0, 1 and 1, 2: one side of the change, or both.

    >>> classes = np.array([[0, 0, 1, 1]] * 3)
    >>> boundary_f1(classes, classes + 1, tolerance=0)  # column 1 is no boundary in pred
    0.6666666666666666
    >>> boundary_f1(classes, classes + 1, tolerance=0, background=None)
    1.0
    """
    _check_same_shape(pred, truth)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pred_edges = _boundaries(pred, background)
    truth_edges = _boundaries(truth, background)
    n_pred = np.count_nonzero(pred_edges)
    n_truth = np.count_nonzero(truth_edges)
    if n_pred == 0 or n_truth == 0:
        return 1.0 if n_pred == n_truth else 0.0
    structure = disk(tolerance)
    return _boundary_f1_of(n_pred, n_truth,
                           np.count_nonzero(pred_edges & _near(truth_edges, structure)),
                           np.count_nonzero(truth_edges & _near(pred_edges, structure)))


def _boundary_f1_of(n_pred: int, n_truth: int, pred_found: int, truth_found: int) -> float:
    if n_pred == 0 or n_truth == 0:
        return 1.0 if n_pred == n_truth else 0.0
    precision = pred_found / n_pred
    recall = truth_found / n_truth
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def label_agreement(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Agreement of two partitions of the pixels, every label (0 included) a part.

    Parameters
    ----------
    pred, truth : (M, N) ndarray of int
        Label images of the same shape; the label values themselves do not matter.

    Returns
    -------
    dict of float
        ``ari``: adjusted Rand index (1.0 for the same partition, about 0 for chance
        agreement; equals ``sklearn.metrics.adjusted_rand_score``). ``vi_split``:
        H(pred | truth) in bits, how much pred splits the true regions (over-segmentation).
        ``vi_merge``: H(truth | pred) in bits, how much pred merges true regions
        (under-segmentation). The two equal
        ``skimage.metrics.variation_of_information(truth, pred)``; both are 0.0 for the
        same partition.

    Examples
    --------
    >>> truth = np.array([[1, 1, 2, 2]])
    >>> label_agreement(np.array([[5, 5, 5, 5]]), truth)  # one label for two regions
    {'ari': 0.0, 'vi_split': 0.0, 'vi_merge': 1.0}
    """
    _check_same_shape(pred, truth)
    return _agreement_of(_contingency(pred, truth))


def object_f1(pred_objects: np.ndarray, truth_objects: np.ndarray, *,
              thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float]:
    """F1 score of objects matched one-to-one by intersection over union.

    Parameters
    ----------
    pred_objects, truth_objects : (M, N) ndarray of int
        Object label maps of the same shape: each non-zero id is one object.
    thresholds : sequence of float
        IoU thresholds, each at least 0.5, for ``object_f1_mean``.

    Returns
    -------
    dict of float
        ``object_f1_50``: 2 TP / (n_pred + n_truth), where TP counts pairs (predicted
        object, true object) with IoU > 0.5. ``object_f1_mean``: the same F1 averaged over
        ``thresholds``. Both are 1.0 when neither map has an object.

    Examples
    --------
    >>> truth = np.array([[1, 1, 1, 1, 0, 2]])
    >>> pred = np.array([[3, 3, 3, 0, 0, 0]])  # IoU 3/4 with object 1; object 2 missed
    >>> object_f1(pred, truth, thresholds=[0.5, 0.8])
    {'object_f1_50': 0.6666666666666666, 'object_f1_mean': 0.3333333333333333}
    """
    _check_same_shape(pred_objects, truth_objects)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or thresholds.min() < 0.5:
        raise ValueError(f"thresholds must be a non-empty list of values >= 0.5, got {thresholds}")
    return _object_f1_of(_contingency(pred_objects, truth_objects), thresholds)


def objects_of(labels: np.ndarray, meaning: str) -> np.ndarray | None:
    """The object label map of a label image, as its labels' meaning defines objects.

    Parameters
    ----------
    labels : (M, N) ndarray of int
    meaning : {"foreground", "instances", "classes", "regions"}
        ``instances``: every non-zero id is one object already. ``foreground``: the objects
        are the 8-connected components of ``labels > 0``. Classes and regions have no
        objects (None).

    Returns
    -------
    (M, N) ndarray of int or None
        ``labels`` itself for instances; int32 component ids 1..n, 0 outside, for a
        foreground, numbered in raster order: a component's id follows the position of
        its first pixel in row-major order, as ``skimage.measure.label`` numbers them.
        None for classes and regions.

    Examples
    --------
    >>> labels = np.array([[0, 0, 0, 1, 1], [2, 2, 0, 0, 0]], dtype=np.uint8)
    >>> objects_of(labels, "foreground")  # (0, 3) comes before (1, 0)
    array([[0, 0, 0, 1, 1],
           [2, 2, 0, 0, 0]], dtype=int32)
    """
    if meaning == "instances":
        return labels
    if meaning != "foreground":
        if meaning not in ("classes", "regions"):
            raise ValueError(f"unknown label meaning {meaning!r}")
        return None
    # OpenCV's default for 8-connectivity (Spaghetti) scans 2x2 blocks, so a component
    # starting at (1, 0) is numbered before one starting at (0, 3). Wu's scan-line
    # algorithm (SAUF) numbers components by their first pixel in row-major order, also
    # when threads label strips of rows, for about 10% more time.
    _, components = cv2.connectedComponentsWithAlgorithm(
        (labels > 0).view(np.uint8), 8, cv2.CV_32S, cv2.CCL_SAUF
    )
    return components


# Truth kinds as label meanings: binary and class truth have objects as components.
TRUTH_MEANING = {"binary": "foreground", "labels": "foreground", "instances": "instances"}


# Above this many detection x truth pairs in one image, MaskAP computes the IoUs of the
# pairs whose boxes meet only: the full table of a 3.4e8-pixel scan's 180,000 nuclei
# would be 3.3e10 floats (243 GiB).
DENSE_IOU_PAIRS = 4_000_000
# The side of the grid cells that find the boxes a box meets (_sparse_matches).
_CELL = 256


def _sparse_matches(detections: Sequence[Mapping[str, Any]],
                    truth: Sequence[Mapping[str, Any]], thresholds: np.ndarray) -> np.ndarray:
    """:class:`MaskAP`'s matching of detections (ranked by falling score) to true objects,
    with the IoUs of the pairs whose bounding boxes meet only; the same matches as the
    full table gives, since a pair whose boxes do not meet has IoU 0 and every threshold
    is above 0. Its candidates are kept in the truth's order, so ties go as they do there:
    to the last true object of the largest IoU."""
    from pycocotools import mask as mask_utils

    det_boxes = np.asarray(mask_utils.toBbox(list(detections)), np.float64).reshape(-1, 4)
    true_boxes = np.asarray(mask_utils.toBbox(list(truth)), np.float64).reshape(-1, 4)
    cells: dict[tuple[int, int], list[int]] = {}
    for g, (x, y, w, h) in enumerate(true_boxes):
        for cy in range(int(y // _CELL), int((y + max(h, 1) - 1) // _CELL) + 1):
            for cx in range(int(x // _CELL), int((x + max(w, 1) - 1) // _CELL) + 1):
                cells.setdefault((cy, cx), []).append(g)
    matches = np.zeros(len(detections), np.uint16)
    taken = np.zeros((thresholds.size, len(truth)), bool)
    least = np.minimum(thresholds, 1 - 1e-10)
    for d, (x, y, w, h) in enumerate(det_boxes):
        near = {g for cy in range(int(y // _CELL), int((y + max(h, 1) - 1) // _CELL) + 1)
                for cx in range(int(x // _CELL), int((x + max(w, 1) - 1) // _CELL) + 1)
                for g in cells.get((cy, cx), ())}
        if not near:
            continue
        near_ids = np.array(sorted(near), np.intp)
        gx, gy, gw, gh = true_boxes[near_ids].T
        meet = (gx < x + w) & (x < gx + gw) & (gy < y + h) & (y < gy + gh)
        near_ids = near_ids[meet]
        if near_ids.size == 0:
            continue
        ious = np.asarray(mask_utils.iou([detections[d]], [truth[g] for g in near_ids],
                                         [0] * near_ids.size), np.float64).ravel()
        for t in range(thresholds.size):
            candidates = np.where(taken[t, near_ids] | (ious < least[t]), -1.0, ious)
            m = candidates.size - 1 - int(np.argmax(candidates[::-1]))
            if candidates[m] >= 0:
                taken[t, near_ids[m]] = True
                matches[d] |= np.uint16(1 << t)
    return matches


class MaskAP:
    """Class-agnostic COCO mask average precision, accumulated one image at a time.

    The same matching and precision-recall arithmetic as pycocotools' ``COCOeval``
    (iouType "segm", one category, all object sizes, no crowd regions), with two
    differences that make it hold on real data:

    - Memory follows one image: :meth:`add_image` matches that image's detections and
      keeps only their scores and match flags (10 booleans each), never masks.
    - Every detection counts (COCOeval keeps the ``maxDets`` best per image), and the
      result does not depend on the order images or detections arrive in: detections are
      ranked by falling score, ties broken by image key, then by the detection's position
      in its image's list (COCOeval breaks ties by the order it was given things).

    ``tests/test_evaluation.py`` checks it against ``COCOeval`` on random images.
    """

    def __init__(self, thresholds: Sequence[float] = IOU_THRESHOLDS) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.thresholds.size > 16:
            raise ValueError("at most 16 IoU thresholds (match flags are 16-bit)")
        self.n_truth = 0
        self.images = 0
        # Per detection only: its score, its image's number and its match at each
        # threshold as one bit of a uint16: 14 bytes, all that the ranking needs.
        self._scores, self._images, self._matches = [], [], []
        self._keys = []

    def add_image(self, key: str, truth_rles: Sequence[Mapping[str, Any]],
                  detections: Sequence[Mapping[str, Any]],
                  scores: Sequence[float] | np.ndarray) -> None:
        """Match one image's detections to its true objects.

        Parameters
        ----------
        key : str
            The image's key; sorts ties between images.
        truth_rles : list of dict
            COCO RLEs of the true objects.
        detections : list of dict
            COCO RLEs of the detected objects, in a deterministic order (e.g. by label).
        scores : sequence of float
            One confidence per detection.
        """
        from pycocotools import mask as mask_utils

        scores = np.asarray(scores, dtype=np.float64)
        if len(detections) != scores.size:
            raise ValueError(f"{key}: {len(detections)} detections but {scores.size} scores")
        number = self.images
        self.images += 1
        self.n_truth += len(truth_rles)
        self._keys.append(str(key))
        if not detections:
            return
        order = np.argsort(-scores, kind="stable")
        matches = np.zeros(order.size, dtype=np.uint16)
        ranked = [detections[i] for i in order]
        if truth_rles and (order.size * len(truth_rles) <= DENSE_IOU_PAIRS
                           or self.thresholds.min() <= 0):
            ious = np.asarray(mask_utils.iou(ranked, truth_rles, [0] * len(truth_rles)),
                              dtype=np.float64)
            ious = ious.reshape(order.size, len(truth_rles))
            for t, threshold in enumerate(self.thresholds):
                taken = np.zeros(len(truth_rles), dtype=bool)
                least = min(threshold, 1 - 1e-10)
                for d in range(order.size):
                    candidates = np.where(taken | (ious[d] < least), -1.0, ious[d])
                    # COCOeval keeps the last true object of the largest IoU.
                    m = candidates.size - 1 - int(np.argmax(candidates[::-1]))
                    if candidates[m] >= 0:
                        taken[m] = True
                        matches[d] |= np.uint16(1 << t)
        elif truth_rles:
            matches = _sparse_matches(ranked, truth_rles, self.thresholds)
        self._scores.append(scores[order])
        self._images.append(np.full(order.size, number, dtype=np.int32))
        self._matches.append(matches)

    def result(self) -> dict[str, float]:
        """``coco_ap`` (mean over the IoU thresholds), ``coco_ap50``, ``coco_ap75``.

        NaN each if no image has a true object; 0.0 if there is no detection at all.
        Memory: about 50 bytes per detection while ranking them.
        """
        names = ("coco_ap", "coco_ap50", "coco_ap75")
        if self.n_truth == 0:
            return dict.fromkeys(names, float("nan"))
        if not self._scores:
            return dict.fromkeys(names, 0.0)
        # Falling score; ties by image key, not arrival; within an image, the stable sort
        # keeps the image's own order (falling score, then position).
        key_rank = np.empty(len(self._keys), dtype=np.int32)
        key_rank[np.argsort(np.array(self._keys, dtype=object), kind="stable")] = np.arange(
            len(self._keys), dtype=np.int32)
        order = np.lexsort((key_rank[np.concatenate(self._images)],
                            -np.concatenate(self._scores)))
        matches = np.concatenate(self._matches)[order]
        del order
        points = np.linspace(0.0, 1.0, 101)
        ranks = np.arange(1, matches.size + 1, dtype=np.float64)
        per_threshold = np.empty(self.thresholds.size)
        for t in range(self.thresholds.size):
            tp = np.cumsum((matches >> t) & 1, dtype=np.int64)
            recall = tp / self.n_truth
            # The precision envelope: the best precision at this recall or any higher one.
            precision = np.maximum.accumulate((tp / ranks)[::-1])[::-1]
            index = np.searchsorted(recall, points, side="left")
            reached = index < recall.size
            at = precision[np.minimum(index, recall.size - 1)]
            per_threshold[t] = np.where(reached, at, 0.0).mean()
        return {
            "coco_ap": float(per_threshold.mean()),
            "coco_ap50": float(per_threshold[np.isclose(self.thresholds, 0.5)].mean()),
            "coco_ap75": float(per_threshold[np.isclose(self.thresholds, 0.75)].mean()),
        }


def coco_mask_ap(
    truth_by_image: Mapping[str, np.ndarray],
    pred_by_image: Mapping[str, Sequence[tuple[np.ndarray, float]]],
) -> dict[str, float]:
    """Class-agnostic COCO mask average precision over a set of images (:class:`MaskAP`).

    Parameters
    ----------
    truth_by_image : dict
        Image key -> (M, N) object label map of int (each non-zero id is one object).
        Images without objects are allowed; their detections are all false positives.
    pred_by_image : dict
        Image key -> list of ``(mask, score)``: an (M, N) bool mask of one detected object
        and its confidence. Every key must be in ``truth_by_image``; an image missing
        here has no detections.

    Returns
    -------
    dict of float
        ``coco_ap`` (AP averaged over IoU 0.5:0.95), ``coco_ap50`` and ``coco_ap75``. NaN if
        no image has a true object; 0.0 if there is no detection at all.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2]])
    >>> ap = coco_mask_ap({"a": truth}, {"a": [(truth == 1, 0.9)]})  # object 2 missed
    >>> round(ap["coco_ap50"], 4)  # precision 1 at 51 of the 101 recall points 0, 0.01, ..
    0.505
    """
    unknown = set(pred_by_image) - set(truth_by_image)
    if unknown:
        names = sorted(map(str, unknown))
        raise ValueError(f"predictions for images without ground truth: {names}")
    ap = MaskAP()
    for key, truth in truth_by_image.items():
        predictions = pred_by_image.get(key, ())
        for mask, _ in predictions:
            if mask.shape != truth.shape:
                raise ValueError(
                    f"image {key!r}: mask shape {mask.shape} differs from truth shape {truth.shape}"
                )
        ap.add_image(key, encode_objects(truth), [encode_mask(m) for m, _ in predictions],
                     [s for _, s in predictions])
    return ap.result()


def image_scores(pred: np.ndarray, truth: np.ndarray, *, truth_kind: str, pred_meaning: str,
                 tolerance: float) -> dict[str, float | None]:
    """All per-image scores of a method's label image against the ground truth.

    Which scores apply follows what the method's labels mean (``pred_meaning``); the
    others are None, rather than numbers that mean nothing.

    Parameters
    ----------
    pred : (M, N) ndarray of int
        The method's label image.
    truth : (M, N) ndarray of int
        Ground truth, read according to ``truth_kind``.
    truth_kind : {"binary", "labels", "instances"}
        ``binary``: non-zero is foreground; its objects are the connected components.
        ``labels``: one id per class; its objects are the connected components of the
        foreground. ``instances``: one id per object.
    pred_meaning : {"foreground", "classes", "regions", "instances"}
        See :data:`segpipe.methods.base.LABEL_MEANINGS`.
    tolerance : float
        Distance tolerance of `boundary_f1`, in pixels.

    Returns
    -------
    dict
        ``iou``, ``dice``, ``precision``, ``recall`` (`foreground_scores`): for foreground
        and instances only. ``boundary_f1``: always; against binary truth, the boundaries
        of the foregrounds (binary truth has none between touching objects), or of the
        method's classes or regions. For classes, every label is a class, 0 included,
        and the boundaries of both images lie on both sides of every label change
        (``background=None``); otherwise 0 is the background of both images and its
        pixels are no boundary. ``ari``, ``vi_split``, ``vi_merge``
        (`label_agreement`): always, but None against binary truth, which is no partition
        to agree with. ``object_f1_50``, ``object_f1_mean`` (`object_f1` over
        `IOU_THRESHOLDS`, on :func:`objects_of` both maps): foreground and instances only.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> pred = np.array([[1, 1, 0, 1, 1]])  # one label, two objects
    >>> scores = image_scores(pred, truth, truth_kind="instances", pred_meaning="foreground",
    ...                       tolerance=1)
    >>> scores["object_f1_50"], scores["vi_split"], scores["vi_merge"]
    (1.0, 0.0, 0.8)
    >>> image_scores(pred, truth, truth_kind="instances", pred_meaning="classes",
    ...              tolerance=1)["iou"] is None
    True
    """
    if truth_kind not in TRUTH_KINDS:
        raise ValueError(f"truth_kind must be one of {TRUTH_KINDS}, got {truth_kind!r}")
    _check_same_shape(pred, truth)
    has_objects = pred_meaning in ("foreground", "instances")
    if has_objects:
        scores = foreground_scores(pred, truth)
    else:
        objects_of(pred, pred_meaning)  # checks the meaning
        scores = dict.fromkeys(("iou", "dice", "precision", "recall"))
    # A class map has no background: k-means' darkest cluster is class 0. Dropping its
    # side of each boundary would score a renamed copy of a partition below 1 (2/3 for
    # two classes at tolerance 0).
    background = None if pred_meaning == "classes" else 0
    if truth_kind == "binary":
        pred_boundaries = pred > 0 if has_objects else pred
        scores["boundary_f1"] = boundary_f1(pred_boundaries, truth > 0, tolerance=tolerance,
                                            background=background)
        scores.update(ari=None, vi_split=None, vi_merge=None)
        label_table = None
    else:
        scores["boundary_f1"] = boundary_f1(pred, truth, tolerance=tolerance,
                                            background=background)
        label_table = _contingency(pred, truth)
        scores.update(_agreement_of(label_table))
    if not has_objects:
        scores.update(object_f1_50=None, object_f1_mean=None)
        return scores
    if pred_meaning == "instances" and truth_kind == "instances":
        # Both label maps are object maps already: their table is the one just built.
        object_table = label_table
    else:
        object_table = _contingency(
            objects_of(pred, pred_meaning), objects_of(truth, TRUTH_MEANING[truth_kind])
        )
    scores.update(_object_f1_of(object_table, np.asarray(IOU_THRESHOLDS)))
    return scores



class TiledScores:
    """:func:`image_scores` of a label image seen one block at a time; the same numbers.

    Every score is a function of counts that add up over blocks that partition the
    image: the foreground overlap, the boundary pixels and those matched within the
    tolerance, and the contingency tables of the labels and of the objects (sparse, one
    count per pair of labels that share pixels, merged by the labels' global ids). The
    tables are merged in the order the whole image's are built, so the floating-point
    sums over them, and every score, equal the whole image's to the bit
    (``tests/test_tiled_finish.py``).

    Parameters
    ----------
    truth_kind, pred_meaning, tolerance
        As for :func:`image_scores`.

    Attributes
    ----------
    halo : int
        The pixels each block must be read with around its core, for the boundaries: a
        boundary pixel looks at its 4-neighbours, and is matched within ``tolerance``.
    """

    def __init__(self, *, truth_kind: str, pred_meaning: str, tolerance: float) -> None:
        if truth_kind not in TRUTH_KINDS:
            raise ValueError(f"truth_kind must be one of {TRUTH_KINDS}, got {truth_kind!r}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        objects_of(np.zeros((1, 1), np.uint8), pred_meaning)  # checks the meaning
        self.truth_kind, self.meaning = truth_kind, pred_meaning
        self.has_objects = pred_meaning in ("foreground", "instances")
        self.background = None if pred_meaning == "classes" else 0
        self.structure = disk(tolerance)
        self.halo = int(np.floor(tolerance)) + 1
        self._foreground = np.zeros(3, np.int64)  # tp, pred, truth
        self._boundary = np.zeros(4, np.int64)  # pred, truth, pred found, truth found
        self._labels: list[np.ndarray] = []
        self._objects: list[np.ndarray] = []

    @property
    def needs_objects(self) -> bool:
        """Whether :meth:`add` needs the object maps (foreground and instances)."""
        return self.has_objects

    def add(self, pred: np.ndarray, truth: np.ndarray, inner: tuple[slice, slice], *,
            pred_objects: np.ndarray | None = None,
            truth_objects: np.ndarray | None = None) -> None:
        """Count one block (:meth:`count`, then :meth:`merge`)."""
        self.merge(self.count(pred, truth, inner, pred_objects=pred_objects,
                              truth_objects=truth_objects))

    def count(self, pred: np.ndarray, truth: np.ndarray, inner: tuple[slice, slice], *,
              pred_objects: np.ndarray | None = None,
              truth_objects: np.ndarray | None = None) -> tuple:
        """The counts of one block, for :meth:`merge`; changes nothing, so blocks can be
        counted on several threads at once.

        Parameters
        ----------
        pred, truth : (h, w) ndarray of int
            The labels of the block's core and up to :attr:`halo` pixels around it
            (clipped at the image's border), with the same global ids as the whole image.
        inner : (slice, slice)
            The core within them.
        pred_objects, truth_objects : ndarray of int, optional
            The object maps of the core alone (:func:`objects_of` of the whole image,
            its global component numbers), when :attr:`needs_objects`.
        """
        _check_same_shape(pred, truth)
        core_pred, core_truth = pred[inner], truth[inner]
        foreground = (0, 0, 0)
        label_pairs = object_pairs = None
        if self.has_objects:
            p, t = core_pred > 0, core_truth > 0
            foreground = (np.count_nonzero(p & t), np.count_nonzero(p), np.count_nonzero(t))
        if self.truth_kind == "binary":
            pred_side = pred > 0 if self.has_objects else pred
            pred_edges = _boundaries(pred_side, self.background)
            truth_edges = _boundaries(truth > 0, self.background)
        else:
            pred_edges = _boundaries(pred, self.background)
            truth_edges = _boundaries(truth, self.background)
            label_pairs = _pair_counts(core_pred, core_truth)
        near_truth = _near(truth_edges, self.structure)[inner]
        near_pred = _near(pred_edges, self.structure)[inner]
        pred_edges, truth_edges = pred_edges[inner], truth_edges[inner]
        boundary = (np.count_nonzero(pred_edges), np.count_nonzero(truth_edges),
                    np.count_nonzero(pred_edges & near_truth),
                    np.count_nonzero(truth_edges & near_pred))
        if self.has_objects and not (self.meaning == "instances"
                                     and self.truth_kind == "instances"):
            if pred_objects is None or truth_objects is None:
                raise ValueError("the object maps of the block are needed")
            object_pairs = _pair_counts(pred_objects, truth_objects)
        return foreground, boundary, label_pairs, object_pairs

    def merge(self, counts: tuple) -> None:
        """Add the counts of one block (:meth:`count`)."""
        foreground, boundary, label_pairs, object_pairs = counts
        self._foreground += foreground
        self._boundary += boundary
        if label_pairs is not None:
            self._labels.append(label_pairs)
        if object_pairs is not None:
            self._objects.append(object_pairs)

    def result(self) -> dict[str, float | None]:
        """The scores, as :func:`image_scores` gives them for the whole image."""
        if self.has_objects:
            scores = _foreground_of(*(int(v) for v in self._foreground))
        else:
            scores = dict.fromkeys(("iou", "dice", "precision", "recall"))
        scores["boundary_f1"] = _boundary_f1_of(*(int(v) for v in self._boundary))
        label_table = None
        if self.truth_kind == "binary":
            scores.update(ari=None, vi_split=None, vi_merge=None)
        else:
            label_table = _merged_table(self._labels)
            scores.update(_agreement_of(label_table))
        if not self.has_objects:
            scores.update(object_f1_50=None, object_f1_mean=None)
            return scores
        if self.meaning == "instances" and self.truth_kind == "instances":
            object_table = label_table
        else:
            object_table = _merged_table(self._objects)
        scores.update(_object_f1_of(object_table, np.asarray(IOU_THRESHOLDS)))
        return scores


def _pair_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(K, 3)`` int64: each (pred id, truth id) pair of a block and its pixel count."""
    table = _contingency(pred, truth)
    return np.stack([table.pred_ids[table.rows].astype(np.int64),
                     table.truth_ids[table.cols].astype(np.int64),
                     table.overlap.astype(np.int64)], axis=1)


def _merged_table(parts: Sequence[np.ndarray]) -> _Table:
    """The contingency table of the whole image from its blocks' pair counts: pairs in the
    order :func:`_contingency` lists them (by pred id, then truth id)."""
    pairs = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    new = np.ones(len(pairs), bool)
    new[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    starts = np.flatnonzero(new)
    overlap = np.add.reduceat(pairs[:, 2], starts) if starts.size else np.zeros(0, np.int64)
    pred, truth = pairs[starts, 0], pairs[starts, 1]
    pred_ids, rows = np.unique(pred, return_inverse=True)
    truth_ids, cols = np.unique(truth, return_inverse=True)
    pred_sizes = np.bincount(rows, weights=overlap, minlength=pred_ids.size).astype(np.int64)
    truth_sizes = np.bincount(cols, weights=overlap, minlength=truth_ids.size).astype(np.int64)
    return _Table(pred_ids, truth_ids, pred_sizes, truth_sizes, rows.ravel(), cols.ravel(),
                  overlap)

class _Table(NamedTuple):
    """Sparse contingency table of two label images: only pairs that share pixels."""

    pred_ids: np.ndarray  # (P,) labels present in pred, ascending
    truth_ids: np.ndarray  # (T,) labels present in truth, ascending
    pred_sizes: np.ndarray  # (P,) pixels of each pred label
    truth_sizes: np.ndarray  # (T,) pixels of each truth label
    rows: np.ndarray  # (K,) index into pred_ids of each overlapping pair
    cols: np.ndarray  # (K,) index into truth_ids
    overlap: np.ndarray  # (K,) pixels the pair shares, > 0


def _contingency(pred: np.ndarray, truth: np.ndarray) -> _Table:
    pred_ids, pred_sizes, pred_index = _compact(pred)
    truth_ids, truth_sizes, truth_index = _compact(truth)
    n_cols = truth_ids.size
    pairs = pred_index * n_cols + truth_index
    if pred_ids.size * n_cols <= pairs.size:
        counts = np.bincount(pairs, minlength=pred_ids.size * n_cols)
        cells = np.flatnonzero(counts)
        overlap = counts[cells]
    else:
        # A dense table would be larger than the image (many labels on both sides).
        cells, overlap = np.unique(pairs, return_counts=True)
    return _Table(
        pred_ids, truth_ids, pred_sizes, truth_sizes, cells // n_cols, cells % n_cols, overlap
    )


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels present (ascending), their pixel counts, and each pixel's index into them."""
    flat = labels.ravel()
    if flat.dtype == np.bool_:
        # Indexing the lookup table with bools would select, not gather.
        flat = flat.view(np.uint8)
    if flat.size and flat.min() >= 0 and flat.max() < _LOOKUP_MAX:
        if not np.can_cast(flat.dtype, np.intp):
            # bincount refuses uint64 even for small values.
            flat = flat.astype(np.intp)
        sizes = np.bincount(flat)
        ids = np.flatnonzero(sizes)
        lookup = np.zeros(sizes.size, dtype=np.intp)
        lookup[ids] = np.arange(ids.size)
        return ids, sizes[ids], lookup[flat]
    ids, index, sizes = np.unique(flat, return_inverse=True, return_counts=True)
    return ids, sizes, index.ravel()


def _agreement_of(table: _Table) -> dict[str, float]:
    n = int(table.pred_sizes.sum())
    # Pair counts as in sklearn's pair_confusion_matrix (ordered pairs), in Python ints:
    # products of pair counts overflow int64 beyond about 55,000 pixels.
    same_both = int(np.sum(table.overlap.astype(np.int64) ** 2))
    same_pred = int(np.sum(table.pred_sizes.astype(np.int64) ** 2))
    same_truth = int(np.sum(table.truth_sizes.astype(np.int64) ** 2))
    tp = same_both - n
    fp = same_pred - same_both
    fn = same_truth - same_both
    tn = n * n - fp - fn - same_both
    if fp == 0 and fn == 0:
        ari = 1.0
    else:
        ari = 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    # H(A | B) = sum over cells of p(a, b) * log2(p(b) / p(a, b)): every term is >= 0.
    p_cell = table.overlap / n
    split = np.sum(p_cell * np.log2(table.truth_sizes[table.cols] / table.overlap))
    merge = np.sum(p_cell * np.log2(table.pred_sizes[table.rows] / table.overlap))
    return {"ari": float(ari), "vi_split": float(split), "vi_merge": float(merge)}


def _object_f1_of(table: _Table, thresholds: np.ndarray) -> dict[str, float]:
    n_pred = np.count_nonzero(table.pred_ids)
    n_truth = np.count_nonzero(table.truth_ids)
    if n_pred + n_truth == 0:
        return {"object_f1_50": 1.0, "object_f1_mean": 1.0}
    objects = (table.pred_ids[table.rows] != 0) & (table.truth_ids[table.cols] != 0)
    overlap = table.overlap[objects]
    union = (
        table.pred_sizes[table.rows[objects]] + table.truth_sizes[table.cols[objects]] - overlap
    )
    iou = overlap / union
    # IoU > 0.5 means the overlap holds more than half of each object's pixels. Objects
    # of one map are disjoint, so a true object has at most one predicted object with
    # IoU > 0.5 and vice versa: pairs above a threshold >= 0.5 are a one-to-one matching
    # and their count is the number of true positives.
    matched = np.count_nonzero(iou[:, None] > thresholds[None, :], axis=0)
    f1 = 2 * matched / (n_pred + n_truth)
    return {
        "object_f1_50": float(2 * np.count_nonzero(iou > 0.5) / (n_pred + n_truth)),
        "object_f1_mean": float(f1.mean()),
    }


def _boundaries(labels: np.ndarray, background: int | None) -> np.ndarray:
    """Pixels with a 4-neighbour of another label, outside ``background`` unless it is
    None, as bool."""
    # Equals find_boundaries(labels, mode="inner", background=background), or
    # mode="thick" for None, which take a grey dilation and erosion of the whole image
    # and are much slower on a megapixel.
    edges = np.zeros(labels.shape, dtype=bool)
    across = labels[:, 1:] != labels[:, :-1]
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    down = labels[1:, :] != labels[:-1, :]
    edges[1:, :] |= down
    edges[:-1, :] |= down
    if background is not None:
        edges &= labels != background
    return edges


def disk(radius: float) -> np.ndarray:
    """uint8 structuring element of the offsets within Euclidean distance ``radius``.

    >>> disk(1).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return (dy * dy + dx * dx <= radius * radius).view(np.uint8)


def _near(edges: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Pixels within the radius of the disk ``structure`` of a pixel of ``edges`` (bool)."""
    # Dilating by the disk compares integer squared offsets, so it is exact; for the
    # few-pixel tolerances of boundary matching it is tens of times faster than a distance
    # transform of the image, though its cost grows with the disk's area.
    return cv2.dilate(edges.view(np.uint8), structure).view(bool)


def _check_same_shape(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")


def _ratio(numerator: int | np.integer, denominator: int | np.integer,
           both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return float(numerator / denominator)
