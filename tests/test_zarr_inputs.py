"""OME-Zarr images as inputs: listed as one image, read whole or tile by tile through zarr."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import zarr

from segpipe.errors import ImageReadError
from segpipe.imageio import read_image, write_labels
from segpipe.manifest import LABELS_ONLY, scan, update_manifest
from segpipe.planes import Reading
from segpipe.sources import ZarrTileSource, image_shape, open_image, plane_ids, reduced_image
from segpipe.tiles import ArraySource, Tiling

from conftest import blobs_image, encode


def write_ome_zarr(path, data, axes, *, zarr_format=2, chunks=None, names=(), version=None):
    """A one-level OME-Zarr image: NGFF 0.4 attributes at the root (format 2), or NGFF 0.5
    under ``ome`` (format 3); ``axes`` one letter per dimension of ``data``."""
    root = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    chunks = chunks or tuple(1 if a in "tcz" else 16 for a in axes)
    # NGFF 0.4 stores format 2 chunks under nested keys ("0/1/2"), format 3's default.
    keys = {"name": "v2", "separator": "/"} if zarr_format == 2 else None
    array = root.create_array("0", shape=data.shape, chunks=chunks, dtype=data.dtype,
                              chunk_key_encoding=keys)
    array[...] = data
    kinds = {"t": "time", "c": "channel"}
    multiscales = [{"version": version or "0.4",
                    "axes": [{"name": a, "type": kinds.get(a, "space")} for a in axes],
                    "datasets": [{"path": "0", "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0] * len(axes)}]}]}]
    attrs = {"multiscales": multiscales}
    if names:
        attrs["omero"] = {"channels": [{"label": n} for n in names]}
    if zarr_format == 3:
        attrs = {"ome": {"version": "0.5", **attrs}}
    root.attrs.put(attrs)
    return path


TILING = Tiling(16, 4)


def open_tiled(path, reading=None, *, mode="grey", tiles=TILING, max_pixels=10**6,
               max_tiled_pixels=10**6, notes=None, info=None):
    return open_image(path, mode=mode, reading=reading, tiles=tiles, bytes_per_pixel=72,
                      memory_mb=None, max_pixels=max_pixels, max_tiled_pixels=max_tiled_pixels,
                      notes=[] if notes is None else notes, info={} if info is None else info)


def listing(tmp_path, **kwargs):
    return dict(shard_dir=tmp_path / "shards", manifest_out=tmp_path / "images.parquet",
                skipped_out=tmp_path / "skipped.parquet", shard_size=10, **kwargs)


# ---------------------------------------------------------------- listing


def test_a_zarr_folder_is_listed_as_one_image_and_a_mask_is_skipped(tmp_path):
    images = tmp_path / "images"
    (images / "plate").mkdir(parents=True)
    (images / "a.png").write_bytes(encode(blobs_image(1), ".png"))
    write_ome_zarr(images / "scan.ome.zarr", blobs_image(2), "yx")
    write_ome_zarr(images / "plate" / "B.ZARR", blobs_image(3)[None], "cyx", zarr_format=3)
    (images / "empty.zarr").mkdir()
    # A mask segpipe wrote (mask_format: zarr), under an out_dir inside the input folder.
    write_labels(images / "results" / "masks" / "m" / "000000" / "000000-a.zarr",
                 np.ones((4, 5), np.uint8))
    update_manifest(images, **listing(tmp_path))
    manifest = pq.read_table(tmp_path / "images.parquet").to_pydict()
    # The folders are images (their ids their paths), their chunk files no entries at all;
    # the folder without an image is listed too, for its row to say what is wrong.
    assert sorted(manifest["image_id"]) == ["a.png", "empty.zarr", "plate/B.ZARR",
                                            "scan.ome.zarr"]
    skipped = pq.read_table(tmp_path / "skipped.parquet").to_pydict()
    assert skipped == {"path": ["results/masks/m/000000/000000-a.zarr"],
                       "reason": [LABELS_ONLY]}
    # A folder's size is its files'.
    size = dict(zip(manifest["image_id"], manifest["size"]))["scan.ome.zarr"]
    assert size == sum(os.path.getsize(os.path.join(d, f))
                       for d, _, fs in os.walk(images / "scan.ome.zarr") for f in fs)


def test_include_and_exclude_treat_a_zarr_folder_as_a_file(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(encode(blobs_image(1), ".png"))
    write_ome_zarr(images / "s.zarr", blobs_image(2), "yx")
    update_manifest(images, **listing(tmp_path, include=["*.png"]))
    assert pq.read_table(tmp_path / "images.parquet").column("image_id").to_pylist() == ["a.png"]
    update_manifest(images, **listing(tmp_path / "b", exclude=["*.png"]))
    assert pq.read_table(tmp_path / "b/images.parquet").column("image_id").to_pylist() == ["s.zarr"]


def test_a_rewritten_chunk_changes_the_images_signature_and_hash(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_ome_zarr(images / "s.zarr", blobs_image(2), "yx")
    # Every file and folder of the image a day old: a rewritten chunk is newer.
    for folder, _, files in os.walk(images / "s.zarr"):
        for name in (".", *files):
            os.utime(os.path.join(folder, name), ns=(0, 86_400 * 10**9))
    update_manifest(images, **listing(tmp_path, hash_images=True))
    before = pq.read_table(tmp_path / "images.parquet").to_pylist()[0]
    assert before["mtime_ns"] == 86_400 * 10**9
    zarr.open_array(images / "s.zarr" / "0", mode="r+")[16:32, 32:48] = 7
    update_manifest(images, **listing(tmp_path, hash_images=True))
    after = pq.read_table(tmp_path / "images.parquet").to_pylist()[0]
    assert after["mtime_ns"] > before["mtime_ns"]
    assert after["sha256"] != before["sha256"] and len(after["sha256"]) == 64


def test_z_all_gives_one_image_id_per_slice_of_a_zarr_stack(tmp_path):
    path = write_ome_zarr(tmp_path / "s.zarr", np.zeros((2, 3, 8, 8), np.uint8), "tzyx")
    assert plane_ids("s.zarr", path, Reading(z="all")) == [
        "s.zarr#z=0", "s.zarr#z=1", "s.zarr#z=2"]
    assert plane_ids("s.zarr", path, Reading(time="all", z="all"))[-1] == "s.zarr#t=1,z=2"
    (tmp_path / "bad.zarr").mkdir()
    assert plane_ids("bad.zarr", tmp_path / "bad.zarr", Reading(z="all")) == ["bad.zarr"]


# ---------------------------------------------------------------- reading whole


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_whole_read_is_the_stored_array(tmp_path, zarr_format, dtype):
    data = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (37, 45), dtype=dtype)
    path = write_ome_zarr(tmp_path / "a.ome.zarr", data, "yx", zarr_format=zarr_format)
    assert image_shape(path) == (37, 45)
    notes, info = [], {}
    image = read_image(path, notes=notes, info=info)
    assert image.dtype == dtype and np.array_equal(image, data)
    assert notes == [] and info == {"intensity_lo": 0.0,
                                    "intensity_hi": float(np.iinfo(dtype).max)}
    assert np.array_equal(read_image(path, mode="rgb"), np.dstack([data] * 3))


@pytest.mark.parametrize("reading", [
    Reading(),
    Reading(channel=1, z=2),
    Reading(channel="DAPI", z="mean", time=1),
    Reading(channel=[0, 2], z="max", time=-1),
    Reading(z=0, intensity_range="image"),
    Reading(channel=2, intensity_range={"percentile": [1, 99]}),
])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_channel_z_and_time_are_chosen_as_for_the_same_tiff(tmp_path, reading, zarr_format):
    """The same stack as an OME-Zarr image and as a TIFF with the same axes and channel
    names: the same image, the same notes, the same intensity range."""
    data = np.random.default_rng(1).integers(0, 4096, (2, 3, 4, 20, 30), dtype=np.uint16)
    names = ("GFP", "DAPI", "RFP")
    path = write_ome_zarr(tmp_path / "s.zarr", data, "tczyx", zarr_format=zarr_format,
                          names=names)
    tiff = tmp_path / "s.ome.tif"
    tifffile.imwrite(tiff, data, ome=True, metadata={"axes": "TCZYX", "Channel": {"Name": list(names)}})
    for mode in ("grey", "rgb"):
        got, want = ([], {}), ([], {})
        image = read_image(path, mode=mode, reading=reading, notes=got[0], info=got[1])
        expected = read_image(tiff, mode=mode, reading=reading, notes=want[0], info=want[1])
        assert image.dtype == expected.dtype and np.array_equal(image, expected)
        assert got == want


def test_selection_by_hand(tmp_path):
    data = np.random.default_rng(2).integers(0, 255, (3, 4, 10, 12), dtype=np.uint8)
    path = write_ome_zarr(tmp_path / "s.zarr", data, "czyx")
    assert np.array_equal(read_image(path, reading=Reading(channel=2, z=1)), data[2, 1])
    assert np.array_equal(read_image(path, reading=Reading(channel=-1)), data[-1].max(axis=0))
    notes = []
    assert np.array_equal(read_image(path, notes=notes), data[0].max(axis=0))
    assert notes == ["4 z-slices: maximum projection (set z)",
                     "3 channels: channel 0 used (set channel)"]


@pytest.mark.parametrize("reading, message", [
    (Reading(channel=3), "channel 3 asked for, but the image has 3 channels"),
    (Reading(channel="DAPI"), "no channel named 'DAPI'"),
    (Reading(z=5), "z-slices index 5 asked for, but the image has 4"),
])
def test_a_setting_the_image_cannot_satisfy_names_the_folder(tmp_path, reading, message):
    path = write_ome_zarr(tmp_path / "s.zarr", np.zeros((3, 4, 8, 8), np.uint8), "czyx")
    for read in (lambda: read_image(path, reading=reading), lambda: open_tiled(path, reading)):
        with pytest.raises(ImageReadError, match=message) as err:
            read()
        assert str(path) in str(err.value)


def broken_folders(root):
    """``.zarr`` folders that are no OME-Zarr image, and what their error says."""
    (root / "empty.zarr").mkdir()
    plain = zarr.open_group(root / "plain.zarr", mode="w", zarr_format=2)
    plain.create_array("0", shape=(8, 8), dtype=np.uint8)
    array_only = root / "array.zarr"
    zarr.create_array(array_only, shape=(8, 8), dtype=np.uint8, zarr_format=3)
    axes = write_ome_zarr(root / "axes.zarr", np.zeros((2, 8, 8), np.uint8), "cyx")
    attrs = dict(zarr.open_group(axes, mode="r").attrs)
    attrs["multiscales"][0]["axes"][0] = {"name": "angle"}
    zarr.open_group(axes, mode="r+").attrs.put(attrs)
    level = write_ome_zarr(root / "level.zarr", np.zeros((8, 8), np.uint8), "yx")
    attrs = dict(zarr.open_group(level, mode="r").attrs)
    attrs["multiscales"][0]["datasets"][0]["path"] = "9"
    zarr.open_group(level, mode="r+").attrs.put(attrs)
    return {"empty.zarr": "not a readable Zarr group",
            "plain.zarr": "no OME-NGFF multiscales metadata",
            "array.zarr": "not a readable Zarr group",
            "axes.zarr": r"axes \['angle', 'y', 'x'\]",
            "level.zarr": "malformed OME-NGFF multiscales, or level 0 missing"}


def test_a_folder_that_is_no_ome_zarr_image_is_an_error_naming_it(tmp_path):
    for name, message in broken_folders(tmp_path).items():
        path = tmp_path / name
        assert image_shape(path) is None
        for read in (read_image, open_tiled):
            with pytest.raises(ImageReadError, match=message) as err:
                read(path)
            assert str(path) in str(err.value), name


def test_a_corrupt_chunk_fails_the_read_that_needs_it_only(tmp_path):
    """A region reads the chunks it touches, of the channel it keeps, and no other: a
    corrupt chunk elsewhere does not stop it."""
    data = np.random.default_rng(3).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    path = write_ome_zarr(tmp_path / "s.zarr", data, "cyx")
    (path / "0" / "0" / "1" / "1").write_bytes(b"not zlib")  # channel 0, bottom right
    source = open_tiled(path, Reading(channel=1)).source
    assert np.array_equal(source.read(slice(0, 32), slice(0, 32)), data[1])
    source = open_tiled(path, Reading(channel=0)).source
    assert np.array_equal(source.read(slice(0, 16), slice(0, 32)), data[0, :16])
    with pytest.raises(ImageReadError, match="cannot read the Zarr array") as err:
        source.read(slice(10, 20), slice(10, 20))
    assert str(path) in str(err.value)
    with pytest.raises(ImageReadError, match="cannot read the Zarr array"):
        read_image(path, reading=Reading(channel=0))


# ---------------------------------------------------------------- reading tile by tile


@pytest.mark.parametrize("mode", ["grey", "rgb"])
@pytest.mark.parametrize("axes, shape, reading", [
    ("yx", (45, 70), Reading()),
    ("czyx", (3, 2, 45, 70), Reading(channel=1)),
    ("tczyx", (2, 3, 4, 45, 70), Reading(channel=[0, 2], z="mean", time=1)),
    ("cyx", (3, 45, 70), Reading(channel=2, intensity_range=[10, 200])),
])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_tiled_read_gives_what_the_whole_read_gives_there(tmp_path, mode, axes, shape,
                                                           reading, zarr_format):
    data = np.random.default_rng(4).integers(0, 65535, shape, dtype=np.uint16)
    path = write_ome_zarr(tmp_path / "s.zarr", data, axes, zarr_format=zarr_format,
                          chunks=tuple(1 if a in "tcz" else 16 for a in axes))
    notes, info, whole_notes, whole_info = [], {}, [], {}
    opened = open_tiled(path, reading, mode=mode, notes=notes, info=info)
    assert isinstance(opened.source, ZarrTileSource) and opened.tiling == Tiling(16, 4)
    whole = read_image(path, mode=mode, reading=reading, notes=whole_notes, info=whole_info)
    assert opened.source.shape == whole.shape and opened.source.dtype == whole.dtype
    for rows, cols in [(slice(0, 45), slice(0, 70)), (slice(13, 31), slice(15, 17)),
                       (slice(44, 45), slice(0, 1)), (slice(16, 32), slice(48, 64))]:
        assert np.array_equal(opened.source.read(rows, cols), whole[rows, cols])
    assert notes == whole_notes and info == whole_info


def test_intensity_ranges_that_need_the_whole_image_read_it_whole(tmp_path):
    data = np.linspace(0, 5, 40 * 40, dtype=np.float32).reshape(40, 40)
    path = write_ome_zarr(tmp_path / "f.zarr", data, "yx")
    for reading in (Reading(intensity_range="image"), Reading()):
        opened = open_tiled(path, reading)
        assert isinstance(opened.source, ArraySource)
        assert np.array_equal(opened.source.image, read_image(path, reading=reading))
    # ... bounded by max_image_pixels, as every whole decoding.
    with pytest.raises(ImageReadError, match="larger than max_image_pixels"):
        open_tiled(path, Reading(intensity_range="image"), max_pixels=1000)
    # A fixed range needs none: read tile by tile.
    opened = open_tiled(path, Reading(intensity_range=[0, 5]), max_pixels=1000)
    assert isinstance(opened.source, ZarrTileSource)
    assert np.array_equal(opened.source.read(slice(0, 40), slice(0, 40)),
                          read_image(path, reading=Reading(intensity_range=[0, 5])))


def test_limits_whole_by_max_image_pixels_tiled_by_max_tiled_pixels(tmp_path):
    data = np.zeros((4, 40, 50), np.uint8)
    path = write_ome_zarr(tmp_path / "s.zarr", data, "zyx")
    with pytest.raises(ImageReadError, match="larger than max_image_pixels") as err:
        read_image(path, max_pixels=1999)
    assert str(path) in str(err.value)
    # A projection reads every slice: bounded as a TIFF stack is, by 3 x max_image_pixels;
    # one slice is within.
    with pytest.raises(ImageReadError, match="more than 3 x max_image_pixels"):
        read_image(path, max_pixels=2000, reading=Reading(z="max"))
    assert read_image(path, max_pixels=2000, reading=Reading(z=3)).shape == (40, 50)
    # Within the tiled limit, the same image is read tile by tile (auto: too large whole).
    assert isinstance(open_tiled(path, tiles="auto", max_pixels=1999).source, ZarrTileSource)
    with pytest.raises(ImageReadError, match="larger than max_tiled_pixels"):
        open_tiled(path, max_tiled_pixels=1999)
    # Untiled and within the limit: read whole, as today.
    opened = open_tiled(path, Reading(z=1), tiles=None)
    assert opened.tiling is None and opened.image.shape == (40, 50)


def test_ngff_before_0_3_and_bioformats2raw_layout(tmp_path):
    data = np.random.default_rng(5).integers(0, 255, (1, 2, 1, 20, 24), dtype=np.uint8)
    old = write_ome_zarr(tmp_path / "old.zarr", data, "tczyx", version="0.2")
    attrs = dict(zarr.open_group(old, mode="r").attrs)
    del attrs["multiscales"][0]["axes"]  # NGFF 0.1 and 0.2 name none: 5-D is t, c, z, y, x
    zarr.open_group(old, mode="r+").attrs.put(attrs)
    assert np.array_equal(read_image(old, reading=Reading(channel=1)), data[0, 1, 0])
    # bioformats2raw: the image is series 0, a group below the root.
    root = zarr.open_group(tmp_path / "b2r.zarr", mode="w", zarr_format=2)
    root.attrs.put({"bioformats2raw.layout": 3})
    write_ome_zarr(tmp_path / "b2r.zarr" / "0", data[0, 0], "zyx")
    assert np.array_equal(read_image(tmp_path / "b2r.zarr"), data[0, 0, 0])
    assert [k for k, _, _ in scan(tmp_path)] == ["file", "file"]


def test_report_reduced_image_reads_a_subsampled_zarr(tmp_path):
    data = np.random.default_rng(6).integers(0, 255, (2, 64, 48), dtype=np.uint8)
    path = write_ome_zarr(tmp_path / "s.zarr", data, "cyx")
    reduced = reduced_image(path, 16, reading=Reading(channel=1))
    assert np.array_equal(reduced, np.dstack([data[1, ::4, ::4]] * 3))


# ---------------------------------------------------------------- the workflow


@pytest.mark.e2e
def test_a_tiled_zarr_input_gets_the_mask_of_the_same_image_as_png(tmp_path):
    """A .zarr input tiled through zarr, the same image as a PNG and as a TIFF, and a
    broken .zarr folder: the three images agree mask for mask, the broken one gets an
    error row naming it; out_dir is inside the input folder with mask_format zarr, and a
    second listing does not take the masks for inputs."""
    import pandas as pd

    from segpipe.imageio import read_label_image

    from conftest import run_snakemake, write_config

    images = tmp_path / "images"
    images.mkdir()
    grey = blobs_image(3, shape=(150, 200))
    (images / "scan.png").write_bytes(encode(grey, ".png"))
    tifffile.imwrite(images / "scan.tif", grey)
    write_ome_zarr(images / "scan.ome.zarr", grey[None], "cyx", chunks=(1, 32, 32))
    (images / "broken.zarr").mkdir()
    (images / "broken.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), out_dir=str(images / "out"),
                       tiles={"size": 64, "overlap": 24}, mask_format="zarr",
                       methods={"otsu": {"kind": "threshold"}, "ws": {"kind": "watershed"}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    rows = pd.read_parquet(images / "out/summary/metrics.parquet").set_index(["method", "image_id"])
    broken = rows.xs("broken.zarr", level="image_id")
    assert (broken["status"] == "error").all()
    assert broken["error"].str.contains("broken.zarr").all()
    assert broken["error"].str.contains("no OME-NGFF multiscales").all()
    ok = rows.drop("broken.zarr", level="image_id")
    assert (ok["status"] == "ok").all(), ok["error"].dropna().tolist()
    assert (ok["tiles"] > 1).all()
    for method in ("otsu", "ws"):
        masks = {i: read_label_image(work / ok.loc[(method, i), "mask_path"])
                 for i in ("scan.png", "scan.tif", "scan.ome.zarr")}
        assert masks["scan.png"].max() > 0
        for image_id in ("scan.tif", "scan.ome.zarr"):
            assert np.array_equal(masks[image_id], masks["scan.png"]), (method, image_id)
    # The masks under out/ are OME-Zarr labels: a new listing skips them.
    run_snakemake(work, "--configfile", cfg)
    listed = pd.read_parquet(images / "out/manifest/images.parquet")["image_id"]
    assert sorted(listed) == ["broken.zarr", "scan.ome.zarr", "scan.png", "scan.tif"]
    skipped = pd.read_parquet(images / "out/manifest/skipped.parquet")
    masks = skipped[skipped["path"].str.startswith("out/masks/")]
    assert len(masks) == len(ok) and (masks["reason"] == LABELS_ONLY).all()
