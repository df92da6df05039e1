"""Mask R-CNN on the CPU with random weights (weights: none), tiny images, small sizes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection import maskrcnn_resnet50_fpn

from segpipe.batch_runner import RUN_SETTINGS, CanvasBuckets
from segpipe.config import load_schema, method_defaults
from segpipe.imageio import read_label_image
from segpipe.job import ShardJob, run_shard_job
from segpipe.layout import Layout
from segpipe.manifest import write_shards
from segpipe.maskrcnn import load_maskrcnn, segment_maskrcnn
from segpipe.maskrcnn.inference import predict_with_backoff

from conftest import ROOT, encode, make_image_folder

# The lighter v1 box head keeps random-weight inference around 0.4 s per tiny image.
TINY = {
    "model": "maskrcnn_resnet50_fpn", "weights": "none", "seed": 3, "score_threshold": 0.0,
    "mask_threshold": 0.5, "max_detections": 5, "min_size": 64, "max_size": 96, "device": "cpu", "amp": True,
}
# Every setting, as a resolved config gives a method: the schema's defaults, then TINY's.
SETTINGS = {**method_defaults(load_schema(ROOT / "workflow/schemas/config.schema.yaml"), "maskrcnn"),
            **TINY}
MODEL = {k: v for k, v in SETTINGS.items() if k not in RUN_SETTINGS}


def images(n, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def net():
    """One model for the calls a test compares, as one job has: two builds of the same
    random weights can round their near-tied class scores apart (their buffers sit at
    other addresses)."""
    return load_maskrcnn(**MODEL)


@pytest.fixture(scope="module")
def three():
    # two sizes, so a batch mixes them
    return images(2) + images(1, shape=(64, 40), seed=1)


def test_equals_a_direct_torchvision_call(three):
    # canvas_step 32 pads a canvas exactly as torchvision pads a single image
    ours = segment_maskrcnn(three, batch_size=3, canvas_step=32, **TINY)
    torch.manual_seed(TINY["seed"])
    net = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0,
        box_detections_per_img=5, min_size=64, max_size=96,
    ).eval()
    with torch.inference_mode():
        # one image per call: no cross-image padding
        ref = [net([torch.from_numpy(im).permute(2, 0, 1).float() / 255])[0] for im in three]
    for image, mine, theirs in zip(three, ours, ref):
        assert len(mine) == len(theirs["scores"]) == 5
        np.testing.assert_allclose(mine.scores, theirs["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(mine.class_ids, theirs["labels"].numpy())
        np.testing.assert_allclose(mine.boxes, theirs["boxes"].numpy(), atol=1e-3)
        expected = theirs["masks"][:, 0].numpy() > 0.5
        masks = mine.masks()
        assert masks.shape == expected.shape and masks.shape[1:] == image.shape[:2]
        for a, b in zip(masks, expected):
            assert (a & b).sum() >= 0.99 * (a | b).sum()
        np.testing.assert_array_equal(mine.areas, masks.sum(axis=(1, 2)))


def mixed_sizes():
    """Landscape, portrait and square images of several sizes, some sharing a canvas."""
    shapes = [(48, 64), (64, 48), (50, 66), (40, 40), (30, 90), (90, 30), (48, 64), (66, 50)]
    return [images(1, shape=s, seed=20 + i)[0] for i, s in enumerate(shapes)]


def assert_identical(a, b, what):
    """Two results for one image agree bit for bit: boxes, scores, classes, the label image's
    bytes, areas and mask runs."""
    for name in ("boxes", "scores", "class_ids", "areas", "labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x.dtype, x.shape) == (y.dtype, y.shape), (what, name)
        assert x.tobytes() == y.tobytes(), (what, name, np.abs(x.astype(float) - y).max())
    assert [r.tobytes() for r in a.runs] == [r.tobytes() for r in b.runs], what


def test_batch_size_does_not_change_results(three, net):
    one = net.segment(three, batch_size=1)
    four = net.segment(three + images(1, seed=9), batch_size=4)[:3]
    for i, (a, b) in enumerate(zip(one, four)):
        assert_identical(a, b, i)


def test_an_images_numbers_do_not_depend_on_its_batch_on_the_cpu(net):
    # Every image here has the same canvas, so only the neighbours and the batch size
    # change. A batched forward pass on the CPU gave other scores (by ~5e-6) and boxes (by
    # ~5e-4 px) than the same image alone.
    target = images(1, seed=100)[0]
    others = images(6, seed=200)
    batches = {
        "1": [target],
        "2": [target, others[0]],
        "2, another neighbour": [others[1], target],
        "4": [others[2], others[3], target, others[4]],
        "4, other neighbours": [target, *others[3:6]],
    }
    alone = None
    for name, batch in batches.items():
        assert len({net.canvas_of(*im.shape[:2]) for im in batch}) == 1
        # one forward pass: the batch size is the list's length
        found = net.segment(batch, batch_size=len(batch))[next(
            i for i, im in enumerate(batch) if im is target)]
        assert len(found) == TINY["max_detections"]
        if alone is None:
            alone = found
        assert_identical(found, alone, name)


def test_mixed_sizes_and_orientations_give_each_image_its_own_result(net):
    pictures = mixed_sizes()
    together = net.segment(pictures, batch_size=8)
    alone = [net.segment([p], batch_size=1)[0] for p in pictures]
    reversed_pairs = net.segment(pictures[::-1], batch_size=2)[::-1]
    for p, a, b, c in zip(pictures, together, alone, reversed_pairs):
        assert a.labels.shape == p.shape[:2]
        assert_identical(a, b, f"{p.shape}: together, alone")
        assert_identical(a, c, f"{p.shape}: together, in reversed pairs")


def test_canvas_buckets_fill_batches_and_bound_what_they_hold():
    # key: (portrait, hundreds of the long side)
    buckets = CanvasBuckets(lambda h, w: (h > w, max(h, w) // 100), batch_size=3, max_pending=3)
    added = [buckets.add(i, h, w) for i, (h, w) in enumerate([(10, 20), (10, 30), (10, 25)])]
    assert added == [[], [], [[0, 1, 2]]]  # a full batch of one canvas
    assert [buckets.add(i, h, w) for i, (h, w) in [(3, (20, 10)), (4, (30, 10)), (5, (300, 10))]] \
        == [[], [], []]
    # a fourth image held: the fullest bucket goes out partial
    assert buckets.add(6, 10, 20) == [[3, 4]]
    assert buckets.rest() == [[6], [5]]
    assert buckets.rest() == []


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


def run_shard_folder(tmp, name, *, shards="shards", **overrides):
    settings = {"kind": "maskrcnn", **SETTINGS, "batch_size": 3, **overrides}
    stats = run_shard_job(ShardJob(
        method="mr", settings=settings, shard_file=str(tmp / shards / "000000.json"),
        input_dir=str(tmp / "images"), metrics_out=str(tmp / f"{name}.m.parquet"),
        instances_out=str(tmp / f"{name}.i.parquet"), layout=Layout(str(tmp / name)),
        threads=1,  # one torch thread in both runs: same rounding
    ))
    return pd.read_parquet(tmp / f"{name}.m.parquet"), pd.read_parquet(tmp / f"{name}.i.parquet"), stats


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mrcnn")
    ids = make_image_folder(tmp / "images")
    write_shards(tmp / "shards", {"000000": ids})
    metrics, instances, _ = run_shard_folder(tmp, "masks", workers=0, writers=0)
    return tmp, metrics, instances


def test_worker_and_writer_processes_do_not_change_results(shard_run):
    tmp, metrics, instances = shard_run
    m2, i2, stats = run_shard_folder(tmp, "masks2", workers=2, writers=2)
    assert stats["workers"] == 2 and stats["writers"] == 2 and stats["images"] == 8
    assert stats["forward_s"] > 0 and stats["finish_s"] > 0
    columns = ["image_id", "status", "error", "height", "width", "n_labels", "n_instances",
               "mean_score", "class_counts"]
    pd.testing.assert_frame_equal(metrics[columns], m2[columns])
    pd.testing.assert_frame_equal(instances.drop(columns="rle"), i2.drop(columns="rle"))
    def runs(table):
        return [(list(r["size"]), r["counts"]) for r in table["rle"]]

    assert runs(instances) == runs(i2)
    for a, b in zip(metrics["mask_path"].dropna(), m2["mask_path"].dropna()):
        np.testing.assert_array_equal(read_label_image(a), read_label_image(b))


def test_an_images_rows_do_not_change_with_the_other_images_of_its_shard(shard_run):
    # The finding, as a job sees it: one image fewer and batches of two regroup
    # every image of the shard (all of one canvas; the last one, alone in the first run,
    # now has a neighbour); each remaining image's numbers and mask must come out bit for
    # bit the same.
    tmp, metrics, instances = shard_run
    kept = [i for i in metrics["image_id"] if i != "a.png"]
    write_shards(tmp / "fewer", {"000000": kept})
    m2, i2, _ = run_shard_folder(tmp, "fewer-masks", shards="fewer", batch_size=2,
                                 workers=0, writers=0)
    columns = ["image_id", "status", "n_instances", "mean_score", "class_counts"]
    before = metrics.set_index("image_id").loc[kept].reset_index()
    pd.testing.assert_frame_equal(before[columns], m2[columns], check_exact=True)
    mine = instances[instances["image_id"].isin(kept)].reset_index(drop=True)
    assert len(mine) == len(i2) == 6 * 5
    for column in ("image_id", "instance_id", "class_id", "score", "area"):
        assert mine[column].tolist() == i2[column].tolist(), column
    assert [list(b) for b in mine["bbox"]] == [list(b) for b in i2["bbox"]]
    assert [r["counts"] for r in mine["rle"]] == [r["counts"] for r in i2["rle"]]
    for a, b in zip(before["mask_path"].dropna(), m2["mask_path"].dropna()):
        assert read_label_image(a).tobytes() == read_label_image(b).tobytes()


def test_shard_rows_and_bad_file(shard_run):
    _, metrics, instances = shard_run
    assert len(metrics) == 8
    bad = metrics.set_index("image_id").loc["broken.png"]
    assert bad["status"] == "error" and "broken.png" in bad["error"]
    ok = metrics[metrics["status"] == "ok"]
    assert len(ok) == 7 and (ok["n_instances"] == 5).all()
    assert (ok["runtime_s"] > 0).all() and (ok["segment_s"] > 0).all()
    assert json.loads(ok["params"].iloc[0])["weights"] == "none"
    for row in ok.itertuples():
        mine = instances[instances["image_id"] == row.image_id]
        assert row.mean_score == pytest.approx(mine["score"].mean())
        assert sum(json.loads(row.class_counts).values()) == 5
        assert list(mine["instance_id"]) == [1, 2, 3, 4, 5]
        assert mine["score"].is_monotonic_decreasing


def test_rle_decodes_to_each_mask_and_agrees_with_the_label_image(shard_run):
    _tmp, metrics, instances = shard_run
    for row in metrics[metrics["status"] == "ok"].itertuples():
        labels = read_label_image(row.mask_path)
        assert labels.shape == (row.height, row.width)
        covered = np.zeros(labels.shape, bool)
        for inst in instances[instances["image_id"] == row.image_id].itertuples():
            rle = {"size": list(inst.rle["size"]), "counts": inst.rle["counts"].encode()}
            mask = mask_utils.decode(rle).astype(bool)  # pycocotools reads our RLE
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
    settings = {"kind": "maskrcnn", **SETTINGS, "weights": "DEFAULT", "batch_size": 2}
    stats = run_shard_job(ShardJob(
        method="mr", settings=settings, shard_file=str(tmp_path / "shards/000000.json"),
        input_dir=str(tmp_path / "img"), metrics_out=str(tmp_path / "m.parquet"),
        instances_out=str(tmp_path / "i.parquet"), layout=Layout(str(tmp_path / "out")),
        weights_dir=str(weights),
    ))
    assert stats == {}  # no model was built
    row = pd.read_parquet(tmp_path / "m.parquet").iloc[0]
    assert row["status"] == "error"
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in row["error"] and "put it at" in row["error"]
    assert len(pd.read_parquet(tmp_path / "i.parquet")) == 0
