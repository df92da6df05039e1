"""Masks too large to hold whole: OME-Zarr labels and tiled BigTIFF, written tile by tile
(segpipe.labelstore), read back whole or at a reduced level (segpipe.imageio)."""

import errno
import io
import json
import os
import shutil

import jsonschema
import numpy as np
import pandas as pd
import pytest
import tifffile

import segpipe.labelstore
from segpipe.cleanup import prepare_shard_folder, remove_written
from segpipe.errors import ImageReadError, OutputError
from segpipe.imageio import (
    MASK_SUFFIXES,
    read_label_image,
    read_label_level,
    temporary_path,
    write_labels,
    write_tiff,
)
from segpipe.labelstore import (
    LABEL_NAME,
    open_label_writer,
    read_zarr_labels,
    write_tiled_tiff,
    write_zarr_labels,
    zarr_levels,
)
from segpipe.layout import written_by_segpipe

from conftest import blobs_image, encode, make_image_folder, run_snakemake, write_config

SHAPE = (300, 500)
TILE = 64

# The keys OME-NGFF 0.4 requires (MUST) of a label image's group, and the values it allows,
# written from the specification's text (ngff.openmicroscopy.org/0.4, "multiscales",
# "axes", "coordinateTransformations", "labels" and "image-label").
NGFF_04_LABEL_IMAGE = {
    "type": "object",
    "required": ["multiscales", "image-label"],
    "properties": {
        "multiscales": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["axes", "datasets"],
                "properties": {
                    "version": {"const": "0.4"},
                    "axes": {
                        "type": "array", "minItems": 2, "maxItems": 5,
                        "items": {"type": "object", "required": ["name"],
                                  "properties": {"name": {"type": "string"},
                                                 "type": {"type": "string"}}},
                    },
                    "datasets": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["path", "coordinateTransformations"],
                            "properties": {
                                "path": {"type": "string"},
                                "coordinateTransformations": {
                                    "type": "array", "minItems": 1, "maxItems": 2,
                                    "prefixItems": [{
                                        "type": "object", "required": ["type", "scale"],
                                        "properties": {"type": {"const": "scale"},
                                                       "scale": {"type": "array",
                                                                 "items": {"type": "number"}}},
                                    }],
                                    "items": {"type": "object",
                                              "properties": {"type": {"const": "translation"}}},
                                },
                            },
                        },
                    },
                },
            },
        },
        "image-label": {
            "type": "object",
            "properties": {
                "version": {"const": "0.4"},
                "source": {"type": "object", "properties": {"image": {"type": "string"}}},
                "colors": {"type": "array", "items": {"type": "object",
                                                      "required": ["label-value"]}},
            },
        },
    },
}


def labels(seed=0, shape=SHAPE, high=5000, dtype=np.uint32):
    """Blocky labels (runs of equal values, as masks have), some of them 0."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, high, (shape[0] // 10 + 1, shape[1] // 10 + 1))
    coarse[rng.random(coarse.shape) < 0.3] = 0
    return np.kron(coarse, np.ones((10, 10), np.int64))[: shape[0], : shape[1]].astype(dtype)


def tree(folder):
    """Every file under ``folder`` and its bytes, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def raster_blocks(shape, height, width):
    """(rows, cols) of blocks covering ``shape`` in raster order, ragged at the edges."""
    for r in range(0, shape[0], height):
        for c in range(0, shape[1], width):
            yield slice(r, min(r + height, shape[0])), slice(c, min(c + width, shape[1]))


def zattrs(path, *parts):
    return json.loads(path.joinpath(*parts, ".zattrs").read_text())


# -- OME-Zarr: round trip, metadata, pyramid -------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_a_zarr_mask_reads_back_equal_as_uint32(tmp_path, dtype):
    array = labels(high=np.iinfo(dtype).max, dtype=dtype)
    path = tmp_path / f"000000-a{MASK_SUFFIXES['zarr']}"
    write_labels(path, array)
    back = read_label_image(path)
    assert back.dtype == np.uint32 and back.shape == SHAPE
    np.testing.assert_array_equal(back, array)
    assert os.listdir(tmp_path) == ["000000-a.zarr"]  # no temporary folder left


def test_the_zarr_metadata_is_ngff_0_4_labels_in_zarr_version_2(tmp_path):
    path = tmp_path / "m.zarr"
    write_zarr_labels(path, labels(), chunk=TILE, top_side=100)
    for group in ("", "labels", f"labels/{LABEL_NAME}"):
        assert json.loads((path / group / ".zgroup").read_text()) == {"zarr_format": 2}
    # The labels group lists the label image (NGFF "labels" metadata).
    assert zattrs(path, "labels") == {"labels": [LABEL_NAME]}
    attrs = zattrs(path, "labels", LABEL_NAME)
    jsonschema.validate(attrs, NGFF_04_LABEL_IMAGE)
    multiscales = attrs["multiscales"][0]
    assert [a["type"] for a in multiscales["axes"]] == ["space", "space"]
    assert attrs["image-label"]["source"] == {"image": "../../"}
    for k, dataset in enumerate(multiscales["datasets"]):
        # Exactly one scale, as long as the axes, the level's factor to level 0.
        (scale,) = dataset["coordinateTransformations"]
        assert scale["scale"] == [2.0**k, 2.0**k]
        meta = json.loads((path / "labels" / LABEL_NAME / dataset["path"] / ".zarray").read_text())
        assert meta["zarr_format"] == 2 and meta["dtype"] == "<u4" and meta["fill_value"] == 0
        assert meta["chunks"] == [TILE, TILE] and meta["dimension_separator"] == "/"
        assert meta["compressor"] == {"id": "zlib", "level": 1}
        assert len(meta["shape"]) == len(multiscales["axes"])
    # Chunks are stored under NGFF's nested keys: {row}/{col}.
    assert (path / "labels" / LABEL_NAME / "0" / "4" / "7").is_file()


def test_pyramid_levels_are_the_labels_subsampled_until_the_top_side(tmp_path):
    array = labels()
    path = tmp_path / "m.zarr"
    write_zarr_labels(path, array, chunk=TILE, top_side=100)
    levels = zarr_levels(path)
    # 500 -> 250 -> 125 -> 63: the first longer side at most 100 is the top.
    assert [a.shape for a in levels] == [(300, 500), (150, 250), (75, 125), (38, 63)]
    for k, level in enumerate(levels):
        np.testing.assert_array_equal(level[...], array[:: 2**k, :: 2**k])
        np.testing.assert_array_equal(read_zarr_labels(path, level=k), array[:: 2**k, :: 2**k])
    with pytest.raises(ImageReadError, match="no pyramid level 4"):
        read_zarr_labels(path, level=4)


def test_by_default_a_mask_up_to_1024_pixels_a_side_has_one_level(tmp_path):
    write_zarr_labels(tmp_path / "m.zarr", labels())
    (dataset,) = zattrs(tmp_path / "m.zarr", "labels", LABEL_NAME)["multiscales"][0]["datasets"]
    assert dataset["path"] == "0"
    assert json.loads((tmp_path / f"m.zarr/labels/{LABEL_NAME}/0/.zarray").read_text())[
        "chunks"] == [1024, 1024]


def test_background_chunks_are_not_stored_and_read_as_zero(tmp_path):
    array = np.zeros(SHAPE, np.uint32)
    array[:TILE, :TILE] = 7
    write_zarr_labels(tmp_path / "m.zarr", array, chunk=TILE)
    chunks = [p for p in (tmp_path / f"m.zarr/labels/{LABEL_NAME}/0").rglob("*")
              if p.is_file() and not p.name.startswith(".")]
    assert [p.relative_to(tmp_path / f"m.zarr/labels/{LABEL_NAME}/0").as_posix()
            for p in chunks] == ["0/0"]
    np.testing.assert_array_equal(read_label_image(tmp_path / "m.zarr"), array)


# -- writing tile by tile ---------------------------------------------------------------------

@pytest.mark.parametrize("block", [(TILE, TILE), (70, 90), (SHAPE[0], 130)])
def test_a_zarr_mask_written_in_blocks_is_the_whole_array_writers_byte_for_byte(tmp_path, block):
    array = labels()
    write_zarr_labels(tmp_path / "whole.zarr", array, chunk=TILE, top_side=100)
    with open_label_writer(tmp_path / "tiled.zarr", SHAPE, tile=TILE, top_side=100) as writer:
        for rows, cols in raster_blocks(SHAPE, *block):
            writer.write(rows, cols, array[rows, cols])
    assert tree(tmp_path / "tiled.zarr") == tree(tmp_path / "whole.zarr")
    assert sorted(os.listdir(tmp_path)) == ["tiled.zarr", "whole.zarr"]


def test_zarr_blocks_may_come_in_any_order_and_unwritten_pixels_are_zero(tmp_path):
    array = labels()
    blocks = list(raster_blocks(SHAPE, 70, 90))
    order = np.random.default_rng(1).permutation(len(blocks))
    with open_label_writer(tmp_path / "m.zarr", SHAPE, tile=TILE) as writer:
        for i in order[1:]:  # the first block is never given
            rows, cols = blocks[i]
            writer.write(rows, cols, array[rows, cols])
    expected = array.copy()
    expected[blocks[order[0]]] = 0
    np.testing.assert_array_equal(read_label_image(tmp_path / "m.zarr"), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
@pytest.mark.parametrize("block", [(TILE, TILE), (70, 90), (130, SHAPE[1])])
def test_a_tiff_written_in_raster_order_is_the_whole_tiled_tiff_byte_for_byte(tmp_path, dtype,
                                                                               block):
    array = labels(high=np.iinfo(dtype).max, dtype=dtype)
    write_tiled_tiff(tmp_path / "whole.tif", array, tile=TILE)
    with open_label_writer(tmp_path / "tiled.tif", SHAPE, dtype, tile=TILE) as writer:
        for rows, cols in raster_blocks(SHAPE, *block):
            writer.write(rows, cols, array[rows, cols])
    assert (tmp_path / "tiled.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiled.tif"), array)
    np.testing.assert_array_equal(read_label_image(tmp_path / "tiled.tif"), array)
    with tifffile.TiffFile(tmp_path / "tiled.tif") as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled and page.dtype == dtype
        assert (page.tilelength, page.tilewidth) == (TILE, TILE)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert sorted(os.listdir(tmp_path)) == ["tiled.tif", "whole.tif"]


def test_tiff_blocks_of_one_row_may_come_in_any_order_and_gaps_are_zero(tmp_path):
    array = labels()
    with open_label_writer(tmp_path / "m.tif", SHAPE, tile=TILE) as writer:
        writer.write(slice(0, 100), slice(250, 500), array[:100, 250:])
        writer.write(slice(0, 100), slice(0, 250), array[:100, :250])
        writer.write(slice(100, 200), slice(0, 500), array[100:200])
    expected = array.copy()
    expected[200:] = 0
    np.testing.assert_array_equal(read_label_image(tmp_path / "m.tif"), expected)


def test_a_tiff_block_above_the_rows_written_out_is_refused_and_nothing_is_left(tmp_path):
    array = labels()
    path = tmp_path / "m.tif"
    with pytest.raises(ValueError, match=r"rows 0\.\.64: rows above 128 are already written"), open_label_writer(path, SHAPE, tile=TILE) as writer:
        writer.write(slice(0, 130), slice(None), array[:130])
        writer.write(slice(0, 64), slice(0, 64), array[:64, :64])
    assert os.listdir(tmp_path) == []


def test_a_tiff_block_that_does_not_fit_the_sample_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match="a uint32 block does not fit this uint16 TIFF"), open_label_writer(tmp_path / "m.tif", SHAPE, np.uint16) as writer:
        writer.write(slice(0, 10), slice(0, 10), np.ones((10, 10), np.uint32))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("call", "match"), [
    (lambda p: open_label_writer(p / "m.png", SHAPE), r"no tile-by-tile writer for '\.png'"),
    (lambda p: open_label_writer(p / "m.tif", SHAPE, tile=40), "multiple of 16 pixels, got 40"),
    (lambda p: open_label_writer(p / "m.tif", SHAPE, np.int32), "uint32 TIFF, got int32"),
    (lambda p: open_label_writer(p / "m.zarr", (0, 5)), r"at least 1 x 1 pixels, got \(0, 5\)"),
    (lambda p: write_zarr_labels(p / "m.zarr", np.zeros(SHAPE, np.int64)), "2-D int64"),
])
def test_bad_writer_arguments_name_the_value(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_a_block_that_does_not_fit_its_slices_is_refused(tmp_path, suffix):
    with open_label_writer(tmp_path / f"m{suffix}", SHAPE, tile=TILE) as writer:
        with pytest.raises(ValueError, match=r"block of shape \(5, 5\) does not fit rows 0\.\.4"):
            writer.write(slice(0, 4), slice(0, 5), np.ones((5, 5), np.uint32))
        with pytest.raises(ValueError, match="step 1 inside 0..500"):
            writer.write(slice(0, 4), slice(0, 8, 2), np.ones((4, 4), np.uint32))
        with pytest.raises(ValueError, match="uint32 block, got int64"):
            writer.write(slice(0, 4), slice(0, 4), np.ones((4, 4), np.int64))
    np.testing.assert_array_equal(read_label_image(tmp_path / f"m{suffix}"), 0)


# -- when a TIFF mask becomes tiled BigTIFF -----------------------------------------------------

def test_a_tiff_mask_up_to_the_limit_is_the_plain_tiff_of_before(tmp_path):
    array = labels()
    write_labels(tmp_path / "m.tif", array)
    before = io.BytesIO()
    tifffile.imwrite(before, array, compression="zlib", compressionargs={"level": 1},
                     photometric="minisblack")
    assert (tmp_path / "m.tif").read_bytes() == before.getvalue()


def test_a_tiff_mask_over_the_limit_is_a_tiled_bigtiff(tmp_path, monkeypatch):
    array = labels()
    monkeypatch.setattr(segpipe.labelstore, "TILED_TIFF_PIXELS", array.size - 1)
    write_labels(tmp_path / "m.tif", array)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled
        assert tif.pages[0].tilewidth == segpipe.labelstore.TIFF_TILE
    np.testing.assert_array_equal(read_label_image(tmp_path / "m.tif"), array)
    monkeypatch.setattr(segpipe.labelstore, "TILED_TIFF_PIXELS", array.size)
    write_tiff(tmp_path / "m.tif", array)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert not tif.is_bigtiff and not tif.pages[0].is_tiled


# -- failed writes: nothing half-written, the final path named ---------------------------------

def fail_replace_of(monkeypatch, path, code=errno.ENOSPC):
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst) == os.fspath(path):
            raise OSError(code, os.strerror(code), os.fspath(src), os.fspath(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_a_failed_rename_leaves_no_temporary_and_names_the_final_path(tmp_path, monkeypatch,
                                                                       suffix):
    path = tmp_path / "masks" / f"000000-a{suffix}"
    fail_replace_of(monkeypatch, path)
    with pytest.raises(OutputError) as caught, open_label_writer(path, SHAPE, tile=TILE) as writer:
        writer.write(slice(None), slice(None), labels())
    assert str(caught.value).startswith(f"cannot write {path}: no space left on device (")
    assert ".segpipe-" not in str(caught.value)
    assert os.listdir(path.parent) == []


@pytest.mark.parametrize("failing", [1, 7, 12, 30])
def test_a_file_that_cannot_be_written_fails_the_zarr_mask_whole(tmp_path, monkeypatch, failing):
    """Whichever file fails (metadata, or a chunk while others are being written), the
    temporary folder goes, and no write still under way brings it back."""
    calls = []

    def full_quota(file, mode="r", *args, **kwargs):
        calls.append(file)
        if len(calls) >= failing:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), os.fspath(file))
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(segpipe.labelstore, "open", full_quota, raising=False)
    path = tmp_path / "000000-a.zarr"
    with pytest.raises(OutputError) as caught:
        write_zarr_labels(path, labels(), chunk=TILE, top_side=100)
    assert str(caught.value).startswith(f"cannot write {path}: disk quota exceeded (")
    assert len(calls) >= failing
    assert os.listdir(tmp_path) == []


def test_a_tiff_that_tifffile_cannot_write_fails_whole(tmp_path, monkeypatch):
    real = tifffile.imwrite

    def imwrite(file, data=None, **kwargs):
        def some_tiles():
            for _, tile in zip(range(3), data, strict=False):
                yield tile
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        return real(file, some_tiles(), **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", imwrite)
    path = tmp_path / "m.tif"
    with pytest.raises(OutputError, match=rf"cannot write {path}: input/output error"), open_label_writer(path, SHAPE, tile=TILE) as writer:
        for rows, cols in raster_blocks(SHAPE, TILE, SHAPE[1]):
            writer.write(rows, cols, labels()[rows, cols])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_an_error_in_the_callers_block_leaves_nothing(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    with pytest.raises(RuntimeError, match="the method failed"), open_label_writer(path, SHAPE, tile=TILE) as writer:
        writer.write(slice(0, TILE), slice(None), labels()[:TILE])
        raise RuntimeError("the method failed")
    assert os.listdir(tmp_path) == []


def test_a_zarr_mask_replaces_an_older_one_and_a_killed_writes_leftover(tmp_path):
    path = tmp_path / "000000-a.zarr"
    write_zarr_labels(path, labels(seed=1), chunk=TILE)
    leftover = temporary_path(path)
    (leftover / "labels").mkdir(parents=True)
    (leftover / "labels" / ".zattrs").write_text("{half written")
    write_zarr_labels(path, labels(seed=2), chunk=TILE)
    np.testing.assert_array_equal(read_label_image(path), labels(seed=2))
    assert os.listdir(tmp_path) == [path.name]


def test_a_folder_that_is_not_an_ome_zarr_mask_is_a_read_error(tmp_path):
    (tmp_path / "m.zarr").mkdir()
    with pytest.raises(ImageReadError, match=r"m\.zarr.*not an OME-Zarr label image"):
        read_label_image(tmp_path / "m.zarr")


# -- reduced levels for the report ------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".zarr", ".tif", ".png"])
@pytest.mark.parametrize(("max_side", "step"), [(600, 1), (500, 1), (250, 2), (200, 2),
                                                (63, 8), (10, 32), (1, 256)])
def test_a_reduced_level_is_the_labels_subsampled(tmp_path, monkeypatch, suffix, max_side, step):
    array = labels(dtype=np.uint16)
    path = tmp_path / f"m{suffix}"
    if suffix == ".zarr":
        write_zarr_labels(path, array, chunk=TILE, top_side=100)
    elif suffix == ".tif":
        write_tiled_tiff(path, array, tile=TILE)
    else:
        write_labels(path, array)
    np.testing.assert_array_equal(read_label_level(path, max_side), array[::step, ::step])


def test_a_reduced_zarr_level_is_read_alone(tmp_path, monkeypatch):
    array = labels()
    path = tmp_path / "m.zarr"
    write_zarr_labels(path, array, chunk=TILE, top_side=100)
    for rows in (path / "labels" / LABEL_NAME / "0").iterdir():  # level 0's chunks go
        if rows.is_dir():
            shutil.rmtree(rows)
    assert read_label_image(path).max() == 0
    np.testing.assert_array_equal(read_label_level(path, 125), array[::4, ::4])
    with pytest.raises(ValueError, match="max_side must be >= 1, got 0"):
        read_label_level(path, 0)


# -- the layout and the cleanups know a zarr mask as segpipe's, whole ------------------------

def test_every_file_of_a_zarr_mask_is_segpipes_and_a_cleanup_removes_it_whole(tmp_path):
    shard = tmp_path / "masks" / "otsu" / "000000"
    write_zarr_labels(shard / "000000-a.zarr", labels(), chunk=TILE, top_side=100)
    (shard / "notes.txt").write_text("mine")
    files = [p.relative_to(tmp_path).as_posix() for p in shard.rglob("*") if p.is_file()]
    assert len(files) > 20
    assert all(written_by_segpipe(f) for f in files if not f.endswith("notes.txt"))
    removal = remove_written(tmp_path)
    assert removal.removed == len(files) - 1 and removal.foreign == [str(shard / "notes.txt")]
    assert os.listdir(shard) == ["notes.txt"]


def test_a_job_start_removes_a_killed_writes_temporary_folder(tmp_path):
    shard = tmp_path / "000000"
    path = shard / "000001-b.zarr"
    leftover = temporary_path(path)
    (leftover / "labels").mkdir(parents=True)
    (leftover / "labels" / ".zgroup").write_text("{}")
    write_zarr_labels(shard / "000000-a.zarr", labels(), chunk=TILE)
    prepare_shard_folder(shard, [str(shard / "000000-a.zarr")])
    assert not leftover.exists()


# -- end to end: the same run in zarr and in tiff ------------------------------------------------

@pytest.mark.e2e
def test_a_zarr_run_writes_the_masks_of_a_tiff_run(tmp_path):
    images = tmp_path / "images"
    make_image_folder(images)
    (images / "broken.png").unlink()
    (images / "big.png").write_bytes(encode(blobs_image(9, shape=(96, 160)), ".png"))
    methods = {"otsu": {"kind": "threshold"},
               "ws": {"kind": "watershed", "foreground": "bright", "min_size": 8}}
    runs = {}
    for fmt in ("tiff", "zarr"):
        cfg = write_config(tmp_path / f"{fmt}.yaml", input_dir=str(images), shard_size=3,
                           methods=methods, mask_format=fmt, report=fmt == "zarr")
        work = tmp_path / fmt
        work.mkdir()
        run_snakemake(work, "--configfile", cfg)
        runs[fmt] = (work, pd.read_parquet(work / "results/summary/metrics.parquet")
                     .set_index(["method", "image_id"]).sort_index())
    (tiff_work, tiff), (zarr_work, zarr) = runs["tiff"], runs["zarr"]
    assert len(zarr) == 2 * 8 and (zarr["status"] == "ok").all() and (tiff["status"] == "ok").all()
    assert zarr["mask_path"].str.endswith(".zarr").all()
    for key, row in zarr.iterrows():
        mask = zarr_work / row["mask_path"]
        assert mask.is_dir() and (mask / "labels" / LABEL_NAME / ".zattrs").is_file()
        np.testing.assert_array_equal(read_label_image(mask),
                                      read_label_image(tiff_work / tiff.loc[key, "mask_path"]))
    same = ["n_labels", "height", "width", "foreground_fraction"]
    pd.testing.assert_frame_equal(zarr[same], tiff[same])
    objects = {fmt: pd.read_parquet(work / "results/summary/objects.parquet")
               for fmt, (work, _) in runs.items()}
    pd.testing.assert_frame_equal(objects["zarr"], objects["tiff"])
    # The summary and the report, whose overlays read the masks back.
    assert (zarr_work / "results/summary/methods.parquet").is_file()
    for method in methods:
        assert (zarr_work / f"results/report/overlays/{method}.png").stat().st_size > 0
    assert (zarr_work / "results/report.html").stat().st_size > 0
