"""Training Mask R-CNN on one's own labels (segpipe.training): the split, the checks of
bad input, augmentations, checkpoints, and resuming to the same bytes."""

import itertools
import json
import math

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from segpipe.config import load_schema, resolve_config
from segpipe.errors import ConfigError, TrainingDataError
from segpipe.training.augment import augment, crop_rng, targets_of
from segpipe.training.data import TrainingSet, classes_not_instances, split_of
from segpipe.training.loop import (
    HISTORY_COLUMNS,
    TIMING_COLUMNS,
    Trainer,
    epoch_batches,
    lr_factor,
)
from segpipe.training.settings import default_model, train_defaults

from conftest import ROOT

SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")


def ellipses(seed, size=64, count=3):
    """A grey image with ``count`` bright ellipses on noise, and their instance labels."""
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    image = rng.normal(50, 8, (size, size))
    labels = np.zeros((size, size), np.uint16)
    placed = 0
    for _ in range(count * 10):
        if placed == count:
            break
        rr, cc = ellipse(*rng.uniform(8, size - 8, 2), rng.uniform(4, 9), rng.uniform(3, 6),
                         shape=labels.shape, rotation=rng.uniform(0, np.pi))
        if labels[rr, cc].any():
            continue
        placed += 1
        labels[rr, cc] = placed
        image[rr, cc] += 120
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_set(root, n, *, start=0, size=64):
    """``root/images/e{i}.png`` and ``root/masks/e{i}.png`` for i in start..start+n."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        image, labels = ellipses(i, size)
        cv2.imwrite(str(root / "images" / f"e{i:03d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"e{i:03d}.png"), labels)
    return root


def settings(root, **over):
    """A tiny model's resolved settings: trains in seconds on the CPU."""
    s = train_defaults(SCHEMA)
    s.update(input_dir=str(root / "images"), ground_truth_dir=str(root / "masks"),
             channel=None, z=None, time=None, intensity_range="dtype", base="none",
             backbone="resnet18", epochs=2, batch_size=2, rois_per_image=16,
             proposals_per_image=50, crop_size=48, val_fraction=0.3, device="cpu", lr=0.01)
    s.update(over)
    if s["model"] == "auto":
        s["model"] = default_model(s["backbone"])
    return s


# The split.

def test_split_is_a_function_of_seed_and_id_and_keeps_its_share():
    ids = [f"img{i}.png" for i in range(2000)]
    val = [i for i in ids if split_of(i, seed=3, val_fraction=0.2) == "val"]
    assert 0.17 < len(val) / len(ids) < 0.23
    assert val == [i for i in ids if split_of(i, seed=3, val_fraction=0.2) == "val"]
    assert val != [i for i in ids if split_of(i, seed=4, val_fraction=0.2) == "val"]


def test_adding_images_keeps_every_old_image_on_its_side(tmp_path):
    write_set(tmp_path, 12)
    before = {s.image_id: s.split for s in TrainingSet("m", settings(tmp_path)).samples}
    write_set(tmp_path, 20, start=12)
    after = {s.image_id: s.split for s in TrainingSet("m", settings(tmp_path)).samples}
    assert len(after) == 32
    assert {k: after[k] for k in before} == before
    assert set(after.values()) == {"train", "val"}


def test_val_dir_finds_its_masks_beside_it_as_the_training_masks_are(tmp_path):
    write_set(tmp_path / "train", 4)
    write_set(tmp_path / "val", 2, start=50)
    data = TrainingSet("m", settings(tmp_path / "train",
                                     val_dir=str(tmp_path / "val" / "images")))
    assert str(data.truth["val"].source) == str(tmp_path / "val" / "masks")
    assert data.check()["val"] == 2


def test_val_dir_holds_the_validation_images(tmp_path):
    write_set(tmp_path / "a", 4)
    write_set(tmp_path / "b", 3, start=50)
    data = TrainingSet("m", settings(tmp_path / "a", val_dir=str(tmp_path / "b" / "images"),
                                     val_ground_truth_dir=str(tmp_path / "b" / "masks")))
    assert [s.image_id for s in data.split("val")] == ["e050.png", "e051.png", "e052.png"]
    assert len(data.split("train")) == 4
    assert data.check()["val"] == 3


# Bad input: each named.

def test_an_image_without_a_mask_is_named(tmp_path):
    write_set(tmp_path, 6)
    (tmp_path / "masks" / "e002.png").unlink()
    with pytest.raises(TrainingDataError, match=r"e002\.png.*no ground-truth mask"):
        TrainingSet("m", settings(tmp_path)).check()


def test_a_mask_of_another_size_is_named(tmp_path):
    write_set(tmp_path, 6)
    cv2.imwrite(str(tmp_path / "masks" / "e001.png"), np.ones((10, 12), np.uint16))
    with pytest.raises(TrainingDataError, match=r"e001\.png is 12x10 but the image is 64x64"):
        TrainingSet("m", settings(tmp_path)).check()


def test_a_mask_without_objects_is_kept_as_a_negative_example(tmp_path):
    write_set(tmp_path, 8)
    cv2.imwrite(str(tmp_path / "masks" / "e003.png"), np.zeros((64, 64), np.uint16))
    counts = TrainingSet("m", settings(tmp_path)).check()
    assert counts["negatives"] == 1
    assert counts["train"] + counts["val"] == 8


def test_labels_that_are_classes_are_refused(tmp_path):
    write_set(tmp_path, 6)
    _, labels = ellipses(4)
    cv2.imwrite(str(tmp_path / "masks" / "e004.png"), ((labels > 0) * 255).astype(np.uint8))
    with pytest.raises(TrainingDataError, match=r"e004\.png: its mask looks like classes.*label 255 covers 3"):
        TrainingSet("m", settings(tmp_path)).check()


def test_classes_not_instances_tells_a_binary_mask_from_instances():
    _, labels = ellipses(1, count=4)
    assert classes_not_instances(labels.astype(np.int32)) is None
    assert classes_not_instances((labels > 0).astype(np.int32)) == (1, 4)
    # One object in two pieces among several whole ones is still instances.
    split = labels.astype(np.int32).copy()
    split[split == 2] = 1
    assert classes_not_instances(split) is None


def test_too_few_validation_images_name_the_key(tmp_path):
    write_set(tmp_path, 3)
    with pytest.raises(TrainingDataError, match=r"train\.m\.val_fraction: 0\.3 of 3 images gives [01] validation"):
        TrainingSet("m", settings(tmp_path)).check()


def test_a_coco_file_naming_no_image_is_refused(tmp_path):
    write_set(tmp_path, 4)
    coco = {"images": [{"id": 1, "file_name": "other.png", "height": 64, "width": 64}],
            "annotations": [], "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    data = TrainingSet("m", settings(tmp_path, ground_truth_dir=str(tmp_path / "coco.json")))
    with pytest.raises(TrainingDataError, match=r"coco\.json: none of its 1 file_name entries \(other\.png\)"):
        data.check_coco_matches()


def test_coco_categories_become_the_classes(tmp_path):
    from pycocotools import mask as mask_utils

    write_set(tmp_path, 4)
    images, annotations = [], []
    for i in range(4):
        _, labels = ellipses(i)
        images.append({"id": i + 1, "file_name": f"e{i:03d}.png", "height": 64, "width": 64})
        for k in range(1, int(labels.max()) + 1):
            rle = mask_utils.encode(np.asfortranarray((labels == k).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0,
                                "category_id": 7 if k == 1 else 3, "segmentation": rle,
                                "area": int((labels == k).sum()), "bbox": [0, 0, 1, 1]})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 7, "name": "round"}, {"id": 3, "name": "long"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    data = TrainingSet("m", settings(tmp_path, ground_truth_dir=str(tmp_path / "coco.json")))
    assert data.classes == ["__background__", "long", "round"]
    _, labels, classes = data.read(data.samples[0])
    assert classes[1] == 2 and set(classes[2:].tolist()) == {1}  # label 1: category 7, "round"
    assert labels.max() == 3


def config_with(tmp_path, **train):
    write_set(tmp_path, 6)
    model = {"input_dir": str(tmp_path / "images"), "ground_truth_dir": str(tmp_path / "masks"),
             **train}
    return {"input_dir": str(tmp_path / "images"), "train": {"nuclei": model},
            "methods": {"mine": {"kind": "maskrcnn", "weights": {"trained": "nuclei"}}}}


@pytest.mark.parametrize(("train", "key", "message"), [
    ({"val_fraction": 0.2, "val_dir": "."}, "train.nuclei.val_fraction", "not both"),
    ({"backbone": "resnet18"}, "train.nuclei.base", "fits backbone resnet50 only"),
    ({"base": "missing/model.pt"}, "train.nuclei.base", "does not exist"),
    ({"ground_truth_dir": "nowhere"}, "train.nuclei.ground_truth_dir", "does not exist"),
    ({"z": "all"}, "train.nuclei.z", "not supported for training"),
    ({"min_size": 900, "max_size": 800}, "train.nuclei.min_size", "larger than max_size"),
    ({"max_size": 800}, "train.nuclei.max_size", "only used with min_size"),
    ({"epochs": 0}, "train.nuclei.epochs", "minimum"),
    ({"ground_truth_pattern": "{stm}.png"}, "train.nuclei.ground_truth_pattern", "unknown placeholder"),
])
def test_config_mistakes_name_the_key(tmp_path, monkeypatch, train, key, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config(config_with(tmp_path, **train), SCHEMA)
    assert err.value.key == key


def test_a_trained_model_not_in_the_config_is_named(tmp_path):
    config = config_with(tmp_path)
    config["methods"]["mine"]["weights"] = {"trained": "cells"}
    with pytest.raises(ConfigError, match="no model 'cells' in the train section") as err:
        resolve_config(config, SCHEMA)
    assert err.value.key == "methods.mine.weights.trained"


def test_train_settings_get_defaults_and_the_runs_reading_keys(tmp_path):
    config = config_with(tmp_path, backbone="resnet18", base="none")
    config["channel"] = 1
    resolved = resolve_config(config, SCHEMA)["train"]["nuclei"]
    assert resolved["channel"] == 1 and resolved["z"] is None
    assert resolved["model"] == "maskrcnn_resnet50_fpn" and resolved["epochs"] == 30
    assert resolved["augment"] == {"flip": True, "rotate90": True, "scale": 0.25, "intensity": 0.2}


# Augmentation and schedule.

def test_a_crop_is_a_function_of_seed_epoch_and_image():
    image, labels = ellipses(0, size=96)
    image = np.dstack([image] * 3)
    options = {"flip": True, "rotate90": True, "scale": 0.25, "intensity": 0.2}
    a = augment(image, labels.astype(np.int32), crop_rng(0, 3, 5), crop_size=48, settings=options)
    b = augment(image, labels.astype(np.int32), crop_rng(0, 3, 5), crop_size=48, settings=options)
    c = augment(image, labels.astype(np.int32), crop_rng(0, 4, 5), crop_size=48, settings=options)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert 36 <= a[0].shape[1] <= 60 and a[0].shape[1:] == a[1].shape
    assert a[0].dtype == np.float32 and 0 <= a[0].min() and a[0].max() <= 1


def test_without_augmentations_a_crop_is_the_image_itself():
    image, labels = ellipses(2)
    rgb = np.dstack([image] * 3)
    off = {"flip": False, "rotate90": False, "scale": 0, "intensity": 0}
    x, cut = augment(rgb, labels.astype(np.int32), crop_rng(0, 1, 0), crop_size=None, settings=off)
    assert np.array_equal(cut, labels) and np.allclose(x[0], image / 255)


def test_targets_are_the_instances_boxes_and_masks():
    labels = np.zeros((20, 30), np.int32)
    labels[2:5, 3:9] = 1
    labels[10:18, 20:22] = 2
    labels[0, 0] = 3  # a sliver under MIN_INSTANCE_PIXELS
    t = targets_of(labels, np.array([0, 1, 2, 1]))
    assert t["boxes"].tolist() == [[3, 2, 9, 5], [20, 10, 22, 18]]
    assert t["labels"].tolist() == [1, 2]
    assert [m.sum() for m in t["masks"]] == [18, 16]


def test_the_schedule_warms_up_then_decays_to_zero():
    values = [lr_factor(i, total=50, warmup=5) for i in range(51)]
    assert values[0] == pytest.approx(1e-3) and values[5] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(values[:6]))
    assert all(a >= b for a, b in itertools.pairwise(values[5:]))
    assert values[-1] == 0.0


def test_epoch_batches_cover_each_image_once_in_a_seeded_order():
    batches = epoch_batches(7, seed=1, epoch=2, batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for _, i in b) == list(range(7))
    assert batches == epoch_batches(7, seed=1, epoch=2, batch_size=3)
    assert batches != epoch_batches(7, seed=1, epoch=3, batch_size=3)


# Training, checkpoints and resuming.

@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return write_set(tmp_path_factory.mktemp("tiny"), 8)


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("model")
    card = Trainer("m", settings(tiny_set, epochs=3), folder, threads=1).run()
    return folder, card


def history(folder):
    table = pq.read_table(folder / "history.parquet").to_pandas()
    return table.drop(columns=list(TIMING_COLUMNS))


def test_training_writes_the_models_files(trained, tiny_set):
    folder, _ = trained
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.parquet", "last.pt", "model.json", "model.pt"]
    table = pq.read_table(folder / "history.parquet")
    assert table.column_names == list(HISTORY_COLUMNS)
    assert table.column("epoch").to_pylist() == [1, 2, 3]
    written = json.loads((folder / "model.json").read_text())
    assert written["classes"] == ["__background__", "object"]
    assert sorted(written["splits"]["train"] + written["splits"]["val"]) == sorted(
        p.name for p in (tiny_set / "images").iterdir())
    best = max(table.to_pylist(), key=lambda r: (r["val_ap"], -r["epoch"]))
    assert written["best"]["epoch"] == best["epoch"]
    assert len(written["data_hash"]) == 64 and written["versions"]["torch"] == torch.__version__


def test_model_pt_round_trips_into_the_method(trained, tiny_set):
    from segpipe.maskrcnn import segment_maskrcnn
    from segpipe.maskrcnn.model import load_checkpoint

    folder, _ = trained
    state = load_checkpoint(folder / "model.pt")
    assert state["classes"] == ["__background__", "object"]
    assert state["architecture"]["backbone"] == "resnet18"
    image, _ = ellipses(99)
    rgb = np.dstack([image] * 3)
    found, = segment_maskrcnn([rgb], weights=str(folder / "model.pt"), device="cpu",
                              score_threshold=0.0, canvas_step=32)
    assert found.labels.shape == image.shape
    # At native scale, as trained (the method's min_size, 800, is not used): the same
    # numbers as the network given the image at its own size.
    from segpipe.maskrcnn.model import build_network

    net = build_network(state["architecture"], score_threshold=0.0)
    net.load_state_dict(state["state_dict"])
    net.eval()
    net.transform.min_size, net.transform.max_size = (64,), 64
    with torch.no_grad():
        direct = net([torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)])[0]
    assert len(found) == len(direct["scores"])
    np.testing.assert_allclose(found.scores, direct["scores"].numpy(), rtol=1e-4, atol=1e-5)


def test_a_resumed_training_ends_with_the_same_bytes(trained, tiny_set, tmp_path):
    folder, _ = trained
    stopped = Trainer("m", settings(tiny_set, epochs=3), tmp_path, threads=1, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        stopped.run()
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / "model.pt").exists()
    card = Trainer("m", settings(tiny_set, epochs=3), tmp_path, threads=1).run()
    assert card["resumed_from"] == 1
    assert (tmp_path / "model.pt").read_bytes() == (folder / "model.pt").read_bytes()
    assert history(tmp_path).equals(history(folder))


def test_other_settings_start_over_rather_than_resume(trained, tiny_set, tmp_path):
    stopped = Trainer("m", settings(tiny_set, epochs=3), tmp_path, threads=1, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        stopped.run()
    card = Trainer("m", settings(tiny_set, epochs=2, lr=0.02), tmp_path, threads=1).run()
    assert card["resumed_from"] is None
    assert pq.read_table(tmp_path / "history.parquet").num_rows == 2


def test_a_diverging_loss_stops_with_the_key_to_change(tiny_set, tmp_path):
    from segpipe.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"lower train\.m\.lr"):
        Trainer("m", settings(tiny_set, epochs=1, lr=1e6, warmup_epochs=0), tmp_path,
                threads=1).run()


def test_history_values_are_finite_losses_and_aps(trained):
    folder, _ = trained
    for row in pq.read_table(folder / "history.parquet").to_pylist():
        assert all(math.isfinite(row[k]) for k in ("loss", "loss_mask", "val_loss", "lr"))
        assert 0 <= row["val_ap"] <= row["val_ap50"] <= 1
        assert row["images"] == 6 or row["images"] == 5


def test_a_changed_model_makes_only_the_methods_using_it_stale():
    from segpipe.runfolder import config_changes

    model = {"input_dir": "/x", "ground_truth_dir": "/y"}
    methods = {"learned": {"kind": "maskrcnn", "weights": {"trained": "a"}},
               "otsu": {"kind": "threshold"}}
    old = {"input_dir": "/in", "train": {"a": model}, "methods": methods}
    same = {"input_dir": "/in", "train": {"a": {**model, "epochs": 30}}, "methods": methods}
    assert not config_changes(old, same, SCHEMA).matters  # a default spelled out
    new = {"input_dir": "/in", "train": {"a": {**model, "epochs": 5}}, "methods": methods}
    change = config_changes(old, new, SCHEMA)
    assert change.models == ["a"] and change.methods == ["learned"]
    assert not change.everything and change.matters


def test_dataloader_workers_do_not_change_the_model(trained, tiny_set, tmp_path):
    folder, _ = trained
    Trainer("m", settings(tiny_set, epochs=3, workers=2), tmp_path, threads=1).run()
    assert (tmp_path / "model.pt").read_bytes() == (folder / "model.pt").read_bytes()


def test_a_small_image_on_a_large_canvas_pools_from_the_right_level(trained):
    """torchvision infers the ROI poolers' scales at the first call from the canvas; a
    64-px image on a 256-px canvas made it infer half the true scales, for every later
    call too (segpipe.maskrcnn.model.pin_roi_scales)."""
    from segpipe.maskrcnn.inference import Predictor, to_chw_tensor
    from segpipe.maskrcnn.model import FPN_SCALES, build_network, load_checkpoint

    folder, _ = trained
    state = load_checkpoint(folder / "model.pt")
    image = to_chw_tensor(np.dstack([ellipses(7)[0]] * 3))
    results = []
    for steps in ((256, 32), (32, 256)):
        net = build_network(state["architecture"], score_threshold=0.0)
        net.load_state_dict(state["state_dict"])
        net.eval()
        found = [Predictor(net, torch.device("cpu"), mask_threshold=0.5, canvas_step=step)(
            [image], native=[True])[0] for step in steps]
        assert net.roi_heads.box_roi_pool.scales == list(FPN_SCALES)
        results.append({step: f for step, f in zip(steps, found)})
    for step in (32, 256):
        a, b = results[0][step], results[1][step]
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.scores, b.scores)


def test_anchor_sizes_travel_with_the_model(tiny_set, tmp_path):
    from segpipe.maskrcnn.model import build_model

    Trainer("m", settings(tiny_set, epochs=1, anchor_sizes=[8, 16, 32, 64, 128]), tmp_path,
            threads=1).run()
    net, names, native = build_model(model="maskrcnn_resnet50_fpn_v2",
                                     weights=str(tmp_path / "model.pt"), seed=0,
                                     score_threshold=0.5, max_detections=10, min_size=800,
                                     max_size=1333, device="cpu")
    assert net.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert names == ["__background__", "object"] and native


@pytest.mark.parametrize("model", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_coco_layout_weights_get_new_predictors_and_frozen_stages(model, tiny_set, tmp_path):
    """base: DEFAULT (or a COCO-layout file) loads into the network torchvision builds for
    COCO weights (v1: frozen batch norm), gets predictors for the data's classes, and
    keeps the first stages frozen as torchvision's fine-tuning does."""
    from segpipe.maskrcnn.model import COCO_NUM_CLASSES, build_network
    from segpipe.training.loop import build_for_training

    arch = {"model": model, "backbone": "resnet50", "num_classes": COCO_NUM_CLASSES,
            "pretrained_layout": True, "min_size": None, "max_size": None}
    torch.manual_seed(5)
    coco = build_network(arch)
    torch.save(coco.state_dict(), tmp_path / "coco.pth")
    s = settings(tiny_set, backbone="resnet50", model=model, base=str(tmp_path / "coco.pth"))
    net, built = build_for_training(s, ["__background__", "object"])
    assert built["pretrained_layout"] and built["num_classes"] == 2
    assert net.roi_heads.box_predictor.cls_score.out_features == 2
    assert net.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 2
    body = dict(net.backbone.body.named_parameters())
    assert not any(p.requires_grad for k, p in body.items() if k.startswith(("conv1", "layer1")))
    assert all(p.requires_grad for k, p in body.items() if k.startswith("layer4"))
    kept = net.backbone.body.layer3[0].conv1.weight
    assert torch.equal(kept, coco.backbone.body.layer3[0].conv1.weight)
