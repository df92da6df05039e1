import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.metrics import variation_of_information
from skimage.segmentation import find_boundaries
from sklearn.metrics import adjusted_rand_score

from segpipe.evaluation import (
    IOU_THRESHOLDS,
    boundary_f1,
    coco_mask_ap,
    foreground_scores,
    image_scores,
    label_agreement,
    object_f1,
    objects_of,
)


def square(shape, rows, cols, value=1, dtype=np.uint16):
    labels = np.zeros(shape, dtype)
    labels[rows[0] : rows[1], cols[0] : cols[1]] = value
    return labels


def random_objects(seed, shape=(40, 40), n=10):
    """Truth rectangles and predicted rectangles jittered from them, plus a few extra."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    pred = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 8, 2)
        h, w = rng.integers(3, 9, 2)
        truth[y : y + h, x : x + w] = i
        dy, dx, dh, dw = rng.integers(-2, 3, 4)
        py, px = max(y + dy, 0), max(x + dx, 0)
        pred[py : py + max(h + dh, 1), px : px + max(w + dw, 1)] = 7 * i  # ids need not be 1..n
    return pred, truth


# ---- foreground_scores ----


def test_foreground_scores_by_hand():
    pred = np.array([
        [7, 7, 0, 0],
        [7, 7, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ])
    truth = np.array([
        [0, 1, 2, 2],
        [0, 1, 2, 2],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ])
    # Foregrounds: pred 4 pixels, truth 6; both at (0,1) and (1,1): TP 2, FP 2, FN 4.
    scores = foreground_scores(pred, truth)
    assert scores == pytest.approx({
        "iou": 2 / 8,  # TP / (TP + FP + FN)
        "dice": 4 / 10,  # 2 TP / (2 TP + FP + FN)
        "precision": 2 / 4,  # TP / (TP + FP)
        "recall": 2 / 6,  # TP / (TP + FN)
    })


@pytest.mark.parametrize(
    ("pred_fg", "truth_fg", "expected"),
    [
        # Both empty: every denominator is zero and the images agree.
        (False, False, {"iou": 1.0, "dice": 1.0, "precision": 1.0, "recall": 1.0}),
        # Nothing predicted: precision's denominator is zero, but the images disagree.
        (False, True, {"iou": 0.0, "dice": 0.0, "precision": 0.0, "recall": 0.0}),
        # No truth: recall's denominator is zero, but the images disagree.
        (True, False, {"iou": 0.0, "dice": 0.0, "precision": 0.0, "recall": 0.0}),
    ],
)
def test_foreground_scores_empty_conventions(pred_fg, truth_fg, expected):
    pred = square((4, 4), (1, 3), (1, 3)) * pred_fg
    truth = square((4, 4), (0, 2), (0, 4)) * truth_fg
    assert foreground_scores(pred, truth) == expected


# ---- boundary_f1 ----


@pytest.mark.parametrize(("tolerance", "expected"), [(0, 0.5), (1, 22 / 23), (1.5, 1.0)])
def test_boundary_f1_by_hand(tolerance, expected):
    truth = square((6, 6), (1, 5), (1, 5))  # 4x4 square: ring of 16 - 4 = 12 pixels
    pred = square((6, 6), (1, 4), (1, 4))  # 3x3 square: ring of 9 - 1 = 8 pixels
    # Tolerance 0: the rings share (1,1), (1,2), (1,3), (2,1), (3,1): P = 5/8, R = 5/12,
    # F1 = 2*5 / (8 + 12) = 0.5.
    # Tolerance 1: pred's (2,3), (3,2), (3,3) lie 1 from truth's (2,4), (4,2), (4,3): P = 1.
    # Truth's corner (4,4) is sqrt(2) from pred's nearest, (3,3); the other 11 are within
    # 1: R = 11/12, F1 = 2 * 11/12 / (1 + 11/12) = 22/23.
    # Tolerance 1.5 >= sqrt(2) takes the corner too: F1 = 1.
    assert boundary_f1(pred, truth, tolerance=tolerance) == pytest.approx(expected)


def test_boundary_f1_counts_boundaries_between_touching_labels():
    truth = np.array([[1, 1, 2, 2]] * 4)  # boundary: columns 1 and 2, no background
    assert boundary_f1(np.array([[5, 5, 9, 9]] * 4), truth, tolerance=0) == 1.0  # ids differ
    assert boundary_f1(np.ones((4, 4), int), truth) == 0.0  # pred has no boundary


def test_boundary_f1_empty_conventions():
    empty = np.zeros((5, 5), int)
    full = np.full((5, 5), 3)  # one label over the whole image: the border is no boundary
    blob = square((5, 5), (1, 4), (1, 4))
    assert boundary_f1(empty, full) == 1.0
    assert boundary_f1(empty, blob) == 0.0
    assert boundary_f1(blob, full) == 0.0


def test_boundary_f1_of_classes_counts_both_sides_of_every_change():
    # The same two classes, named 0, 1 in pred and 1, 2 in truth (k-means' classes
    # against a label mask): a partition against itself.
    pred = np.array([[0, 0, 1, 1]] * 4)
    truth = pred + 1
    # Every label a class: both images' boundaries are columns 1 and 2, 8 pixels each.
    assert boundary_f1(pred, truth, tolerance=0, background=None) == 1.0
    # 0 as background: pred's boundary is column 2 only (4 pixels), truth's columns 1 and
    # 2: P = 4/4, R = 4/8, F1 = 2/3, the score of the bug.
    assert boundary_f1(pred, truth, tolerance=0) == pytest.approx(2 / 3)


def test_boundary_f1_of_classes_against_a_finer_partition_by_hand():
    pred = np.array([[0, 0, 1, 1, 2, 2]] * 4)  # three classes in bands of two columns
    truth = np.array([[0, 0, 1, 1, 1, 1]] * 4)
    # Pred's boundary: columns 1, 2, 3, 4 (16 pixels); truth's: columns 1, 2 (8 pixels).
    # Tolerance 0: P = 8/16, R = 1, F1 = 2 * 0.5 / 1.5 = 2/3.
    assert boundary_f1(pred, truth, tolerance=0, background=None) == pytest.approx(2 / 3)
    # Tolerance 1 takes column 3 (1 from column 2) too, not column 4: P = 12/16, F1 = 6/7.
    assert boundary_f1(pred, truth, tolerance=1, background=None) == pytest.approx(6 / 7)


def reference_boundary_f1(pred, truth, tolerance, mode="inner"):
    """Direct reading of the definition with scikit-image and scipy."""
    pred_edges = find_boundaries(pred, mode=mode)
    truth_edges = find_boundaries(truth, mode=mode)
    precision = np.mean(ndi.distance_transform_edt(~truth_edges)[pred_edges] <= tolerance)
    recall = np.mean(ndi.distance_transform_edt(~pred_edges)[truth_edges] <= tolerance)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tolerance", [0, 1, 1.5, 2, 3])
def test_boundary_f1_matches_distance_transform_reference(seed, tolerance):
    pred, truth = random_objects(seed)
    assert boundary_f1(pred, truth, tolerance=tolerance) == pytest.approx(
        reference_boundary_f1(pred, truth, tolerance)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tolerance", [0, 1, 2])
def test_boundary_f1_without_background_matches_thick_boundaries(seed, tolerance):
    pred, truth = random_objects(seed)
    # Renamed so that 0 is one class among others, not always the largest region.
    pred, truth = (pred * 3) % 5, truth % 4
    assert boundary_f1(pred, truth, tolerance=tolerance, background=None) == pytest.approx(
        reference_boundary_f1(pred, truth, tolerance, mode="thick")
    )


def test_boundary_f1_rejects_negative_tolerance():
    blob = square((5, 5), (1, 4), (1, 4))
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(blob, blob, tolerance=-1)


# ---- label_agreement ----


def test_label_agreement_by_hand():
    truth = np.array([[1, 1, 1], [2, 2, 2]])
    pred = np.array([[1, 1, 1], [2, 2, 3]])  # truth region 2 split into 2 + 1 pixels
    # Rand: 15 pixel pairs; same region in truth 3 + 3 = 6, in pred 3 + 1 = 4, in both 4.
    # Expected both = 6 * 4 / 15 = 1.6, max = (6 + 4) / 2 = 5: ARI = (4 - 1.6) / (5 - 1.6).
    # Split H(pred | truth): region 1 is one pred label (0 bits); region 2, half the
    # pixels, holds pred labels in shares 2/3, 1/3: (1/2) * (log2(3) - 2/3) bits.
    # Merge H(truth | pred): every pred label lies inside one truth region: 0 bits.
    expected_split = 0.5 * (math.log2(3) - 2 / 3)
    assert label_agreement(pred, truth) == pytest.approx(
        {"ari": 2.4 / 3.4, "vi_split": expected_split, "vi_merge": 0.0}
    )
    # Swapping the roles swaps split and merge; the Rand index is symmetric.
    assert label_agreement(truth, pred) == pytest.approx(
        {"ari": 2.4 / 3.4, "vi_split": 0.0, "vi_merge": expected_split}
    )


def test_label_agreement_of_a_relabelled_partition_is_perfect():
    truth = np.array([[0, 0, 1], [2, 2, 1]])
    pred = np.array([[9, 9, 0], [4, 4, 0]])  # same parts, other numbers (0 is a part too)
    assert label_agreement(pred, truth) == {"ari": 1.0, "vi_split": 0.0, "vi_merge": 0.0}


def renumbered(labels):
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("n_pred", "n_truth", "offset"),
    [
        (2, 2, 0),
        (3, 7, 0),
        (100, 100, 0),  # more label pairs than pixels: the sparse table path
        (5, 4, 2**40),  # huge ids: numbered through np.unique
    ],
)
def test_label_agreement_matches_sklearn_and_skimage(seed, n_pred, n_truth, offset):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_truth, (20, 30)).astype(np.int64) + offset
    # Pred follows truth on about half the pixels, so the scores are not all near 0.
    noise = rng.integers(0, n_pred, truth.shape)
    pred = np.where(rng.random(truth.shape) < 0.5, truth % n_pred, noise)
    pred = pred.astype(np.uint16) if offset == 0 else pred.astype(np.int64) * 3 + offset
    scores = label_agreement(pred, truth)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(truth.ravel(), pred.ravel()))
    # skimage sizes its table by the largest id; VI depends only on the partition, so the
    # reference gets the ids renumbered 0..n-1.
    split, merge = variation_of_information(image0=renumbered(truth), image1=renumbered(pred))
    assert scores["vi_split"] == pytest.approx(split)
    assert scores["vi_merge"] == pytest.approx(merge)


def test_label_agreement_on_bool_masks_matches_sklearn():
    rng = np.random.default_rng(3)
    pred = rng.random((10, 10)) < 0.5
    truth = rng.random((10, 10)) < 0.3
    ari = label_agreement(pred, truth)["ari"]
    assert ari == pytest.approx(adjusted_rand_score(truth.ravel(), pred.ravel()))


# ---- object_f1 ----


def test_object_f1_iou_between_thresholds():
    truth = square((4, 7), (1, 3), (1, 6))  # 2x5 = 10 pixels
    pred = truth.copy()
    pred[2, 3:6] = 0  # pred keeps 7 of them: IoU 7/10 = 0.7
    # IoU 0.7 exceeds 0.5, 0.55, 0.6, 0.65 but not 0.7 .. 0.95: F1 1 at 4 of 10 thresholds.
    assert object_f1(pred, truth) == pytest.approx({"object_f1_50": 1.0, "object_f1_mean": 0.4})
    # Add a missed truth object and a false positive: TP 1 of 2 + 2 objects, F1 = 2/4
    # at the 4 thresholds that match and 0 at the other 6.
    truth[0, 0] = 2
    pred[3, 6] = 5
    assert object_f1(pred, truth) == pytest.approx({"object_f1_50": 0.5, "object_f1_mean": 0.2})


def test_object_f1_iou_of_exactly_one_half_is_no_match():
    truth = square((2, 10), (0, 1), (0, 10))  # 10 pixels
    pred = square((2, 10), (0, 1), (0, 5))  # 5 of them: IoU 5/10
    assert object_f1(pred, truth)["object_f1_50"] == 0.0
    pred[0, 5] = 1  # 6 of them: IoU 0.6
    assert object_f1(pred, truth)["object_f1_50"] == 1.0


def test_object_f1_split_and_merge_match_at_most_once():
    truth = square((3, 12), (0, 1), (0, 10))  # one object of 10 pixels
    split = truth.copy()
    split[0, 6:10] = 2  # pred objects of 6 and 4 pixels: IoU 0.6 and 0.4
    # One match; 2 pred + 1 truth objects: F1 = 2 * 1 / 3.
    assert object_f1(split, truth)["object_f1_50"] == pytest.approx(2 / 3)

    truth[2, 0:2] = 2  # a second truth object of 2 pixels
    merged = (truth > 0).astype(np.uint16)  # one pred object over both: IoU 10/12 and 2/12
    # One match; 1 pred + 2 truth objects: F1 = 2/3 at thresholds below 10/12 = 0.833
    # (0.5 .. 0.8, seven of ten), else 0: mean 0.7 * 2/3.
    assert object_f1(merged, truth) == pytest.approx(
        {"object_f1_50": 2 / 3, "object_f1_mean": 0.7 * 2 / 3}
    )


def reference_object_f1(pred, truth, threshold):
    """Maximum matching of pairs with IoU > threshold, by the Hungarian method."""
    pred_ids = np.unique(pred[pred > 0])
    truth_ids = np.unique(truth[truth > 0])
    iou = np.array([
        [np.sum((pred == p) & (truth == t)) / np.sum((pred == p) | (truth == t)) for t in truth_ids]
        for p in pred_ids
    ]).reshape(pred_ids.size, truth_ids.size)
    rows, cols = linear_sum_assignment(iou > threshold, maximize=True)
    matched = np.count_nonzero(iou[rows, cols] > threshold)
    return 2 * matched / (pred_ids.size + truth_ids.size)


@pytest.mark.parametrize("seed", range(5))
def test_object_f1_matches_hungarian_reference(seed):
    pred, truth = random_objects(seed)
    scores = object_f1(pred, truth)
    reference = [reference_object_f1(pred, truth, t) for t in IOU_THRESHOLDS]
    assert scores["object_f1_50"] == pytest.approx(reference[0])
    assert scores["object_f1_mean"] == pytest.approx(np.mean(reference))
    assert 0 < scores["object_f1_mean"] < scores["object_f1_50"]  # the case is not trivial


def test_object_f1_empty_conventions():
    empty = np.zeros((4, 4), int)
    blob = square((4, 4), (1, 3), (1, 3))
    assert object_f1(empty, empty) == {"object_f1_50": 1.0, "object_f1_mean": 1.0}
    assert object_f1(blob, empty) == {"object_f1_50": 0.0, "object_f1_mean": 0.0}
    assert object_f1(empty, blob) == {"object_f1_50": 0.0, "object_f1_mean": 0.0}


def test_object_f1_rejects_thresholds_below_one_half():
    blob = square((4, 4), (1, 3), (1, 3))
    with pytest.raises(ValueError, match="0.5"):
        object_f1(blob, blob, thresholds=[0.3, 0.5])


# ---- objects_of ----


def test_objects_of_instances_is_the_input():
    labels = np.array([[1, 2], [0, 2]], np.uint16)
    assert objects_of(labels, "instances") is labels


def test_objects_of_labels_are_8_connected_components_of_the_foreground():
    labels = np.array([
        [1, 2, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 5],
        [0, 0, 5, 0],
    ], np.uint8)
    objects = objects_of(labels, "foreground")
    np.testing.assert_array_equal(objects > 0, labels > 0)
    assert objects[0, 0] == objects[0, 1]  # touching labels 1 and 2: one object
    assert objects[2, 3] == objects[3, 2]  # diagonal neighbours: one object
    assert objects[0, 0] != objects[2, 3]
    assert set(np.unique(objects)) == {0, 1, 2}


def test_objects_of_a_foreground_numbers_components_by_their_first_pixel():
    # OpenCV's default 8-connected labelling scans 2x2 blocks and reaches (1, 0) before
    # (0, 3); row-major order reaches (0, 3) first.
    labels = np.array([
        [0, 0, 0, 1],
        [1, 0, 0, 0],
    ], np.uint8)
    np.testing.assert_array_equal(objects_of(labels, "foreground"), [[0, 0, 0, 1], [2, 0, 0, 0]])


def many_small_objects(seed, shape=(300, 400)):
    """A foreground of a few thousand specks and small blobs of every shape."""
    rng = np.random.default_rng(seed)
    return (ndi.uniform_filter(rng.random(shape), 3) > 0.62).astype(np.uint8)


@pytest.fixture
def threads():
    """Set OpenCV's thread count for one test (threads label strips of rows)."""
    import cv2

    before = cv2.getNumThreads()
    yield cv2.setNumThreads
    cv2.setNumThreads(before)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_threads", [1, 4])
def test_objects_of_a_foreground_numbers_like_scikit_image(seed, n_threads, threads):
    from skimage.measure import label

    threads(n_threads)
    foreground = many_small_objects(seed)
    objects = objects_of(foreground * 3, "foreground")
    expected = label(foreground, connectivity=2)
    assert expected.max() > 500
    assert objects.dtype == np.int32
    np.testing.assert_array_equal(objects, expected)


@pytest.mark.parametrize("meaning", ["classes", "regions"])
def test_classes_and_regions_have_no_objects(meaning):
    assert objects_of(np.array([[0, 1], [2, 2]], np.uint8), meaning) is None
    with pytest.raises(ValueError, match="meaning"):
        objects_of(np.zeros((2, 2), np.uint8), "stuff")


# ---- coco_mask_ap ----


def two_objects():
    truth = np.zeros((8, 8), np.uint16)
    truth[1:4, 1:4] = 1
    truth[5:7, 4:8] = 2
    return truth


def test_coco_ap_of_perfect_predictions_is_one():
    truth = two_objects()
    other = np.zeros((6, 5), np.uint16)
    other[2:5, 1:3] = 4  # ids need not be 1..n
    preds = {
        "a": [(truth == 1, 0.9), (truth == 2, 0.8)],
        "b": [(other == 4, 0.3)],
    }
    ap = coco_mask_ap({"a": truth, "b": other}, preds)
    assert ap == {"coco_ap": 1.0, "coco_ap50": 1.0, "coco_ap75": 1.0}


def test_coco_ap_with_one_of_two_objects_missed():
    truth = two_objects()
    ap = coco_mask_ap({"a": truth}, {"a": [(truth == 1, 0.9)]})
    # Recall reaches 1/2 at precision 1: COCO's interpolated precision is 1 at the 51
    # recall points 0, 0.01, .., 0.50 and 0 at the 50 above, at every IoU threshold.
    assert ap == pytest.approx({"coco_ap": 51 / 101, "coco_ap50": 51 / 101, "coco_ap75": 51 / 101})


@pytest.mark.parametrize(("false_score", "expected"), [(0.9, 0.5), (0.1, 1.0)])
def test_coco_ap_depends_on_the_rank_of_a_false_positive(false_score, expected):
    truth = square((8, 8), (1, 4), (1, 4))
    wrong = square((8, 8), (5, 7), (5, 7)).astype(bool)
    ap = coco_mask_ap({"a": truth}, {"a": [(truth == 1, 0.5), (wrong, false_score)]})
    # Ranked first, the false positive leaves precision 1/2 when recall reaches 1, and
    # interpolated precision is 1/2 everywhere; ranked last it costs nothing.
    assert ap == pytest.approx(dict.fromkeys(("coco_ap", "coco_ap50", "coco_ap75"), expected))


def test_coco_ap_of_a_partial_mask():
    truth = square((7, 7), (1, 6), (1, 6))  # 5x5 = 25 pixels
    mask = truth == 1
    mask[5, :] = False  # drop the bottom row (5 pixels)
    mask[4, 1:3] = False  # and 2 more: 18 of 25, IoU 0.72
    ap = coco_mask_ap({"a": truth}, {"a": [(mask, 1.0)]})
    # COCO matches at IoU >= t: t = 0.5 .. 0.7 (5 of 10) with AP 1, others 0.
    assert ap == pytest.approx({"coco_ap": 0.5, "coco_ap50": 1.0, "coco_ap75": 0.0})


def test_coco_ap_counts_detections_on_images_without_objects():
    truth = two_objects()
    empty = np.zeros((8, 8), np.uint16)
    preds = {
        "a": [(truth == 1, 0.5), (truth == 2, 0.4)],
        "empty": [(truth == 1, 0.9)],  # a false positive ranked above both true ones
    }
    ap = coco_mask_ap({"a": truth, "empty": empty}, preds)
    # Ranked FP, TP, TP: recall 1/2 at precision 1/2, recall 1 at precision 2/3;
    # interpolated precision is 2/3 at every recall point.
    assert ap == pytest.approx(dict.fromkeys(("coco_ap", "coco_ap50", "coco_ap75"), 2 / 3))


def test_coco_ap_keeps_more_than_100_detections_per_image():
    truth = np.zeros((36, 30), np.uint16)
    for i in range(120):  # a 12 x 10 grid of 2x2 objects, 1 pixel apart
        row, col = divmod(i, 10)
        truth[3 * row : 3 * row + 2, 3 * col : 3 * col + 2] = i + 1
    preds = [(truth == i + 1, 1.0 - i / 1000) for i in range(120)]
    # COCO's default of 100 detections per image would cap recall at 100/120.
    assert coco_mask_ap({"a": truth}, {"a": preds})["coco_ap"] == pytest.approx(1.0)


def test_coco_ap_without_detections_is_zero_and_without_objects_nan():
    truth = two_objects()
    assert coco_mask_ap({"a": truth}, {}) == {"coco_ap": 0.0, "coco_ap50": 0.0, "coco_ap75": 0.0}
    empty = np.zeros((8, 8), np.uint16)
    ap = coco_mask_ap({"a": empty}, {"a": [(truth == 1, 0.9)]})
    assert all(math.isnan(v) for v in ap.values()) and len(ap) == 3


def test_coco_ap_rejects_unknown_images_and_wrong_mask_shapes():
    truth = two_objects()
    with pytest.raises(ValueError, match="without ground truth"):
        coco_mask_ap({"a": truth}, {"b": [(truth == 1, 0.9)]})
    with pytest.raises(ValueError, match=r"\(8, 7\).*\(8, 8\)"):
        coco_mask_ap({"a": truth}, {"a": [(truth[:, :7] == 1, 0.9)]})


# ---- image_scores ----

METRICS = {
    "iou", "dice", "precision", "recall", "boundary_f1",
    "ari", "vi_split", "vi_merge", "object_f1_50", "object_f1_mean",
}


def split_square():
    """A 4x4 square as truth; pred splits it into two touching 4x2 labels."""
    truth = square((6, 6), (1, 5), (1, 5))
    pred = truth.copy()
    pred[1:5, 3:5] = 2
    return pred, truth


def test_image_scores_binary_truth_compares_foregrounds():
    pred, truth = split_square()
    scores = image_scores(pred, truth * 255, truth_kind="binary", pred_meaning="foreground", tolerance=0)
    assert set(scores) == METRICS
    assert scores["ari"] is None and scores["vi_split"] is None and scores["vi_merge"] is None
    # Same foreground and outline; pred's line between its labels does not count.
    assert scores["iou"] == 1.0 and scores["boundary_f1"] == 1.0
    # Pred's two labels form one connected object, as truth's foreground does.
    assert scores["object_f1_50"] == 1.0


def test_image_scores_labels_truth_counts_internal_boundaries_and_instances():
    pred, truth = split_square()
    scores = image_scores(pred, truth, truth_kind="labels", pred_meaning="instances", tolerance=0)
    # Each pred label is 4x2 and all of it boundary: 16 pixels, 12 on truth's ring.
    # P = 12/16, R = 1: F1 = 2 * 0.75 / 1.75 = 6/7.
    assert scores["boundary_f1"] == pytest.approx(6 / 7)
    # As instances, pred has two 8-pixel objects: IoU 8/16 with truth's one, no match.
    assert scores["object_f1_50"] == 0.0
    # Truth region 1 (16 pixels, of 36) is split in halves: 16/36 bit of split.
    assert scores["vi_split"] == pytest.approx(16 / 36) and scores["vi_merge"] == 0.0


@pytest.mark.parametrize("truth_kind", ["binary", "labels", "instances"])
@pytest.mark.parametrize("meaning", ["instances", "foreground"])
def test_image_scores_combines_the_single_metrics(truth_kind, meaning):
    pred, truth = random_objects(4)
    scores = image_scores(
        pred, truth, truth_kind=truth_kind, pred_meaning=meaning, tolerance=1
    )
    expected = foreground_scores(pred, truth)
    if truth_kind == "binary":
        expected["boundary_f1"] = boundary_f1(pred > 0, truth > 0, tolerance=1)
        expected.update(ari=None, vi_split=None, vi_merge=None)
    else:
        expected["boundary_f1"] = boundary_f1(pred, truth, tolerance=1)
        expected.update(label_agreement(pred, truth))
    expected.update(object_f1(
        objects_of(pred, meaning),
        objects_of(truth, "instances" if truth_kind == "instances" else "foreground"),
    ))
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize("truth_kind", ["binary", "labels", "instances"])
@pytest.mark.parametrize("meaning", ["classes", "regions"])
def test_image_scores_of_classes_and_regions_leave_foreground_and_object_scores_null(
    truth_kind, meaning
):
    pred, truth = random_objects(5)
    scores = image_scores(pred, truth, truth_kind=truth_kind, pred_meaning=meaning, tolerance=1)
    assert set(scores) == METRICS
    for name in ("iou", "dice", "precision", "recall", "object_f1_50", "object_f1_mean"):
        assert scores[name] is None, name
    # Partition scores still apply: boundaries of the classes or regions themselves;
    # 0 is a class of its own, but the background of regions (edges' 0 is no region).
    background = None if meaning == "classes" else 0
    if truth_kind == "binary":
        assert scores["boundary_f1"] == boundary_f1(pred, truth > 0, tolerance=1,
                                                    background=background)
        assert scores["ari"] is None
    else:
        assert scores["boundary_f1"] == boundary_f1(pred, truth, tolerance=1,
                                                    background=background)
        assert scores["ari"] == pytest.approx(label_agreement(pred, truth)["ari"])


@pytest.mark.parametrize("truth_kind", ["labels", "instances"])
def test_image_scores_of_classes_score_their_own_partition_as_perfect(truth_kind):
    classes = np.zeros((6, 6), np.uint8)  # k-means' classes 0, 1, 2: every pixel in one
    classes[:, 2:4] = 1
    classes[3:, 4:] = 2
    for truth in (classes + 1, classes):  # renamed (no 0) or the same names (0 = background)
        scores = image_scores(classes, truth, truth_kind=truth_kind, pred_meaning="classes",
                              tolerance=0)
        assert scores["boundary_f1"] == 1.0 and scores["ari"] == 1.0


def test_image_scores_of_two_classes_against_binary_truth_by_hand():
    pred = np.array([[0, 0, 1, 1, 2, 2]] * 4)
    truth = np.array([[0, 0, 255, 255, 255, 255]] * 4, np.uint8)
    # Both sides of every change: pred columns 1-4 (16 pixels), truth 1-2 (8). P = 1/2,
    # R = 1: F1 = 2/3 (with only non-zero labels' rings, P = 4/12: F1 = 1/2).
    scores = image_scores(pred, truth, truth_kind="binary", pred_meaning="classes",
                          tolerance=0)
    assert scores["boundary_f1"] == pytest.approx(2 / 3)
    scores = image_scores(pred[:, :4], truth[:, :4], truth_kind="binary",
                          pred_meaning="classes", tolerance=0)
    assert scores["boundary_f1"] == 1.0  # two classes where truth is 0 and 255


@pytest.mark.parametrize("meaning", ["foreground", "instances", "regions"])
def test_image_scores_keep_zero_as_background_for_other_meanings(meaning):
    pred = np.array([[0, 0, 1, 1]] * 4)
    # Truth 1, 2: its boundary is columns 1 and 2; pred's only column 2 (0 is background):
    # P = 1, R = 1/2, F1 = 2/3.
    scores = image_scores(pred, pred + 1, truth_kind="instances", pred_meaning=meaning,
                          tolerance=0)
    assert scores["boundary_f1"] == pytest.approx(2 / 3)


def test_image_scores_rejects_different_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        image_scores(
            np.zeros((4, 4), int), np.zeros((4, 5), int),
            truth_kind="instances", pred_meaning="instances", tolerance=2,
        )


def test_image_scores_rejects_unknown_truth_kind():
    blob = square((4, 4), (1, 3), (1, 3))
    with pytest.raises(ValueError, match="truth_kind"):
        image_scores(blob, blob, truth_kind="semantic", pred_meaning="instances", tolerance=2)


# ---- MaskAP against pycocotools' COCOeval ----


def cocoeval_ap(truth_by_image, pred_by_image):
    """pycocotools' own COCOeval, every detection kept: the reference MaskAP must equal."""
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from segpipe.rle import encode_mask, encode_objects

    images, annotations, detections = [], [], []
    for number, (key, truth) in enumerate(truth_by_image.items(), start=1):
        images.append({"id": number, "height": truth.shape[0], "width": truth.shape[1]})
        for rle in encode_objects(truth):
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": 1,
                                "iscrowd": 0, "segmentation": rle,
                                "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist()})
        for mask, score in pred_by_image.get(key, ()):
            detections.append({"image_id": number, "category_id": 1,
                               "segmentation": encode_mask(mask), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        truth_coco = COCO()
        truth_coco.dataset = {"images": images, "annotations": annotations,
                              "categories": [{"id": 1, "name": "object"}]}
        truth_coco.createIndex()
        evaluation = COCOeval(truth_coco, truth_coco.loadRes(detections), iouType="segm")
        evaluation.params.maxDets = [10_000]
        evaluation.params.areaRng = [evaluation.params.areaRng[0]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, 0]
    return {"coco_ap": precision.mean(), "coco_ap50": precision[0].mean(),
            "coco_ap75": precision[5].mean()}


@pytest.mark.parametrize("seed", range(6))
def test_mask_ap_equals_cocoeval_with_overlapping_detections(seed):
    rng = np.random.default_rng(seed)
    truth_by_image, pred_by_image = {}, {}
    for k in range(3):
        pred, truth = random_objects(100 * seed + k, n=8)
        truth_by_image[f"img{k}"] = truth
        masks = [pred == i for i in np.unique(pred) if i]
        # Overlapping duplicates and random blobs, distinct scores (ties aside, COCOeval
        # breaks ties by arrival order; MaskAP by image key).
        masks += [np.roll(m, 1, axis=1) for m in masks[:3]]
        masks += [rng.random(truth.shape) < 0.02 for _ in range(2)]
        scores = rng.permutation(len(masks)) / len(masks) + k * 1e-3
        pred_by_image[f"img{k}"] = list(zip(masks, scores))
    assert coco_mask_ap(truth_by_image, pred_by_image) == pytest.approx(
        cocoeval_ap(truth_by_image, pred_by_image), abs=1e-12)


def test_mask_ap_does_not_depend_on_the_order_of_images_or_equal_scores():
    pairs = [random_objects(s, n=6) for s in range(4)]
    truth = {f"i{k}": t for k, (_, t) in enumerate(pairs)}
    # Every detection scored 1, as classical objects were: only order could rank them.
    preds = {f"i{k}": [(p == i, 1.0) for i in np.unique(p) if i] for k, (p, _) in enumerate(pairs)}
    first = coco_mask_ap(truth, preds)
    rng = np.random.default_rng(0)
    for _ in range(3):
        keys = list(rng.permutation(list(truth)))
        shuffled_truth = {k: truth[k] for k in keys}
        shuffled_preds = {k: preds[k] for k in reversed(keys)}
        assert coco_mask_ap(shuffled_truth, shuffled_preds) == first


def test_mask_ap_counts_every_detection_beyond_a_thousand():
    truth = np.zeros((99, 99), np.int32)
    truth[::3, ::3] = np.arange(1, 33 * 33 + 1).reshape(33, 33)  # 1089 one-pixel objects
    preds = [(truth == i, 0.5) for i in range(1, 33 * 33 + 1)]
    assert coco_mask_ap({"a": truth}, {"a": preds})["coco_ap"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_mask_ap_of_boxes_that_meet_equals_the_full_table(seed, monkeypatch):
    # Images with more pairs than DENSE_IOU_PAIRS get IoUs only where boxes meet: the same
    # matches, ties included (duplicates of a mask, equal IoUs), so the same AP exactly.
    from segpipe import evaluation

    rng = np.random.default_rng(seed)
    truth_by_image, pred_by_image = {}, {}
    for k in range(2):
        pred, truth = random_objects(50 * seed + k, n=10)
        truth_by_image[f"img{k}"] = truth
        masks = [pred == i for i in np.unique(pred) if i]
        masks += [m.copy() for m in masks[:2]] + [np.roll(m, 2, axis=0) for m in masks[2:5]]
        masks += [rng.random(truth.shape) < 0.01, np.zeros(truth.shape, bool)]
        scores = rng.integers(0, 4, len(masks)) / 4  # many ties
        pred_by_image[f"img{k}"] = list(zip(masks, scores))
    dense = coco_mask_ap(truth_by_image, pred_by_image)
    monkeypatch.setattr(evaluation, "DENSE_IOU_PAIRS", 0)
    monkeypatch.setattr(evaluation, "_CELL", 7)  # boxes over several cells
    assert coco_mask_ap(truth_by_image, pred_by_image) == dense
    assert 0 < dense["coco_ap"] < 1
