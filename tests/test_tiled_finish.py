"""Finishing a tiled image block by block gives the row, scores, objects and mask file that
finishing its label image whole gives, without holding it whole."""

import numpy as np
import pytest
import tifffile

from segpipe import tiled_finish
from segpipe.finish import Finishing, finish_image
from segpipe.ground_truth import GroundTruth
from segpipe.imageio import read_label_image
from segpipe.labelstore import read_zarr_labels
from segpipe.measure import OBJECTS_SCHEMA, objects_table
from segpipe.methods.base import Segmentation
from segpipe.scratch import ScratchLabels
from segpipe.table import empty_row
from segpipe.tiles import ArraySource


def on_disk(array):
    labels = ScratchLabels(array.shape, array.dtype)
    labels[0:array.shape[0], 0:array.shape[1]] = array
    return labels


def nuclei(seed=0, shape=(300, 420)):
    """A noisy grey image of about 150 bright discs, some touching, many across the
    blocks' lines."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    grey = rng.normal(40, 6, shape)
    for _ in range(150):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        grey[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(9, 80)] = rng.normal(190, 20)
    return np.clip(grey, 0, 255).astype(np.uint8)


def finished_both_ways(tmp_path, labels, grey, meaning, *, truth=None, truth_kind="instances",
                       tolerance=2, suffix=".png", block=64, monkeypatch=None, shapes=True,
                       tiled_truth=True, max_pixels=None):
    """Finish ``labels`` whole and tiled; return both (row, objects, mask path)."""
    gt = None
    if truth is not None:
        folder = tmp_path / "truth"
        folder.mkdir(exist_ok=True)
        tifffile.imwrite(folder / "img.tif", truth,  # read by region, or whole
                         tile=(32, 32) if tiled_truth else None,
                         compression="zlib" if tiled_truth else None)
        gt = GroundTruth(folder, kind=truth_kind, tolerance=tolerance)
    how = Finishing(meaning, gt, objects=True, shapes=shapes)
    results = []
    for name in ("whole", "tiled"):
        row = empty_row(image_id="img.png", method="m", kind="k", shard="000000", params="{}")
        row.update(decode_s=0.0, segment_s=0.0)
        path = str(tmp_path / f"{name}{suffix}")
        if name == "whole":
            objects = finish_image(row, labels, path, how, grey=grey)
        else:
            monkeypatch.setattr(tiled_finish, "BLOCK", block)
            seg = Segmentation(labels=on_disk(labels))
            objects = tiled_finish.finish_tiled_image(row, seg, path, how, edge_path=None,
                                                      grey=ArraySource(grey), threads=2,
                                                      max_pixels=max_pixels)
        results.append((row, objects, path))
    return results


def assert_same_rows(whole, tiled):
    skip = {"write_s", "metrics_s", "runtime_s", "mask_path"}
    for key in whole:
        if key not in skip:
            assert whole[key] == tiled[key], key


def assert_same_objects(whole, tiled):
    a, b = objects_table([whole]), objects_table([tiled])
    assert a.schema == b.schema == OBJECTS_SCHEMA
    assert a.num_rows == b.num_rows > 0
    for name in a.column_names:
        assert a[name].equals(b[name]), name


def instances(grey):
    import cv2

    _, labels = cv2.connectedComponents((grey > 100).view(np.uint8), connectivity=8)
    return labels.astype(np.uint16)


@pytest.mark.parametrize("truth_kind", ["instances", "binary", "labels"])
@pytest.mark.parametrize("meaning", ["foreground", "instances"])
def test_rows_scores_and_objects_equal_the_whole_images(tmp_path, monkeypatch, meaning,
                                                        truth_kind):
    grey = nuclei(1)
    truth = instances(grey)
    shifted = np.roll(truth, (2, -3), axis=(0, 1))  # a prediction that misses a little
    labels = (shifted > 0).astype(np.uint8) if meaning == "foreground" else shifted
    if truth_kind != "instances":
        truth = (truth > 0).astype(np.uint8) * (1 if truth_kind == "binary" else 3)
    (row_w, obj_w, _), (row_t, obj_t, _) = finished_both_ways(
        tmp_path, labels, grey, meaning, truth=truth, truth_kind=truth_kind,
        monkeypatch=monkeypatch, block=48)
    assert row_w["status"] == row_t["status"] == "ok"
    assert row_w["object_f1_50"] is not None and row_w["boundary_f1"] < 1
    assert_same_rows(row_w, row_t)
    assert_same_objects(obj_w, obj_t)


@pytest.mark.parametrize("meaning", ["classes", "regions"])
def test_classes_and_regions_have_the_same_row_and_scores(tmp_path, monkeypatch, meaning):
    grey = nuclei(2)
    labels = (grey // 64).astype(np.uint8) + (meaning == "regions")
    truth = instances(grey)
    (row_w, obj_w, _), (row_t, obj_t, _) = finished_both_ways(
        tmp_path, labels, grey, meaning, truth=truth, tolerance=1.5, monkeypatch=monkeypatch)
    assert obj_w is obj_t is None
    assert row_w["ari"] is not None
    assert_same_rows(row_w, row_t)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".zarr"])
def test_the_mask_file_is_the_whole_images_byte_for_byte(tmp_path, monkeypatch, suffix):
    grey = nuclei(3)
    labels = instances(grey)
    (_, _, whole), (_, _, tiled) = finished_both_ways(tmp_path, labels, grey, "instances",
                                                      suffix=suffix, monkeypatch=monkeypatch)
    if suffix == ".zarr":
        assert np.array_equal(read_zarr_labels(whole), read_zarr_labels(tiled))
    else:
        with open(whole, "rb") as a, open(tiled, "rb") as b:
            assert a.read() == b.read()
        assert np.array_equal(read_label_image(tiled), labels)


def test_a_large_tiff_mask_is_written_block_by_block(tmp_path, monkeypatch):
    # Over the tiled-TIFF size, the mask goes through the block writer, never whole.
    from segpipe import labelstore

    monkeypatch.setattr(labelstore, "TILED_TIFF_PIXELS", 100 * 100)
    labels = instances(nuclei(4))
    whole = tmp_path / "whole.tif"
    labelstore.write_tiled_tiff(whole, labels)
    monkeypatch.setattr(tiled_finish, "BLOCK", 64)
    seen = []
    original = ScratchLabels.__getitem__

    def spy(self, key):
        seen.append(tuple(s.stop - s.start for s in key))
        return original(self, key)

    monkeypatch.setattr(ScratchLabels, "__getitem__", spy)
    tiled_finish.write_mask(str(tmp_path / "tiled.tif"), on_disk(labels))
    assert max(h * w for h, w in seen) <= 64 * 64
    assert (tmp_path / "tiled.tif").read_bytes() == whole.read_bytes()


def test_objects_larger_than_the_region_limit_are_measured_from_sums(tmp_path, monkeypatch):
    grey = nuclei(5)
    labels = instances(grey)
    labels[200:260, 20:400] = labels.max() + 1  # a bar across many blocks
    monkeypatch.setattr(tiled_finish, "MAX_OBJECT_SIDE", 100)
    (_, obj_w, _), (_, obj_t, _) = finished_both_ways(tmp_path, labels, grey, "instances",
                                                      monkeypatch=monkeypatch, block=40)
    a, b = objects_table([obj_w]).to_pandas(), objects_table([obj_t]).to_pandas()
    bar = int(labels.max())
    big = b.label == bar
    assert big.sum() == 1 and b[big].eccentricity.isna().all()
    # Area, box and centroid exact; intensities up to float rounding; the rest as whole.
    for column in ("area", "centroid_y", "centroid_x"):
        assert a[column].tolist() == b[column].tolist(), column
    assert a.bbox.map(tuple).tolist() == b.bbox.map(tuple).tolist()
    assert np.allclose(a.mean_intensity, b.mean_intensity)
    small = ~big
    for column in ("eccentricity", "solidity", "perimeter", "score"):
        assert a[small][column].tolist() == b[small][column].tolist(), column


def test_truth_of_another_size_gets_a_note_not_an_error(tmp_path, monkeypatch):
    grey = nuclei(6)
    labels = instances(grey)
    truth = np.zeros((10, 10), np.uint16)
    (row_w, _, _), (row_t, _, _) = finished_both_ways(tmp_path, labels, grey, "instances",
                                                      truth=truth, monkeypatch=monkeypatch)
    assert row_t["status"] == "ok" and row_t["object_f1_50"] is None
    assert row_w["gt_note"] == row_t["gt_note"] and "10x10" in row_t["gt_note"]


def test_scratch_labels_read_and_write_regions():
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 2**32, (37, 53), dtype=np.uint32)
    labels = ScratchLabels(whole.shape, np.uint32)
    for r in range(0, 37, 10):
        for c in range(0, 53, 16):
            labels[r:r + 10, c:c + 16] = whole[r:r + 10, c:c + 16]
    assert np.array_equal(np.asarray(labels), whole)
    assert np.array_equal(labels[3:30, 5:6], whole[3:30, 5:6])
    assert labels[5:5, 0:3].shape == (0, 3)
    with pytest.raises(ValueError, match="do not fit"):
        ScratchLabels((2, 2), np.uint8)[0:1, 0:1] = np.array([[300]])
    with pytest.raises(TypeError, match="two slices"):
        labels[3, 4]
    view = labels.mapped(np.arange(2**16, dtype=np.uint32))
    with pytest.raises(ValueError, match="read-only"):
        view[0:1, 0:1] = np.zeros((1, 1), np.uint32)


def test_scratch_files_take_no_name_on_disk(tmp_path, monkeypatch):
    # Unlinked at once: a killed job leaves nothing behind in TMPDIR.
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    labels = ScratchLabels((100, 100), np.uint16)
    labels[0:100, 0:100] = np.ones((100, 100), np.uint16)
    assert list(tmp_path.iterdir()) == []
    labels.close()


def test_regions_read_to_measure_objects_stay_bounded(tmp_path, monkeypatch):
    # A long thin line and a tall thin line start in the same block: each is narrow, but the
    # union of their boxes is the whole image. Each is over the side limit, so no region
    # reaches beyond a block by more than that limit.
    grey = nuclei(7, shape=(400, 400))
    labels = instances(grey)
    top = int(labels.max())
    labels[2, 2:398] = top + 1
    labels[4:398, 3] = top + 2
    monkeypatch.setattr(tiled_finish, "MAX_OBJECT_SIDE", 60)
    seen = []
    original = ScratchLabels.__getitem__

    def spy(self, key):
        seen.append(tuple(s.stop - s.start for s in key))
        return original(self, key)

    monkeypatch.setattr(ScratchLabels, "__getitem__", spy)
    _, (_, obj_t, _) = finished_both_ways(tmp_path, labels, grey, "instances",
                                          monkeypatch=monkeypatch, block=40,
                                          suffix=".zarr")  # written by blocks
    assert max(h for h, w in seen) <= 40 + 60 + 2 * 5 and max(w for h, w in seen) <= 110
    b = objects_table([obj_t]).to_pandas().set_index("label")
    assert b.loc[[top + 1, top + 2], "eccentricity"].isna().all()


def test_packed_objects_are_scored_against_the_whole_images_background(tmp_path, monkeypatch):
    # Instances packed so that their boxes' margins hold no background: their contrast is
    # to the whole image's background, also when the block's region has none.
    grey = nuclei(8, shape=(96, 96))
    labels = np.zeros((96, 96), np.uint16)
    labels[:64, :64] = 1 + (np.arange(64)[:, None] // 8) * 8 + np.arange(64)[None, :] // 8
    (_, obj_w, _), (_, obj_t, _) = finished_both_ways(tmp_path, labels, grey, "instances",
                                                      monkeypatch=monkeypatch, block=32)
    a, b = objects_table([obj_w]).to_pandas(), objects_table([obj_t]).to_pandas()
    assert (a.score > 0).all()
    assert b.score.to_numpy() == pytest.approx(a.score.to_numpy(), abs=1e-12)


def test_a_corrupt_chunk_of_the_truth_leaves_a_note_as_an_unreadable_mask_does(tmp_path,
                                                                               monkeypatch):
    grey = nuclei(9)
    labels = instances(grey)
    (row_w, _, _), _ = finished_both_ways(tmp_path, labels, grey, "instances", truth=labels,
                                          monkeypatch=monkeypatch)
    assert row_w["object_f1_50"] == 1.0
    path = tmp_path / "truth/img.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    gt = GroundTruth(tmp_path / "truth", kind="instances", tolerance=2)
    row = empty_row(image_id="img.png", method="m", kind="k", shard="000000", params="{}")
    row.update(decode_s=0.0, segment_s=0.0)
    monkeypatch.setattr(tiled_finish, "BLOCK", 64)
    tiled_finish.finish_tiled_image(row, Segmentation(labels=on_disk(labels)),
                                    str(tmp_path / "m.png"), Finishing("instances", gt),
                                    edge_path=None, grey=ArraySource(grey))
    assert row["status"] == "ok" and row["object_f1_50"] is None
    assert row["gt_note"].startswith(f"ground truth unusable: {path}")


def test_truth_read_whole_is_bounded_by_max_image_pixels(tmp_path, monkeypatch):
    grey = nuclei(10)
    labels = instances(grey)
    (row_w, _, _), (row_t, _, _) = finished_both_ways(
        tmp_path, labels, grey, "instances", truth=labels, tiled_truth=False,
        monkeypatch=monkeypatch, max_pixels=labels.size - 1)
    assert row_w["object_f1_50"] == 1.0  # the whole image's own path has no such limit here
    assert row_t["object_f1_50"] is None and "max_image_pixels" in row_t["gt_note"]
    (_, _, _), (row_ok, _, _) = finished_both_ways(
        tmp_path, labels, grey, "instances", truth=labels, tiled_truth=False,
        monkeypatch=monkeypatch, max_pixels=labels.size)
    assert row_ok["object_f1_50"] == 1.0
