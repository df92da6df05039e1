"""Mask R-CNN on the CPU with random weights (weights: none), tiny images, small sizes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection import maskrcnn_resnet50_fpn

from conftest import encode, make_image_folder
from segpipe.imageio import read_label_image
from segpipe.maskrcnn import segment_maskrcnn
from segpipe.maskrcnn.inference import Instances, predict_with_backoff
from segpipe.maskrcnn.shard import run_maskrcnn_shard
from segpipe.manifest import write_shards

# The lighter v1 box head keeps random-weight inference around 0.4 s per tiny image.
TINY = dict(
    model="maskrcnn_resnet50_fpn", weights="none", seed=3, score_threshold=0.0,
    mask_threshold=0.5, max_detections=5, min_size=64, max_size=96, device="cpu", amp=True,
)


def images(n, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def three():
    # two sizes, so a batch mixes them
    return images(2) + images(1, shape=(64, 40), seed=1)


def test_equals_a_direct_torchvision_call(three):
    ours = segment_maskrcnn(three, batch_size=3, **TINY)
    torch.manual_seed(TINY["seed"])
    net = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0,
        box_detections_per_img=5, min_size=64, max_size=96,
    ).eval()
    with torch.inference_mode():
        # one image per call: no cross-image padding, as segpipe guarantees
        ref = [net([torch.from_numpy(im).permute(2, 0, 1).float() / 255])[0] for im in three]
    for image, mine, theirs in zip(three, ours, ref):
        assert len(mine) == len(theirs["scores"]) == 5
        np.testing.assert_allclose(mine.scores, theirs["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(mine.class_ids, theirs["labels"].numpy())
        np.testing.assert_allclose(mine.boxes, theirs["boxes"].numpy(), atol=1e-3)
        np.testing.assert_array_equal(mine.masks, theirs["masks"][:, 0].numpy() > 0.5)
        assert mine.masks.shape[1:] == image.shape[:2]


def test_batch_size_does_not_change_results(three):
    one = segment_maskrcnn(three, batch_size=1, **TINY)
    four = segment_maskrcnn(three + images(1, seed=9), batch_size=4, **TINY)[:3]
    for a, b in zip(one, four):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        assert (a.masks != b.masks).mean() < 1e-3


def test_label_image_orders_by_score_and_higher_score_wins():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = True  # best score
    masks[1, 1:3, 1:3] = True  # overlaps the best at (1, 1)
    masks[2, 3, 3] = True
    inst = Instances(boxes=np.zeros((3, 4), np.float32), class_ids=np.array([1, 2, 1]),
                     scores=np.array([0.9, 0.8, 0.1], np.float32), masks=masks)
    labels = inst.label_image()
    assert labels.dtype == np.uint16
    assert labels[1, 1] == 1 and labels[2, 2] == 2 and labels[3, 3] == 3 and labels[0, 3] == 0


def test_backoff_halves_and_retries_the_same_images():
    calls = []

    def predict(chunk):
        calls.append(list(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]

    results, size = predict_with_backoff(predict, list(range(7)), 8, on_fail=None)
    assert results == [x * 10 for x in range(7)]
    assert size == 2
    assert calls[:3] == [list(range(7)), [0, 1, 2, 3], [0, 1]]


def test_backoff_gives_up_on_one_image_only():
    def predict(chunk):
        if 3 in chunk:
            raise RuntimeError("CUDA error: out of memory")
        return list(chunk)

    results, size = predict_with_backoff(
        predict, list(range(5)), 4, on_fail=lambda index, err: f"failed {index}"
    )
    assert results == [0, 1, 2, "failed 3", 4] and size == 1


def test_backoff_does_not_hide_other_errors():
    def predict(chunk):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        predict_with_backoff(predict, [1, 2], 2, on_fail=None)


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mrcnn")
    ids = make_image_folder(tmp / "images")
    write_shards(tmp / "shards", {"000000": ids})
    settings = {"kind": "maskrcnn", **TINY, "batch_size": 3}
    run_maskrcnn_shard(
        tmp / "shards" / "000000.json", tmp / "m.parquet", tmp / "i.parquet",
        input_dir=tmp / "images", method="mr", settings=settings,
        masks_dir=str(tmp / "masks"), threads=2,
    )
    return tmp, pd.read_parquet(tmp / "m.parquet"), pd.read_parquet(tmp / "i.parquet")


def test_shard_rows_and_bad_file(shard_run):
    _, metrics, instances = shard_run
    assert len(metrics) == 8
    bad = metrics.set_index("image_id").loc["broken.png"]
    assert bad["status"] == "error" and "broken.png" in bad["error"]
    ok = metrics[metrics["status"] == "ok"]
    assert len(ok) == 7 and (ok["n_instances"] == 5).all()
    assert json.loads(ok["params"].iloc[0])["weights"] == "none"
    for row in ok.itertuples():
        mine = instances[instances["image_id"] == row.image_id]
        assert row.mean_score == pytest.approx(mine["score"].mean())
        assert sum(json.loads(row.class_counts).values()) == 5
        assert list(mine["instance_id"]) == [1, 2, 3, 4, 5]
        assert mine["score"].is_monotonic_decreasing


def test_rle_decodes_to_each_mask_and_agrees_with_the_label_image(shard_run):
    tmp, metrics, instances = shard_run
    for row in metrics[metrics["status"] == "ok"].itertuples():
        labels = read_label_image(row.mask_path)
        assert labels.shape == (row.height, row.width)
        covered = np.zeros(labels.shape, bool)
        for inst in instances[instances["image_id"] == row.image_id].itertuples():
            rle = {"size": list(inst.rle["size"]), "counts": inst.rle["counts"].encode()}
            mask = mask_utils.decode(rle).astype(bool)
            assert mask.sum() == inst.area
            # where the label image says this instance, its mask is set...
            assert mask[labels == inst.instance_id].all()
            # ...and its other pixels went to a higher-scoring instance
            taken = mask & (labels != inst.instance_id)
            assert (labels[taken] < inst.instance_id).all() and (labels[taken] > 0).all()
            x0, y0, x1, y1 = inst.bbox
            assert 0 <= x0 <= x1 <= row.width and 0 <= y0 <= y1 <= row.height
            assert inst.class_name == f"class_{inst.class_id}"
            covered |= mask
        np.testing.assert_array_equal(covered, labels > 0)


def test_missing_weights_give_error_rows_naming_the_file(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(encode(images(1)[0], ".png"))
    write_shards(tmp_path / "shards", {"000000": ["a.png"]})
    weights = tmp_path / "weights"
    weights.mkdir()
    status = {"ok": False, "path": str(weights / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"),
              "url": "https://example.org/x.pth", "error": "URLError: offline"}
    (weights / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth.status.json").write_text(json.dumps(status))
    settings = {"kind": "maskrcnn", **TINY, "weights": "DEFAULT", "batch_size": 2}
    run_maskrcnn_shard(
        tmp_path / "shards/000000.json", tmp_path / "m.parquet", tmp_path / "i.parquet",
        input_dir=tmp_path / "img", method="mr", settings=settings,
        masks_dir=str(tmp_path / "masks"), weights_dir=str(weights),
    )
    row = pd.read_parquet(tmp_path / "m.parquet").iloc[0]
    assert row["status"] == "error"
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in row["error"] and "put it at" in row["error"]
    assert len(pd.read_parquet(tmp_path / "i.parquet")) == 0
