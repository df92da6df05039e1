"""Per-object measurements, classical object scores, and the streamed COCO AP of a method."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from segpipe.ground_truth import GroundTruth
from segpipe.imageio import read_label_image, write_png
from segpipe.measure import OBJECTS_SCHEMA, contrast_scores, measure_objects, objects_table
from segpipe.method_scores import method_coco_ap, write_method_coco_ap


def scene():
    grey = np.full((30, 40), 20, np.uint8)
    objects = np.zeros((30, 40), np.int32)
    objects[3:9, 4:12] = 1
    grey[3:9, 4:12] = 220
    objects[15:25, 20:26] = 2
    grey[15:25, 20:26] = 120
    objects[26:28, 35:37] = 4  # id 3 absent
    grey[26:28, 35:37] = 30
    return objects, grey


def test_measurements_are_scikit_images_regionprops():
    from skimage.measure import regionprops

    objects, grey = scene()
    columns = measure_objects(objects, grey, image_id="a.png", method="m")
    table = objects_table([columns])
    assert table.schema == OBJECTS_SCHEMA
    rows = table.to_pylist()
    assert [r["label"] for r in rows] == [1, 2, 4]
    for row, region in zip(rows, regionprops(objects, intensity_image=grey)):
        assert row["area"] == region.area and isinstance(row["area"], int)
        assert row["bbox"] == list(region.bbox)
        assert (row["centroid_y"], row["centroid_x"]) == pytest.approx(region.centroid)
        assert row["eccentricity"] == pytest.approx(region.eccentricity)
        assert row["solidity"] == pytest.approx(region.solidity)
        assert row["perimeter"] == pytest.approx(region.perimeter)
        assert row["mean_intensity"] == pytest.approx(region.intensity_mean)
        assert row["max_intensity"] == region.intensity_max
        assert row["image_id"] == "a.png" and row["method"] == "m" and row["class_name"] is None


def test_a_foregrounds_objects_are_numbered_in_raster_order():
    from segpipe.evaluation import objects_of

    foreground = np.zeros((8, 10), np.uint8)
    foreground[0, 6:9] = 1  # first pixel (0, 6)
    foreground[1:4, 0:2] = 1  # (1, 0): a scan of 2x2 blocks reaches it before (0, 6)
    foreground[5:7, 3:5] = 1  # (5, 3)
    grey = foreground * 200
    columns = measure_objects(objects_of(foreground, "foreground"), grey, image_id="a",
                              method="m")
    rows = objects_table([columns]).to_pylist()
    assert [(r["label"], r["bbox"]) for r in rows] == [
        (1, [0, 6, 1, 9]), (2, [1, 0, 4, 2]), (3, [5, 3, 7, 5])
    ]


def test_without_measuring_only_what_scoring_needs_is_kept():
    objects, grey = scene()
    full = objects_table([measure_objects(objects, grey, image_id="a", method="m")])
    lean = objects_table([measure_objects(objects, grey, image_id="a", method="m", shape=False)])
    for column in ("label", "area", "bbox", "score"):
        assert lean.column(column).equals(full.column(column)), column
    for column in ("eccentricity", "solidity", "perimeter", "mean_intensity", "centroid_y"):
        assert lean.column(column).null_count == lean.num_rows, column


def test_contrast_score_is_the_difference_to_the_background_around_the_object():
    objects, grey = scene()
    scores = contrast_scores(objects, grey, margin=2)
    assert scores[0] == pytest.approx(200 / 255)
    assert scores[1] == pytest.approx(100 / 255)
    assert scores[2] == 0.0  # id 3 has no pixel
    # Object 4 sits in the corner: its grown box holds background at 20 beside it.
    assert scores[3] == pytest.approx(10 / 255)
    # No background in the box: the image's background; none at all: 0.
    whole = np.ones((4, 4), np.int32)
    assert contrast_scores(whole, np.full((4, 4), 9, np.uint8)).tolist() == [0.0]


def test_given_scores_and_class_names_are_kept_per_label():
    objects, _ = scene()
    columns = measure_objects(objects, None, image_id="a", method="m",
                              scores=[0.9, 0.8, 0.7, 0.6], class_names=["a", "b", "c", "d"])
    rows = objects_table([columns]).to_pylist()
    assert [(r["label"], r["score"], r["class_name"]) for r in rows] == [
        (1, 0.9, "a"), (2, 0.8, "b"), (4, 0.6, "d")]
    assert rows[0]["mean_intensity"] is None


def test_an_image_without_objects_gives_no_rows():
    assert measure_objects(np.zeros((3, 3), np.int32), None, image_id="a", method="m") is None
    assert objects_table([None]).num_rows == 0


def regionprops_columns(objects, grey):
    """The measured columns as scikit-image's regionprops_table gives them."""
    from skimage.measure import regionprops_table

    properties = ["label", "area", "centroid", "bbox", "eccentricity", "solidity", "perimeter"]
    if grey is not None:
        properties += ["intensity_mean", "intensity_max"]
    table = regionprops_table(objects, intensity_image=grey, properties=properties)
    columns = {
        "label": table["label"].astype(np.int32),
        "area": table["area"].astype(np.int64),
        "centroid_y": table["centroid-0"],
        "centroid_x": table["centroid-1"],
        "bbox": np.stack([table[f"bbox-{k}"] for k in range(4)], axis=1).astype(np.int32),
        "eccentricity": table["eccentricity"],
        "solidity": table["solidity"],
        "perimeter": table["perimeter"],
    }
    if grey is not None:
        columns["mean_intensity"] = table["intensity_mean"].astype(np.float64)
        columns["max_intensity"] = table["intensity_max"].astype(np.float64)
    return columns


def assert_bit_identical(columns, reference):
    for name, expected in reference.items():
        value = np.asarray(columns[name])
        assert value.dtype == expected.dtype and value.shape == expected.shape, name
        assert value.tobytes() == np.ascontiguousarray(expected).tobytes(), name
    for name in {"mean_intensity", "max_intensity"} - set(reference):
        assert name not in columns


def speckled_objects():
    """Components of a thresholded noise image, as a photo gives: mostly 1-4 pixel specks,
    a few irregular blobs, some on the border; plus one shape stamped at several places, and
    ids with gaps."""
    import cv2
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    foreground = gaussian_filter(rng.random((40, 60)), 0.7) > 0.6
    foreground[:, 44:] = False
    stamp = np.array([[1, 1, 0], [0, 1, 1], [0, 1, 0]], bool)
    for y, x in [(2, 46), (2, 52), (9, 46), (9, 53), (20, 48), (34, 56)]:
        foreground[y:y + 3, x:x + 3] = stamp
    foreground[0, 59] = foreground[39, 58:] = True
    _, components = cv2.connectedComponents(foreground.astype(np.uint8), connectivity=8,
                                            ltype=cv2.CV_32S)
    return np.where(components > 0, 3 * components + 1, 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, None])
def test_measurements_are_regionprops_to_the_bit(dtype):
    objects = speckled_objects()
    areas = np.bincount(objects.ravel())
    assert np.count_nonzero((areas > 0) & (areas <= 4)) >= 20 and areas[1:].max() >= 40
    assert np.count_nonzero(areas) < objects.max() // 2  # ids with gaps
    assert objects[0].any() and objects[-1].any() and objects[:, 0].any() and objects[:, -1].any()
    rng = np.random.default_rng(0)
    grey = None if dtype is None else (rng.random(objects.shape) * 60000).astype(dtype)
    columns = measure_objects(objects, grey, image_id="a", method="m",
                              scores=np.zeros(objects.max()))
    assert_bit_identical(columns, regionprops_columns(objects, grey))


def test_touching_and_split_instances_are_measured_to_the_bit():
    rng = np.random.default_rng(1)
    objects = np.repeat(np.repeat(rng.integers(0, 9, (6, 8)), 4, axis=0), 3, axis=1)
    objects[rng.random(objects.shape) < 0.15] = 0
    objects = objects.astype(np.uint16) * 2  # one id in several pieces, others touching
    grey = rng.integers(0, 256, objects.shape).astype(np.uint8)
    columns = measure_objects(objects, grey, image_id="a", method="m")
    assert_bit_identical(columns, regionprops_columns(objects, grey))


def test_objects_whose_boxes_overlap_are_measured_in_batches_to_the_bit(monkeypatch):
    # Nested rings: every box covers most of the image, so the boxes add up to many times
    # its size and are measured in several batches (memory stays near the image's).
    from segpipe import measure

    yy, xx = np.mgrid[:61, :67]
    radius = np.hypot(yy - 30, xx - 33)
    objects = np.where(radius < 30, (radius // 3).astype(np.int32) + 1, 0)
    objects[:, ::7] = 0  # breaks the rings into arcs: one id, several pieces
    sizes = []
    real = measure._shapes_of
    monkeypatch.setattr(measure, "_shapes_of", lambda masks: sizes.append(len(masks)) or real(masks))
    monkeypatch.setattr(measure, "_BATCH_MIN_PIXELS", 0)
    grey = (radius * 8).astype(np.uint8)
    columns = measure_objects(objects, grey, image_id="a", method="m")
    assert len(sizes) > 1 and sum(sizes) == objects.max()
    assert_bit_identical(columns, regionprops_columns(objects, grey))


def test_every_object_within_three_by_three_pixels_is_measured_to_the_bit():
    # Each of the 511 masks of a 3 x 3 box, split or not, alone in a 5 x 5 cell.
    objects = np.zeros((23 * 5, 23 * 5), np.int32)
    for k in range(1, 512):
        mask = (k >> np.arange(9) & 1).reshape(3, 3).astype(bool)
        y, x = divmod(k, 23)
        objects[5 * y + 1:5 * y + 4, 5 * x + 1:5 * x + 4][mask] = k
    columns = measure_objects(objects, None, image_id="a", method="m", scores=np.zeros(511))
    assert_bit_identical(columns, regionprops_columns(objects, None))


# ---- COCO AP of a method, streamed from the shard tables ----


def method_run(tmp_path, n=4, seed=0):
    """Masks (foreground), objects tables and instance truth for a few images."""
    rng = np.random.default_rng(seed)
    (tmp_path / "truth").mkdir(exist_ok=True)
    rows, parts = [], []
    for k in range(n):
        truth = np.zeros((24, 24), np.uint16)
        for i in range(1, 4):
            y, x = rng.integers(0, 18, 2)
            truth[y : y + 5, x : x + 5] = i
        write_png(tmp_path / "truth" / f"i{k}.png", truth)
        pred = np.roll(truth > 0, rng.integers(0, 2), axis=1).astype(np.uint8)
        mask_path = str(tmp_path / f"m{k}.png")
        write_png(mask_path, pred)
        rows.append({"image_id": f"i{k}.png", "status": "ok", "mask_path": mask_path})
        from segpipe.evaluation import objects_of

        grey = (pred * 200 + 20).astype(np.uint8)
        parts.append(measure_objects(objects_of(pred, "foreground"), grey, image_id=f"i{k}.png",
                                     method="m", shape=False))
    metrics = pd.DataFrame(rows)
    objects = objects_table(parts).to_pandas()
    return metrics, objects, GroundTruth(tmp_path / "truth", kind="instances")


def test_method_ap_does_not_depend_on_the_order_of_rows(tmp_path):
    metrics, objects, truth = method_run(tmp_path)
    first = method_coco_ap([(metrics, objects)], truth, meaning="foreground")
    assert first["coco_note"] is None and 0 < first["coco_ap50"] <= 1
    shuffled = [(metrics.sample(frac=1, random_state=s), objects.sample(frac=1, random_state=s))
                for s in range(3)]
    for pair in shuffled:
        assert method_coco_ap([pair], truth, meaning="foreground") == first
    # Split over shards in another order: the same.
    halves = [(metrics.iloc[2:], objects), (metrics.iloc[:2], objects)]
    assert method_coco_ap(halves, truth, meaning="foreground") == first


@pytest.mark.parametrize("meaning", ["classes", "regions"])
def test_classes_and_regions_get_a_null_ap_with_a_note(tmp_path, meaning):
    metrics, objects, truth = method_run(tmp_path)
    scores = method_coco_ap([(metrics, objects)], truth, meaning=meaning)
    assert scores["coco_ap"] is None and meaning in scores["coco_note"]


def test_a_failed_score_is_written_as_nulls_with_a_note(tmp_path):
    metrics, _, truth = method_run(tmp_path)
    table = pa.Table.from_pandas(metrics.assign(mask_path=str(tmp_path / "gone.png")))
    from segpipe.table import METRICS_SCHEMA, rows_to_table

    rows = [dict.fromkeys(METRICS_SCHEMA.names) | r | {"method": "m", "kind": "threshold",
            "shard": "000000", "params": "{}", "segpipe_version": "0"}
            for r in table.to_pylist()]
    import pyarrow.parquet as pq

    pq.write_table(rows_to_table(rows), tmp_path / "000000.parquet")
    out = tmp_path / "ap.json"
    write_method_coco_ap([tmp_path / "000000.parquet"], [], out, ground_truth=truth,
                         meaning="foreground", object_paths=[])
    scores = json.loads(out.read_text())
    assert scores["coco_ap"] is None and "COCO AP failed" in scores["coco_note"]
    assert "gone.png" in scores["coco_note"]


def test_method_ap_of_instances_uses_their_full_masks_and_scores(tmp_path):
    from segpipe.rle import encode_mask

    metrics, _, truth = method_run(tmp_path, n=2)
    rows = []
    for image_id in metrics["image_id"]:
        labels = read_label_image(tmp_path / "truth" / image_id)
        for k, i in enumerate(i for i in np.unique(labels) if i):
            rle = encode_mask(labels == i)
            rows.append({"image_id": image_id, "instance_id": k + 1, "score": 0.9 - k / 10,
                         "rle": {"size": rle["size"], "counts": rle["counts"]}})
    instances = pd.DataFrame(rows)
    scores = method_coco_ap([(metrics, instances)], truth, meaning="instances")
    assert scores == {"coco_ap": 1.0, "coco_ap50": 1.0, "coco_ap75": 1.0, "coco_note": None}
    # One instance missing: precision 1 up to recall (n - 1) / n, then nothing.
    n = len(instances)
    scores = method_coco_ap([(metrics, instances.iloc[1:])], truth, meaning="instances")
    reached = np.count_nonzero(np.linspace(0, 1, 101) <= (n - 1) / n + 1e-12)
    assert scores["coco_ap50"] == pytest.approx(reached / 101)
