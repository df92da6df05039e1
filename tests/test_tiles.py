"""The tile grid, when images are tiled, and tile sources that read what a whole read gives."""

import numpy as np
import pytest
import tifffile

from segpipe.errors import ImageReadError
from segpipe.imageio import read_image
from segpipe.planes import Reading
from segpipe.sources import TiffTileSource, image_shape, open_image
from segpipe.tiles import ArraySource, Tiling, choose_tiling, parse_tiling, tile_grid

from conftest import blobs_image, encode


@pytest.mark.parametrize("shape, core, margin", [((37, 53), 8, 0), ((37, 53), 10, 3),
                                                 ((5, 5), 16, 4), ((64, 1), 7, 2)])
def test_cores_partition_the_image_and_reads_add_the_margin(shape, core, margin):
    grid = tile_grid(shape, core=core, margin=margin)
    cover = np.zeros(shape, int)
    for k, tile in enumerate(grid):
        assert tile.index == k
        cover[tile.core] += 1
        (ys, ye), (xs, xe) = ((s.start, s.stop) for s in tile.read)
        (cy, cye), (cx, cxe) = ((s.start, s.stop) for s in tile.core)
        assert (ys, xs) == (max(0, cy - margin), max(0, cx - margin))
        assert (ye, xe) == (min(shape[0], cye + margin), min(shape[1], cxe + margin))
        block = np.arange(np.prod(shape)).reshape(shape)[tile.read]
        assert np.array_equal(block[tile.inner], np.arange(np.prod(shape)).reshape(shape)[tile.core])
    assert (cover == 1).all()  # every pixel in exactly one core
    # Raster order of tiles.
    assert [(t.row, t.col) for t in grid] == sorted((t.row, t.col) for t in grid)


def test_a_tiling_reads_tiles_of_its_size_sharing_the_overlap():
    tiling = Tiling(size=64, overlap=16)
    grid = tiling.tiles_of((200, 300, 3))
    inner = next(t for t in grid if t.row == 1 and t.col == 1)
    assert (inner.read[0].stop - inner.read[0].start) == 64
    right = next(t for t in grid if t.row == 1 and t.col == 2)
    assert inner.read[1].stop - right.read[1].start == 16
    with pytest.raises(ValueError, match="overlap"):
        Tiling(size=64, overlap=64)
    with pytest.raises(ValueError, match="tiles must be"):
        parse_tiling("big")


def test_when_images_are_tiled():
    fixed = Tiling(size=512, overlap=32)
    assert choose_tiling(None, (10**5, 10**5), bytes_per_pixel=72, memory_bytes=1e9) is None
    assert choose_tiling(fixed, (512, 512), bytes_per_pixel=72, memory_bytes=None) is None
    assert choose_tiling(fixed, (513, 10), bytes_per_pixel=72, memory_bytes=None) == fixed
    # auto: only what would not fit in the job's memory, with the default tiling.
    assert choose_tiling("auto", (4096, 4096), bytes_per_pixel=72, memory_bytes=2e9) is None
    assert choose_tiling("auto", (8192, 4096), bytes_per_pixel=72, memory_bytes=2e9) == Tiling(2048, 128)
    assert choose_tiling("auto", (8192, 4096), bytes_per_pixel=72, memory_bytes=None) is None


def write_png(path, image):
    path.write_bytes(encode(image, ".png"))
    return path


def test_open_image_reads_whole_unless_tiling_is_needed(tmp_path):
    image = blobs_image(1, shape=(60, 90))
    png = write_png(tmp_path / "a.png", image)
    common = {"mode": "grey", "reading": None, "bytes_per_pixel": 72, "memory_mb": None,
                  "max_tiled_pixels": 10**6, "notes": [], "info": {}}
    whole = open_image(png, tiles="auto", max_pixels=10**6, **common)
    assert whole.tiling is None and np.array_equal(whole.image, read_image(png))
    # A PNG cannot be read in parts: larger than max_image_pixels, it is refused, tiled
    # or not (a decompression bomb stays one).
    for tiles in ("auto", None, Tiling(32, 8)):
        with pytest.raises(ImageReadError, match="larger than max_image_pixels"):
            open_image(png, tiles=tiles, max_pixels=1000, **common)
    # Too large for the job's memory, but within one auto tile: whole all the same.
    assert open_image(png, tiles="auto", max_pixels=10**6,
                      **{**common, "memory_mb": 500}).tiling is None
    # A fixed tiling: decoded whole, then read tile by tile from memory.
    tiled = open_image(png, tiles=Tiling(32, 8), max_pixels=10**6, **common)
    assert tiled.tiling == Tiling(32, 8) and isinstance(tiled.source, ArraySource)
    assert np.array_equal(tiled.source.read(slice(5, 9), slice(0, 90)), read_image(png)[5:9])
    with pytest.raises(ImageReadError, match="larger than max_tiled_pixels"):
        open_image(png, tiles=Tiling(32, 8), max_pixels=10**6,
                   **{**common, "max_tiled_pixels": 100})


@pytest.mark.parametrize("mode", ["grey", "rgb"])
@pytest.mark.parametrize("stack, axes, reading", [
    ("rgb", "YXS", Reading()),
    ("zcyx16", "ZCYX", Reading(channel=1)),
    ("zcyx16", "ZCYX", Reading(channel=0, z=2)),
    ("cyx8", "CYX", Reading(channel=2, intensity_range=[10, 200])),
])
def test_a_tiled_tiff_is_read_tile_by_tile_as_a_whole_read_gives(tmp_path, mode, stack, axes, reading):
    rng = np.random.default_rng(0)
    shape = {"rgb": (70, 90, 3), "zcyx16": (3, 2, 70, 90), "cyx8": (3, 70, 90)}[stack]
    dtype = np.uint16 if stack.endswith("16") else np.uint8
    data = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, tile=(32, 32), compression="zlib",
                     photometric="rgb" if stack == "rgb" else "minisblack",
                     metadata={"axes": axes})
    assert image_shape(path) == (70, 90)
    notes, whole_notes, info = [], [], {}
    opened = open_image(path, mode=mode, reading=reading, tiles=Tiling(32, 4),
                        bytes_per_pixel=72, memory_mb=None, max_pixels=10**6,
                        max_tiled_pixels=10**6, notes=notes, info=info)
    assert isinstance(opened.source, TiffTileSource)
    whole = read_image(path, mode=mode, reading=reading, notes=whole_notes)
    assert opened.source.shape == whole.shape and opened.source.dtype == whole.dtype
    for rows, cols in [(slice(0, 70), slice(0, 90)), (slice(13, 47), slice(30, 33)),
                       (slice(69, 70), slice(0, 1))]:
        assert np.array_equal(opened.source.read(rows, cols), whole[rows, cols])
    assert notes == whole_notes


def test_a_tiff_scaled_by_its_own_range_is_decoded_whole(tmp_path):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.linspace(0, 5, 64 * 64, dtype=np.float32).reshape(64, 64),
                     tile=(32, 32))
    opened = open_image(path, mode="grey", reading=Reading(intensity_range="image"),
                        tiles=Tiling(32, 4), bytes_per_pixel=72, memory_mb=None,
                        max_pixels=10**6, max_tiled_pixels=10**6, notes=[], info={})
    assert isinstance(opened.source, ArraySource)


@pytest.mark.e2e
def test_a_tiled_run_agrees_with_a_whole_run(tmp_path):
    """The same folder, tiles {size: 64, overlap: 24} and tiles null: the exact kinds give
    the same masks byte for byte, the stitched ones the same objects."""
    import pandas as pd

    from segpipe.evaluation import object_f1
    from segpipe.imageio import read_label_image

    from conftest import run_snakemake, write_config

    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        write_png(images / f"i{k}.png", blobs_image(k, shape=(150, 200)))
    write_png(images / "c.png", blobs_image(7, shape=(130, 170), colour=True))
    # A tiled TIFF: read tile by tile in the tiled run, whole in the other.
    tifffile.imwrite(images / "scan.tif", blobs_image(3, shape=(160, 208)), tile=(32, 32),
                     compression="zlib")
    methods = {"otsu": {"kind": "threshold"}, "auto": {"kind": "threshold", "foreground": "auto"},
               "bands": {"kind": "multi_threshold", "classes": 3},
               "sobel": {"kind": "edges"}, "km": {"kind": "kmeans", "k": 2},
               "ws": {"kind": "watershed"}}
    truth = tmp_path / "truth"
    truth.mkdir()
    for path in sorted(images.iterdir()):
        grey = read_image(path)
        write_png(truth / f"{path.stem}.png", (grey > grey.mean()).astype(np.uint8))
    runs = {}
    for name, tiles in (("whole", None), ("tiled", {"size": 64, "overlap": 24})):
        work = tmp_path / name
        work.mkdir()
        # Ground truth: the objects are measured and scored, on tiled images too.
        cfg = write_config(tmp_path / f"{name}.yaml", input_dir=str(images), tiles=tiles,
                           methods=methods, ground_truth_dir=str(truth))
        run_snakemake(work, "--configfile", cfg)
        rows = pd.read_parquet(work / "results/summary/metrics.parquet")
        assert (rows["status"] == "ok").all(), rows["error"].dropna().tolist()
        runs[name] = (work, rows.set_index(["method", "image_id"]).sort_index())
    (whole_dir, whole), (tiled_dir, tiled) = runs["whole"], runs["tiled"]
    assert whole["tiles"].isna().all() and (tiled["tiles"] > 1).all()
    for (method, image_id), row in whole.iterrows():
        a = read_label_image(whole_dir / row["mask_path"])
        b = read_label_image(tiled_dir / tiled.loc[(method, image_id), "mask_path"])
        if method == "ws":
            assert object_f1(b, a)["object_f1_50"] >= 0.99, image_id
            assert tiled.loc[(method, image_id), "tile_cut_objects"] >= 0
        else:
            assert np.array_equal(a, b) and a.dtype == b.dtype, (method, image_id)
            assert list(row["thresholds"]) == list(tiled.loc[(method, image_id), "thresholds"])
            for score in ("iou", "object_f1_50", "n_objects"):
                x, y = row[score], tiled.loc[(method, image_id), score]
                assert (pd.isna(x) and pd.isna(y)) or x == y, (method, image_id, score)
    for image_id in whole.loc["sobel"].index:
        a = read_label_image(whole_dir / whole.loc[("sobel", image_id), "edge_path"])
        b = read_label_image(tiled_dir / tiled.loc[("sobel", image_id), "edge_path"])
        assert np.array_equal(a, b)


def test_overlays_of_a_large_image_read_a_subsampled_level_only(tmp_path, monkeypatch):
    from segpipe.imageio import write_labels
    from segpipe.report import overlays

    height, width = 4200, 4100  # over REDUCED_ABOVE_PIXELS
    image = np.zeros((height, width), np.uint8)
    image[1000:3000, 500:2500] = 200
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    mask = tmp_path / "mask.tif"
    write_labels(mask, (image > 100).astype(np.uint8))

    def whole(*args, **kwargs):
        raise AssertionError("a large image must not be decoded whole")

    monkeypatch.setattr(overlays, "read_image", whole)
    monkeypatch.setattr(overlays, "read_label_image", whole)
    rgb = overlays._overlay(path, mask)
    assert max(rgb.shape[:2]) <= 2 * overlays.PANEL_PX
    # The outline of the square is drawn where the square is, in panel coordinates.
    outline = (rgb == np.asarray(overlays.OUTLINE_RGB, np.float32)).all(axis=2)
    ys, xs = np.nonzero(outline)
    scale = rgb.shape[0] / height
    assert abs(ys.min() - 1000 * scale) <= 2 and abs(xs.max() - 2499 * scale) <= 2


def test_a_tiled_method_asks_for_memory_by_its_tiles_not_the_largest_image(tmp_path):
    """mem_mb under a fixed tiles setting follows tile size x threads (by design, in
    segpipe.tiles.tiled_job_bytes); whole images ask for the largest image allowed."""
    import re

    from segpipe.methods import get_method

    from conftest import run_snakemake, write_config

    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "a.png", blobs_image(0))
    methods = {"whole": {"kind": "watershed", "tiles": None},
               "small": {"kind": "watershed", "tiles": {"size": 512, "overlap": 32}},
               "large": {"kind": "watershed", "tiles": {"size": 4096, "overlap": 128}}}
    config = write_config(tmp_path / "c.yaml", input_dir=str(images), methods=methods,
                          max_image_pixels=10**8)
    run_snakemake(tmp_path, "--configfile", config, "--until", "list_images")  # the checkpoint
    proc = run_snakemake(tmp_path, "--configfile", config, "-n")
    jobs = re.findall(r"rule segment_shard:.*?wildcards: method=(\w+).*?mem_mb=(\d+)",
                      proc.stdout, flags=re.DOTALL)
    asked = {method: int(memory) for method, memory in jobs}
    assert len(asked) == 3
    per_pixel = get_method("watershed").bytes_per_pixel
    assert asked["whole"] == 500 + per_pixel * 100  # the bytes of 10^8 pixels, in MB
    # Tiles: 2 in flight on the job's 1 thread, the finishing blocks, a whole decoding.
    assert asked["small"] == 500 + int((2 * 512**2 * per_pixel + 200e6 + 3 * 10**8) / 1e6)
    assert asked["small"] < asked["large"] < asked["whole"]
