"""Mask R-CNN on tiles: native scale, batching across images, stitching by ownership.

Random weights cannot tell whether an instance was stitched right, so the stitching is
tested with a stand-in model that "detects" the connected components of each tile's
pixels (every object painted in a grey value of its own, its score): what it finds on a
tile is known exactly, and the tiled run can be compared with the same stand-in on the
whole image. The real network's preparation (no resize of tiles) is tested with
``Predictor.forward``, its one seam, replaced.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from segpipe import methods
from segpipe.batch_runner import BatchPipeline, CanvasBuckets
from segpipe.config import load_schema, method_defaults
from segpipe.imageio import label_dtype, read_label_image
from segpipe.job import ShardJob, run_shard_job
from segpipe.layout import Layout
from segpipe.manifest import write_shards
from segpipe.maskrcnn import load_maskrcnn, maskrcnn_tiled
from segpipe.maskrcnn.inference import Detections, Predictor
from segpipe.maskrcnn.tiled import DetectionStitcher, mask_crop
from segpipe.methods import MethodSpec
from segpipe.rle import counts_from_boundaries, crop_boundaries
from segpipe.tiles import Tiling

from conftest import ROOT, encode

# Read regions of 24 pixels, cores of 16, margins of 4: objects up to 7 pixels a side are
# never cut.
TILING = Tiling(size=24, overlap=8)


def found_in(block):
    """The stand-in's detections on one read region: each connected component of one
    grey value is an instance, scored by its value / 256, class 1, by falling score."""
    grey = block[..., 0] if block.ndim == 3 else block
    found = []
    for value in sorted(np.unique(grey[grey > 0]), reverse=True):
        parts, _ = ndimage.label(grey == value)
        for k, box in enumerate(ndimage.find_objects(parts), start=1):
            found.append((value, box, parts[box] == k))
    labels = np.zeros(grey.shape, label_dtype(len(found)))
    boxes, runs = [], []
    for i, (_, (rows, cols), crop) in enumerate(found):
        labels[rows, cols][crop] = i + 1
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
        runs.append(crop_boundaries(crop, top=rows.start, left=cols.start,
                                    height=grey.shape[0]))
    return Detections(labels=labels, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                      class_ids=np.ones(len(found), np.int64),
                      scores=np.array([v / 256 for v, _, _ in found], np.float32),
                      areas=np.array([c.sum() for _, _, c in found], np.int64), runs=runs)


class StandIn:
    """A batch kind's model whose detections are :func:`found_in`'s. It records every
    batch (tensor shapes, native flags) and fails any item holding the grey value
    ``FAIL``, as an image too large for the device fails."""

    FAIL = 7

    def __init__(self):
        self.class_names = ["background", "blob"]
        self.stage_s = {}
        self.batches = []

    def canvas_of(self, height, width, *, native=False):
        return (-(-height // 16) * 16, -(-width // 16) * 16)

    def predict(self, tensors, batch_size, *, on_fail, native=None):
        self.batches.append([(tuple(t.shape[-2:]), bool(native and native[i]))
                             for i, t in enumerate(tensors)])
        found = []
        for i, t in enumerate(tensors):
            block = t[0].numpy()
            if (block == self.FAIL).any():
                found.append(on_fail(i, RuntimeError("out of memory (stand-in)")))
            else:
                found.append(found_in(block))
        return found, batch_size


def never(*args, **kwargs):
    raise AssertionError("the batch runner tiles through the model, not through `tiled`")


@pytest.fixture
def stand_in(monkeypatch):
    model = StandIn()
    spec = MethodSpec("standin", never, "instances", "rgb", runner="batch",
                      load=lambda **settings: model, tiled=never)
    monkeypatch.setitem(methods.REGISTRY, "standin", spec)
    return model


def squares(shape, boxes):
    """An image of ``shape`` with each (top, left, bottom, right, value) box painted."""
    image = np.zeros(shape, np.uint8)
    for top, left, bottom, right, value in boxes:
        image[top:bottom, left:right] = value
    return image


# Objects of at most 7 pixels a side, across tile lines (rows and columns 16, 32, 48),
# on a corner of four tiles and at the image's border; grid 3 x 4 tiles.
CROSSING = squares((40, 56), [
    (14, 14, 19, 19, 250),  # the corner of four tiles
    (2, 29, 7, 35, 240),    # across column line 32
    (29, 5, 35, 10, 230),   # across row line 32
    (20, 40, 24, 47, 220),  # inside one core
    (36, 50, 40, 56, 210),  # the image's corner
    (0, 0, 3, 3, 200),      # the image's other corner
])
# Another image, tiled on the same grid sizes: its tiles share buckets with CROSSING's.
OTHER = squares((36, 36), [(13, 13, 20, 20, 190), (30, 2, 36, 8, 180), (5, 28, 9, 33, 170)])
# A bar 46 pixels wide, wider than the overlap: cut at the column lines 16, 32 and 48.
BAR = squares((30, 60), [(10, 5, 14, 51, 160), (22, 20, 26, 25, 150)])
SMALL = squares((20, 20), [(5, 5, 9, 9, 140)])  # one tile's size or less: whole
NAMES = ["crossing.png", "other.png", "bar.png", "small.png"]


def write_images(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        (folder / name).write_bytes(encode(np.repeat(image[..., None], 3, axis=2), ".png"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiles")
    write_images(tmp / "images", dict(zip(NAMES, [CROSSING, OTHER, BAR, SMALL])))
    write_shards(tmp / "shards", {"000000": NAMES})
    return tmp


def run(folder, name, tiles, *, kind="standin", batch_size=4, **settings):
    job = ShardJob(
        method="m", settings={"kind": kind, "batch_size": batch_size, "workers": 0,
                              "writers": 0, **settings},
        shard_file=str(folder / "shards/000000.json"), input_dir=str(folder / "images"),
        metrics_out=str(folder / f"{name}.m.parquet"),
        instances_out=str(folder / f"{name}.i.parquet"),
        objects_out=str(folder / f"{name}.o.parquet"), layout=Layout(str(folder / name)),
        threads=1, tiles=tiles,
    )
    stats = run_shard_job(job)
    rows = pd.read_parquet(folder / f"{name}.m.parquet").set_index("image_id")
    instances = pd.read_parquet(folder / f"{name}.i.parquet")
    objects = pd.read_parquet(folder / f"{name}.o.parquet")
    return rows, instances, objects, stats


def labels_of(rows, image_id):
    return read_label_image(rows.loc[image_id, "mask_path"])


def test_objects_within_the_overlap_come_out_as_on_the_whole_image(folder, stand_in):
    whole, whole_inst, whole_obj, _ = run(folder, "whole", None)
    tiled, tiled_inst, tiled_obj, stats = run(folder, "tiled", TILING)
    assert (tiled["status"] == "ok").all()
    # crossing: 3 x 4 tiles, other: 3 x 3, bar: 2 x 4; small is not tiled.
    assert tiled.loc[NAMES[:3], "tiles"].tolist() == [12, 9, 8]
    assert pd.isna(tiled.loc["small.png", "tiles"])
    assert stats["tiles"] == 29
    assert whole["tiles"].isna().all() and whole["tile_cut_objects"].isna().all()
    for image_id, image in [("crossing.png", CROSSING), ("other.png", OTHER)]:
        assert tiled.loc[image_id, "tile_cut_objects"] == 0
        n = len(np.unique(image)) - 1
        # Each object once (none duplicated in the overlaps), whole: the label image is the
        # whole-image run's, byte for byte.
        assert tiled.loc[image_id, "n_instances"] == whole.loc[image_id, "n_instances"] == n
        assert labels_of(tiled, image_id).tobytes() == labels_of(whole, image_id).tobytes()
        mine = tiled_inst[tiled_inst["image_id"] == image_id].reset_index(drop=True)
        theirs = whole_inst[whole_inst["image_id"] == image_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, theirs)
        # Objects are measured on the grey image assembled from the tiles' cores.
        pd.testing.assert_frame_equal(
            tiled_obj[tiled_obj["image_id"] == image_id].reset_index(drop=True),
            whole_obj[whole_obj["image_id"] == image_id].reset_index(drop=True))
    assert labels_of(tiled, "small.png").tobytes() == labels_of(whole, "small.png").tobytes()


def test_an_object_crossing_a_tile_line_is_kept_once_whole(folder, stand_in):
    tiled, instances, _, _ = run(folder, "tiled-lines", TILING)
    labels = labels_of(tiled, "crossing.png")
    for top, left, bottom, right, value in [(14, 14, 19, 19, 250), (2, 29, 7, 35, 240),
                                            (29, 5, 35, 10, 230)]:
        found = np.unique(labels[top:bottom, left:right])
        assert len(found) == 1 and found[0] != 0, value  # one label over all its pixels
        assert (labels == found[0]).sum() == (bottom - top) * (right - left)
        inst = instances[(instances["image_id"] == "crossing.png")
                         & (instances["instance_id"] == found[0])]
        assert len(inst) == 1
        assert list(inst["bbox"].iloc[0]) == [left, top, right, bottom]
        assert inst["score"].iloc[0] == pytest.approx(value / 256)


def test_an_object_wider_than_the_overlap_is_cut_at_the_core_lines_and_counted(folder,
                                                                                stand_in):
    tiled, instances, _, _ = run(folder, "tiled-bar", TILING)
    labels = labels_of(tiled, "bar.png")
    bar = BAR == 160
    pieces = np.unique(labels[bar])
    # Cut at columns 16, 32 and 48: four pieces, each inside one core, covering the bar.
    assert tiled.loc["bar.png", "tile_cut_objects"] == 4
    assert len(pieces) == 4 and 0 not in pieces
    assert np.array_equal(labels > 0, BAR > 0)
    columns = [np.flatnonzero((labels == p).any(axis=0)) for p in pieces]
    assert sorted((c[0], c[-1]) for c in columns) == [(5, 15), (16, 31), (32, 47), (48, 50)]
    # The small object beside it is whole; labels are unique in the image.
    assert tiled.loc["bar.png", "n_instances"] == len(np.unique(labels)) - 1 == 5
    mine = instances[instances["image_id"] == "bar.png"]
    assert sorted(mine["instance_id"]) == [1, 2, 3, 4, 5]
    # A piece's box is the detection's clipped to its tile's core.
    boxes = sorted(tuple(b) for b, s in zip(mine["bbox"], mine["score"]) if s == 160 / 256)
    assert boxes == [(5, 10, 16, 14), (16, 10, 32, 14), (32, 10, 48, 14), (48, 10, 51, 14)]


def test_the_tiles_of_several_images_share_batches(folder, stand_in, monkeypatch):
    seen = []
    predict = BatchPipeline._predict

    def spy(self, batch, batch_size):
        seen.append([(item.index, type(item).__name__) for item in batch])
        return predict(self, batch, batch_size)

    monkeypatch.setattr(BatchPipeline, "_predict", spy)
    run(folder, "tiled-batches", TILING, batch_size=8)
    assert any(len({index for index, kind in batch if kind == "_Tile"}) >= 2 for batch in seen)
    # Native (no resize) for the tiles only, each at its read size; the small image whole.
    tiles = sorted(shape for batch in stand_in.batches for shape, flag in batch if flag)
    reads = sorted(tuple(s.stop - s.start for s in tile.read)
                   for image in (CROSSING, OTHER, BAR) for tile in TILING.tiles_of(image.shape))
    assert tiles == reads
    assert [shape for batch in stand_in.batches for shape, flag in batch if not flag] == [(20, 20)]


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_results_do_not_depend_on_batching_or_the_order_tiles_come_back(folder, stand_in,
                                                                         batch_size):
    reference, ref_inst, _, _ = run(folder, "order-ref", TILING, batch_size=4)
    other, other_inst, _, _ = run(folder, f"order-{batch_size}", TILING, batch_size=batch_size)
    for image_id in NAMES:
        assert labels_of(other, image_id).tobytes() == labels_of(reference, image_id).tobytes()
    pd.testing.assert_frame_equal(ref_inst, other_inst)


@pytest.mark.parametrize("image", [CROSSING, BAR, OTHER])
def test_the_stitcher_gives_one_result_for_any_order_of_tiles(image):
    grid = TILING.tiles_of(image.shape)
    results = []
    orders = [grid, grid[::-1], [grid[k] for k in np.random.default_rng(1).permutation(len(grid))]]
    for order in orders:
        stitcher = DetectionStitcher(image.shape, grid)
        for tile in order:
            assert not stitcher.complete
            stitcher.add(tile, found_in(image[tile.read]))
        assert stitcher.complete
        results.append(stitcher.result())
    for out in results[1:]:
        assert out.cut_objects == results[0].cut_objects
        for name in ("labels", "boxes", "scores", "class_ids", "areas"):
            a, b = getattr(out.detections, name), getattr(results[0].detections, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        assert [r.tolist() for r in out.detections.runs] == \
            [r.tolist() for r in results[0].detections.runs]


def test_a_piece_that_a_whole_instance_covers_is_dropped():
    # One row, cores of 5 and margins of 3: the object over columns 1..6 (6 wide) is seen
    # whole by the first tile (reading 0..7) and touches the second one's cut side (it
    # reads 2..9). The first tile holds its centre and keeps it whole; the second one's
    # piece, columns 5..6 of its core, is covered by it and dropped.
    image = np.array([[0, 9, 9, 9, 9, 9, 9, 0, 0, 0]], np.uint8)
    grid = Tiling(size=11, overlap=6).tiles_of(image.shape)
    assert grid[0].read[1] == slice(0, 8)
    stitcher = DetectionStitcher(image.shape, grid)
    for tile in grid:
        stitcher.add(tile, found_in(image[tile.read]))
    out = stitcher.result()
    assert out.cut_objects == 0 and len(out.detections) == 1
    assert out.detections.labels.tolist() == [[0, 1, 1, 1, 1, 1, 1, 0, 0, 0]]
    assert out.detections.areas.tolist() == [6]


def test_the_stitcher_refuses_what_is_not_its_grid():
    grid = TILING.tiles_of(CROSSING.shape)
    stitcher = DetectionStitcher(CROSSING.shape, grid)
    stitcher.add(grid[0], found_in(CROSSING[grid[0].read]))
    with pytest.raises(ValueError, match="tile 0 was added already"):
        stitcher.add(grid[0], found_in(CROSSING[grid[0].read]))
    with pytest.raises(ValueError, match="expected its read region's"):
        stitcher.add(grid[1], found_in(CROSSING[grid[2].read][:, :5]))
    with pytest.raises(ValueError, match="is not a tile of this grid"):
        stitcher.add(TILING.tiles_of((100, 100))[40], found_in(CROSSING[:24, :24]))
    with pytest.raises(ValueError, match="tile 1 of 12 was never added"):
        stitcher.result()


@pytest.mark.parametrize("seed", range(5))
def test_mask_crops_round_trip_through_run_boundaries(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((9, 7), bool)
    mask[1:9, 1:6] = rng.random((8, 5)) > 0.4
    mask[8, 2] = mask[0, 3] = True  # a run from column 2's bottom on to column 3's top
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    tight = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    runs = crop_boundaries(mask, top=0, left=0, height=9)
    top, left, crop = mask_crop(runs, 9)
    assert (top, left) == (rows[0], cols[0]) and np.array_equal(crop, tight)
    # The same runs merged across columns, as COCO's counts have them.
    shared = np.flatnonzero(runs[1:] == runs[:-1])
    assert shared.size
    merged = np.delete(runs, np.r_[shared, shared + 1])
    assert np.array_equal(np.diff(np.r_[0, merged, 63]),
                          counts_from_boundaries(runs, 9, 7)[: merged.size + 1])
    top, left, crop = mask_crop(merged, 9)
    assert (top, left) == (rows[0], cols[0]) and np.array_equal(crop, tight)
    assert mask_crop(np.zeros(0, np.int64), 9)[2].shape == (0, 0)


def test_a_failing_tile_fails_its_image_only(tmp_path, stand_in):
    broken = CROSSING.copy()
    broken[38, 2] = StandIn.FAIL  # in the last row of tiles only
    write_images(tmp_path / "images", {"broken.png": broken, "other.png": OTHER})
    write_shards(tmp_path / "shards", {"000000": ["broken.png", "other.png"]})
    rows, instances, _, _ = run(tmp_path, "failing", TILING)
    bad = rows.loc["broken.png"]
    assert bad["status"] == "error"
    assert "broken.png" in bad["error"] and "the tile at rows" in bad["error"]
    assert "out of memory (stand-in)" in bad["error"]
    assert rows.loc["other.png", "status"] == "ok" and rows.loc["other.png", "tiles"] == 9
    assert set(instances["image_id"]) == {"other.png"}


def test_canvas_buckets_put_a_tile_on_the_canvas_of_its_own_size():
    keys = []

    def canvas_of(height, width, *, native=False):
        keys.append(native)
        return (height, width) if native else (height // 10, width // 10)

    buckets = CanvasBuckets(canvas_of, batch_size=2, max_pending=8)
    assert buckets.add("whole", 40, 40) == []
    assert buckets.add("tile", 4, 4, native=True) == [["whole", "tile"]]
    assert keys == [False, True]


# ---- the real network's preparation: tiles at their own scale ----

TINY = {**method_defaults(load_schema(ROOT / "workflow/schemas/config.schema.yaml"), "maskrcnn"),
        "model": "maskrcnn_resnet50_fpn", "weights": "none", "seed": 3, "score_threshold": 0.0,
        "max_detections": 5, "min_size": 64, "max_size": 96, "device": "cpu"}


class Network:
    """``Predictor.forward`` replaced: records the sizes it is given and finds one 6 x 6
    box at the centre of each image, its mask full."""

    def __init__(self):
        self.sizes = []

    def __call__(self, canvas, image_sizes):
        self.sizes.extend(image_sizes)
        outputs = []
        for height, width in image_sizes:
            cy, cx = height // 2, width // 2
            outputs.append({
                "boxes": torch.tensor([[cx - 3, cy - 3, cx + 3, cy + 3]], dtype=torch.float32),
                "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
                "masks": torch.ones((1, 1, 28, 28)),
            })
        return outputs


def test_tiles_reach_the_network_at_their_read_size_and_whole_images_resized(tmp_path,
                                                                            monkeypatch):
    network = Network()
    monkeypatch.setattr(Predictor, "forward",
                        lambda predictor, canvas, sizes: network(canvas, sizes))
    # Cores of 96, margins of 16: 3 x 4 tiles, the last row and column of cores wider
    # than a margin, so that the centre of each tile's read region is in its own core.
    big = np.zeros((230, 330), np.uint8)
    write_images(tmp_path / "images", {"big.png": big, "small.png": big[:48, :64]})
    write_shards(tmp_path / "shards", {"000000": ["big.png", "small.png"]})
    tiling = Tiling(size=128, overlap=32)
    rows, instances, _, _ = run(tmp_path, "native", tiling, kind="maskrcnn", **TINY)
    assert (rows["status"] == "ok").all() and rows.loc["big.png", "tiles"] == 12
    grid = tiling.tiles_of(big.shape)
    reads = sorted(tuple(s.stop - s.start for s in t.read) for t in grid)
    # The small image is resized as today (min_size 64: 48 x 64 -> 64 x 85); no tile is.
    assert sorted(network.sizes) == sorted([*reads, (64, 85)])
    # Each tile's box comes back in its own pixels plus its origin, not rescaled; a tile's
    # centre box is in its own core, so every tile keeps its own.
    boxes = instances[instances["image_id"] == "big.png"]["bbox"]
    expected = sorted((t.origin[1] + w // 2 - 3, t.origin[0] + h // 2 - 3,
                       t.origin[1] + w // 2 + 3, t.origin[0] + h // 2 + 3)
                      for t, (h, w) in ((t, tuple(s.stop - s.start for s in t.read)) for t in grid))
    assert sorted(tuple(b) for b in boxes) == expected
    assert rows.loc["big.png", "tile_cut_objects"] == 0


def test_the_arrays_in_memory_face_tiles_too(monkeypatch):
    network = Network()
    monkeypatch.setattr(Predictor, "forward",
                        lambda predictor, canvas, sizes: network(canvas, sizes))
    image = np.zeros((230, 330, 3), np.uint8)
    tiling = Tiling(size=128, overlap=32)
    out = maskrcnn_tiled(image, tiling=tiling, **TINY)
    assert out.tiles == 12 and out.cut_objects == 0 and len(out.detections) == 12
    assert out.detections.labels.shape == (230, 330)
    assert sorted(network.sizes) == sorted(tuple(s.stop - s.start for s in t.read)
                                           for t in tiling.tiles_of(image.shape))
    # The same model on the whole image resizes it, as without tiles.
    net = load_maskrcnn(**{k: v for k, v in TINY.items()
                           if k not in ("workers", "writers", "batch_size")})
    whole = net.segment([image])[0]
    assert len(whole) == 1 and network.sizes[-1] == net.predictor.resized_size(230, 330)
    again = net.segment_tiled(image, tiling, batch_size=1)
    assert again.detections.labels.tobytes() == out.detections.labels.tobytes()


def test_native_flags_must_match_the_images():
    net = load_maskrcnn(**{k: v for k, v in TINY.items()
                           if k not in ("workers", "writers", "batch_size")})
    with pytest.raises(ValueError, match="one flag per image: 1 flags for 2 images"):
        net.predictor([torch.zeros((3, 8, 8), dtype=torch.uint8)] * 2, native=[True])


def test_worker_and_writer_processes_do_not_change_tiled_results(folder, stand_in):
    inline, inline_inst, inline_obj, _ = run(folder, "inline", TILING)
    forked, forked_inst, forked_obj, stats = run(folder, "forked", TILING, workers=2,
                                                 writers=2)
    assert stats["workers"] == 2 and stats["writers"] == 2
    columns = ["status", "tiles", "tile_cut_objects", "n_instances", "mean_score", "n_labels"]
    pd.testing.assert_frame_equal(inline[columns], forked[columns])
    pd.testing.assert_frame_equal(inline_inst, forked_inst)
    pd.testing.assert_frame_equal(inline_obj, forked_obj)
    for image_id in NAMES:
        assert labels_of(inline, image_id).tobytes() == labels_of(forked, image_id).tobytes()


@pytest.mark.e2e
def test_the_workflow_runs_mask_rcnn_on_tiles_with_random_weights(tmp_path):
    """Through Snakemake: a tiled TIFF read tile by tile, each tile through the network at
    its own scale, beside an image small enough to go whole."""
    import tifffile

    from conftest import blobs_image, run_snakemake, write_config

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "scan.tif", blobs_image(3, shape=(100, 140)), tile=(32, 32),
                     compression="zlib")
    write_images(images, {"small.png": blobs_image(4, shape=(48, 64))})
    methods = {"mr": {
        "kind": "maskrcnn", "model": "maskrcnn_resnet50_fpn", "weights": "none", "seed": 1,
        "score_threshold": 0.0, "max_detections": 3, "min_size": 64, "max_size": 96,
        "batch_size": 4, "device": "cpu", "workers": 1, "writers": 1,
        "tiles": {"size": 64, "overlap": 16},
    }}
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), methods=methods)
    run_snakemake(tmp_path, "--configfile", cfg)
    rows = pd.read_parquet(tmp_path / "results/summary/metrics.parquet").set_index("image_id")
    assert (rows["status"] == "ok").all(), rows["error"].dropna().tolist()
    assert rows.loc["scan.tif", "tiles"] == 9 and pd.isna(rows.loc["small.png", "tiles"])
    assert rows.loc["scan.tif", "tile_cut_objects"] >= 0
    instances = pd.read_parquet(tmp_path / "results/summary/instances.parquet")
    mine = instances[instances["image_id"] == "scan.tif"]
    n = rows.loc["scan.tif", "n_instances"]
    # At most max_detections per tile; labels 1..N by falling score, boxes in the image.
    assert 0 < n == len(mine) <= 9 * 3
    assert list(mine["instance_id"]) == list(range(1, n + 1))
    assert mine["score"].is_monotonic_decreasing
    boxes = np.stack(mine["bbox"].to_numpy())
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 140).all() and (boxes[:, 3] <= 100).all()
    labels = read_label_image(tmp_path / rows.loc["scan.tif", "mask_path"])
    assert labels.shape == (100, 140) and labels.max() <= n
    assert (instances["image_id"] == "small.png").sum() == 3


@pytest.mark.parametrize("chunk", [0, 5])
def test_a_tiled_tiff_with_a_corrupt_chunk_gets_an_error_row_naming_it(tmp_path, stand_in,
                                                                       chunk):
    import tifffile

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "scan.tif", np.repeat(CROSSING[..., None], 3, axis=2),
                     tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(images / "scan.tif") as tif:
        page = tif.pages[0]
        offset, size = page.dataoffsets[chunk], page.databytecounts[chunk]
    data = bytearray((images / "scan.tif").read_bytes())
    data[offset: offset + size] = b"\xff" * size
    (images / "scan.tif").write_bytes(bytes(data))
    write_images(images, {"other.png": OTHER})
    write_shards(tmp_path / "shards", {"000000": ["scan.tif", "other.png"]})
    rows, _, _, _ = run(tmp_path, "corrupt", TILING)
    bad = rows.loc["scan.tif"]
    assert bad["status"] == "error" and str(images / "scan.tif") in bad["error"]
    if chunk:  # the first chunk is read as the file is opened, the others tile by tile
        assert "cannot read the tile at rows" in bad["error"]
    assert rows.loc["other.png", "status"] == "ok"
