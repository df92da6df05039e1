"""benchmarks/bench_maskrcnn.py --stand-in: the shard pipeline runs the stand-in network and
writes its fixed detections (masks, label images, instance rows), on four tiny images."""

import importlib
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from pycocotools import mask as coco_mask
from torchvision.models.detection.roi_heads import paste_masks_in_image

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"img00000.jpg": (96, 128), "img00001.jpg": (128, 96)}  # (height, width), in turn
DETECTIONS, IMAGES, STAND_IN_MS = 12, 4, 1


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("bench_maskrcnn")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stand-in")
    # Resized to at most 64x96, so the boxes go through a real change of scale.
    results = bench.main([
        "--stand-in", str(STAND_IN_MS), "--images", str(IMAGES), "--size", "128x96", "96x128",
        "--min-size", "64", "--max-size", "96", "--batch-sizes", "2",
        "--detections", str(DETECTIONS), "--device", "cpu", "--threads", "2",
        "--work", str(tmp / "work"), "--out", str(tmp / "benchmarks.md"),
    ])
    return results, tmp / "work" / f"out-b2-d{DETECTIONS}", tmp / "benchmarks.md"


def expected(bench, image_id):
    """The stand-in's detections on ``image_id``, pasted by torchvision: boxes, class ids,
    scores, full masks."""
    height, width = SIZES[f"img{int(image_id[3:8]) % 2:05d}.jpg"]
    boxes, class_ids, scores, masks = bench.fixed_detections(DETECTIONS)
    boxes = boxes * np.array([width, height, width, height], np.float32)
    full = paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes),
                                (height, width))[:, 0].numpy() > 0.5
    return boxes, class_ids, scores, full


def test_every_image_went_through_the_stand_in_and_the_writers(run):
    (result,), out, _ = run
    assert result["stand_in_images"] == IMAGES
    assert result["instances_per_image"] == DETECTIONS
    # The stand-in sleeps: the forward stage took its milliseconds, not CPU.
    assert result["stage_s"]["forward"] >= STAND_IN_MS / 1000
    assert result["stand_in_cpu_s"] < STAND_IN_MS / 1000
    assert (result["workers"], result["writers"]) == (1, 1)  # the GPU layout, on the CPU
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["status"] for m in metrics] == ["ok"] * IMAGES
    assert [m["n_instances"] for m in metrics] == [DETECTIONS] * IMAGES


def test_instance_rows_are_the_fixed_detections_at_each_image_scale(bench, run):
    _, out, _ = run
    rows = pq.read_table(out / "instances.parquet").to_pylist()
    assert len(rows) == IMAGES * DETECTIONS
    for image_id in sorted({r["image_id"] for r in rows}):
        mine = [r for r in rows if r["image_id"] == image_id]
        boxes, class_ids, scores, _ = expected(bench, image_id)
        assert [r["instance_id"] for r in mine] == list(range(1, DETECTIONS + 1))
        assert [r["class_id"] for r in mine] == class_ids.tolist()
        np.testing.assert_array_equal([r["score"] for r in mine], scores)
        np.testing.assert_allclose([r["bbox"] for r in mine], boxes, atol=1e-3)


def test_masks_are_the_stand_ins_masks_pasted(bench, run):
    _, out, _ = run
    rows = pq.read_table(out / "instances.parquet").to_pylist()
    for image_id in sorted({r["image_id"] for r in rows}):
        mine = [r for r in rows if r["image_id"] == image_id]
        _, _, _, theirs = expected(bench, image_id)
        decoded = np.stack([coco_mask.decode(r["rle"]).astype(bool) for r in mine])
        assert [r["area"] for r in mine] == decoded.sum(axis=(1, 2)).tolist()
        for k, (a, b) in enumerate(zip(decoded, theirs)):
            union = (a | b).sum()
            assert union == 0 or (a & b).sum() / union >= 0.99, (image_id, k)
        # The label PNG: instance i + 1 where its mask is, the higher score on top.
        (png,) = (out / "masks").rglob(f"*{Path(image_id).stem}.png")
        labels = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        painted = np.zeros(labels.shape, labels.dtype)
        for k in range(DETECTIONS - 1, -1, -1):
            painted[decoded[k]] = k + 1
        np.testing.assert_array_equal(labels, painted)
        assert len(np.unique(labels)) > DETECTIONS // 2  # most instances show


def test_the_section_has_the_command_both_tables_and_a_verdict(run):
    (result,), _, doc = run
    text = doc.read_text()
    section = text[text.index("<!-- maskrcnn-stand-in:start -->"):
                   text.index("<!-- maskrcnn-stand-in:end -->")]
    assert "--stand-in 1 --images 4" in section
    assert "| 128x96, 96x128 | 2 | 12 |" in section
    assert section.count("| 128x96, 96x128 |") == 2
    assert ("PASS" if result["passed"] else "FAIL") in section
    assert result["target"] == pytest.approx(
        0.9 * min(1000 / STAND_IN_MS, result["cpu_rate"]))
