"""The shard-job frame: one plan, one error policy and one set of tables for every runner."""

import dataclasses
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from segpipe import methods
from segpipe.job import ShardJob, run_shard_job, runner_of
from segpipe.layout import Layout
from segpipe.manifest import write_shards
from segpipe.methods import MethodSpec, Segmentation, get_method


def shard_job(tmp_path, settings, ids, **extra):
    write_shards(tmp_path / "shards", {"000000": ids})
    return ShardJob(method="m", settings=settings, shard_file=str(tmp_path / "shards/000000.json"),
                    input_dir=str(tmp_path / "in"), metrics_out=str(tmp_path / "m.parquet"),
                    objects_out=str(tmp_path / "o.parquet"), layout=Layout(str(tmp_path / "out")),
                    **extra)


def write_images(tmp_path, names):
    (tmp_path / "in").mkdir()
    for k, name in enumerate(names):
        image = np.zeros((8, 8), np.uint8)
        image[2:4, 2 + k:4 + k] = 200
        cv2.imwrite(str(tmp_path / "in" / name), image)


def test_the_descriptor_chooses_the_runner_never_the_kind_name():
    from segpipe.batch_runner import run_batches
    from segpipe.image_runner import run_images

    assert runner_of(get_method("threshold")) is run_images
    renamed = dataclasses.replace(get_method("maskrcnn"), kind="anything")
    assert runner_of(renamed) is run_batches


def test_imports_are_not_timed_in_the_first_image(tmp_path, monkeypatch):
    """The per-image runner warms a method up before timing images."""
    calls = []
    spec = get_method("threshold")

    def slow_first(grey, **kwargs):
        if not calls:
            time.sleep(0.3)  # as an import would
        calls.append(grey.shape)
        return spec.segment(grey, **kwargs)

    monkeypatch.setitem(methods.REGISTRY, "threshold", dataclasses.replace(spec, segment=slow_first))
    write_images(tmp_path, ["a.png"])
    run_shard_job(shard_job(tmp_path, {"kind": "threshold"}, ["a.png"]))
    table = pd.read_parquet(tmp_path / "m.parquet")
    assert calls[0] == (16, 16) and table["segment_s"].iloc[0] < 0.2


def test_one_failing_image_is_its_row_and_the_others_go_on(tmp_path, monkeypatch):
    def picky(grey, **kwargs):
        if grey.shape == (8, 8) and grey[2, 3] == 200 and grey[2, 2] == 0:
            raise ValueError("no thanks")
        return Segmentation(labels=(grey > 100).astype(np.uint8))

    monkeypatch.setitem(methods.REGISTRY, "picky", MethodSpec("picky", picky, "foreground"))
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "in" / "d.png").write_bytes(b"not a png")
    stale = tmp_path / "out/masks/m/000000/000009-gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    run_shard_job(shard_job(tmp_path, {"kind": "picky"}, ["a.png", "b.png", "c.png", "d.png"]))
    rows = pd.read_parquet(tmp_path / "m.parquet").set_index("image_id")
    assert list(rows.index) == ["a.png", "b.png", "c.png", "d.png"]
    assert list(rows["status"]) == ["ok", "error", "ok", "error"]
    assert rows.loc["b.png", "error"].endswith("b.png: segmentation failed (ValueError: no thanks)")
    assert "d.png" in rows.loc["d.png", "error"]
    objects = pd.read_parquet(tmp_path / "o.parquet")
    assert list(objects["image_id"]) == ["a.png", "c.png"]  # one object each, shard order
    assert not stale.exists()  # the shard's folder holds exactly its images' masks
    assert sorted(p.name for p in stale.parent.iterdir()) == ["000000-a.png", "000002-c.png"]


def test_a_failed_write_fails_the_job(tmp_path):
    from segpipe.errors import OutputError

    write_images(tmp_path, ["a.png"])
    job = shard_job(tmp_path, {"kind": "threshold"}, ["a.png"])
    (tmp_path / "out").write_bytes(b"a file where the masks folder should be")
    with pytest.raises(OutputError, match="cannot write .*out/masks.*a file stands where"):
        run_shard_job(job)
    assert not (tmp_path / "m.parquet").exists()


class FakeDevice:
    """A batch kind's model that finds one square per image and counts the batches it
    holds at once."""

    def __init__(self, concurrent):
        import threading

        self.concurrent_batches = concurrent
        self.class_names = ["background", "square"]
        self.stage_s = {}
        self.lock = threading.Lock()
        self.inside = self.most_inside = self.batches = 0

    def canvas_of(self, height, width):
        return (height, width)

    def predict(self, tensors, batch_size, *, on_fail):
        from segpipe.maskrcnn.inference import Detections

        with self.lock:
            self.inside += 1
            self.batches += 1
            self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.05)
        found = []
        for t in tensors:
            labels = np.zeros(t.shape[-2:], np.uint8)
            labels[1:3, 1:3] = 1
            found.append(Detections(labels=labels, boxes=np.array([[1, 1, 3, 3]], np.float32),
                                    class_ids=np.array([1]), scores=np.array([0.9], np.float32),
                                    areas=np.array([4]), runs=[np.array([9, 11, 17, 19])]))
        with self.lock:
            self.inside -= 1
        return found, batch_size


@pytest.mark.parametrize("concurrent", [1, 2, 3])
def test_the_batch_runner_drives_any_kinds_model_with_batches_in_flight(tmp_path, monkeypatch,
                                                                         concurrent):
    device = FakeDevice(concurrent)
    spec = MethodSpec("fake", print, "instances", "rgb", runner="batch",
                      load=lambda **settings: device)
    monkeypatch.setitem(methods.REGISTRY, "fake", spec)
    names = [f"i{k}.png" for k in range(6)]
    write_images(tmp_path, names)
    settings = {"kind": "fake", "batch_size": 1, "workers": 0, "writers": 0}
    job = dataclasses.replace(shard_job(tmp_path, settings, names),
                              instances_out=str(tmp_path / "i.parquet"))
    stats = run_shard_job(job)
    assert device.batches == 6 and stats["images"] == 6
    assert device.most_inside == concurrent  # never more batches than the model takes
    rows = pd.read_parquet(tmp_path / "m.parquet")
    assert list(rows["image_id"]) == names and (rows["status"] == "ok").all()
    assert (rows["n_instances"] == 1).all() and (rows["class_counts"] == '{"square": 1}').all()
    instances = pd.read_parquet(tmp_path / "i.parquet")
    assert list(instances["image_id"]) == names and set(instances["class_name"]) == {"square"}
