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
