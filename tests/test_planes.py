"""Channels, slices, time points and sample types of microscopy files (issue 11)."""

import numpy as np
import pytest
import tifffile

from segpipe.errors import ImageReadError
from segpipe.imageio import read_image
from segpipe.planes import Reading, normalise


def read(path, **settings):
    notes, info = [], {}
    image = read_image(path, reading=Reading(**settings), notes=notes, info=info)
    return image, notes, info


def stack(shape, dtype=np.uint16):
    """Planes whose values say where they come from: plane k holds 100 * (k + 1)."""
    planes = np.arange(int(np.prod(shape[:-2])), dtype=np.int64).reshape(shape[:-2])
    return ((planes[..., None, None] + 1) * 100 + np.zeros(shape[-2:], np.int64)).astype(dtype)


def test_two_channels_default_to_channel_0_with_a_note(tmp_path):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, stack((2, 8, 9)), imagej=True, metadata={"axes": "CYX"})
    image, notes, _ = read(path)
    assert image.shape == (8, 9) and (image == 100).all()
    assert notes == ["2 channels: channel 0 used (set channel)"]
    image, notes, _ = read(path, channel=1)
    assert (image == 200).all() and notes == []
    image, _, _ = read(path, channel=[0, 1])  # combined by their maximum
    assert (image == 200).all()
    with pytest.raises(ImageReadError, match="c.tif: channel 2 asked for, but the image has 2"):
        read(path, channel=2)


def test_ome_channel_names_select_channels(tmp_path):
    path = tmp_path / "c.ome.tif"
    tifffile.imwrite(path, stack((3, 6, 7)), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    image, _, _ = read(path, channel="GFP")
    assert (image == 200).all()
    with pytest.raises(ImageReadError, match="no channel named 'YFP'.*'DAPI', 'GFP', 'RFP'"):
        read(path, channel="YFP")


def test_z_stacks_default_to_the_maximum_projection_and_take_settings(tmp_path):
    path = tmp_path / "z.tif"
    data = stack((5, 6, 7))
    data[2, 0, 0] = 60000
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    image, notes, _ = read(path)
    assert image[0, 0] == 60000 and image[1, 1] == 500
    assert notes == ["5 z-slices: maximum projection (set z)"]
    assert (read(path, z=1)[0] == 200).all()
    assert read(path, z="mean")[0][1, 1] == 300
    with pytest.raises(ImageReadError, match="z-slices index 9 asked for, but the image has 5"):
        read(path, z=9)


def test_time_series_default_to_the_first_point(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, stack((3, 2, 6, 7)), imagej=True, metadata={"axes": "TZYX"})
    image, notes, _ = read(path)
    assert (image == 200).all()  # time 0, maximum of its two slices (100, 200)
    assert notes == ["3 time points: the first used (set time)",
                     "2 z-slices: maximum projection (set z)"]
    assert (read(path, time=2, z=0)[0] == 500).all()


def test_rgb_tiff_is_colour_not_channels(tmp_path):
    path = tmp_path / "rgb.tif"
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    tifffile.imwrite(path, rgb, photometric="rgb")
    grey, notes, _ = read(path)
    assert notes == [] and grey.dtype == np.uint8 and (grey == round(0.299 * 200)).all()
    assert (read_image(path, mode="rgb") == rgb).all()


def test_twelve_bit_images_in_16_bit_containers(tmp_path):
    path = tmp_path / "12bit.tif"
    data = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    tifffile.imwrite(path, data)
    as_is, _, info = read(path)
    assert (as_is == data).all() and info == {"intensity_lo": 0.0, "intensity_hi": 65535.0}
    stretched, _, info = read(path, intensity_range="image")
    assert stretched.max() == 65535 and info["intensity_hi"] == 4095
    clipped, _, info = read(path, intensity_range={"percentile": [1, 99]})
    assert info["intensity_lo"] == pytest.approx(np.percentile(data, 1))
    assert (clipped == 65535).mean() == pytest.approx(0.01, abs=0.002)
    fixed, _, _ = read(path, intensity_range=[0, 4095])
    np.testing.assert_array_equal(fixed, stretched)


def test_float_deconvolution_output_is_scaled_with_a_note(tmp_path):
    path = tmp_path / "decon.tif"
    data = np.linspace(-0.5, 812.25, 30, dtype=np.float32).reshape(5, 6)
    data[0, 0] = np.nan
    tifffile.imwrite(path, data)
    image, notes, info = read(path)
    assert image.dtype == np.uint16 and image[0, 0] == 0 and image.max() == 65535
    assert "outside 0..1" in notes[0] and info["intensity_hi"] == pytest.approx(812.25)
    inside = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    tifffile.imwrite(path, inside)
    image, notes, _ = read(path)
    assert notes == [] and image[-1, -1] == 65535 and image[0, 0] == 0


def test_signed_camera_data_outside_16_bits_maps_its_range():
    data = np.array([[-200, 0, 1800]], np.int16)
    notes = []
    out, lo, hi = normalise(data, "dtype", notes)
    assert (lo, hi) == (-200, 1800) and out.tolist() == [[0, 6554, 65535]]
    assert "int16 samples outside 0..65535" in notes[0]


def test_a_blank_image_is_blank_with_a_note():
    notes = []
    out, _, _ = normalise(np.full((2, 2), 7.5, np.float32), "image", notes)
    assert (out == 0).all() and "blank" in notes[0]


def test_settings_for_stacks_leave_a_note_on_single_images(tmp_path):
    path = tmp_path / "single.tif"
    tifffile.imwrite(path, np.full((4, 5), 300, np.uint16))
    image, notes, _ = read(path, channel="DAPI", time=2)
    assert (image == 300).all()
    assert notes == ["no time points: time points index 2 does not apply",
                     "one channel: channel 'DAPI' does not apply, the only channel used"]


def test_pages_of_a_plain_tiff_are_channels_or_slices_as_the_settings_say(tmp_path):
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, stack((3, 4, 5)), photometric="minisblack")  # no axes metadata
    image, notes, _ = read(path)
    assert (image == 100).all()
    assert notes == ["multi-page file (3 pages): only the first page was segmented"]
    image, notes, _ = read(path, channel=2)
    assert (image == 300).all() and notes == []
    image, notes, _ = read(path, z="max")
    assert (image == 300).all() and notes == []


def test_a_stack_larger_than_the_pixel_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((40, 10, 10), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match=r"big.tif: stack of shape \(40, 10, 10\) \(ZYX\)"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=2000).shape == (10, 10)


def test_z_all_lists_each_slice_and_reads_it(tmp_path):
    import pandas as pd

    from segpipe.manifest import update_manifest
    from segpipe.planes import for_plane, split_plane

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", stack((3, 4, 5)), imagej=True,
                     metadata={"axes": "ZYX"})
    tifffile.imwrite(folder / "movie.tif", stack((2, 2, 4, 5)), imagej=True,
                     metadata={"axes": "TZYX"})
    tifffile.imwrite(folder / "single.tif", stack((4, 5)))
    reading = Reading(z="all")
    update_manifest(folder, shard_dir=tmp_path / "shards", shard_size=10,
                    manifest_out=tmp_path / "m.parquet", skipped_out=tmp_path / "s.parquet",
                    reading=reading)
    ids = sorted(pd.read_parquet(tmp_path / "m.parquet")["image_id"])
    assert ids == ["movie.tif#z=0", "movie.tif#z=1", "single.tif",
                   "stack.tif#z=0", "stack.tif#z=1", "stack.tif#z=2"]
    rel, plane = split_plane("stack.tif#z=2")
    image = read_image(folder / rel, reading=for_plane(reading, plane))
    assert (image == 300).all()
    notes = []
    read_image(folder / "movie.tif", reading=for_plane(reading, {"z": 1}), notes=notes)
    assert notes == ["2 time points: the first used (set time)"]
    both = Reading(z="all", time="all")
    from segpipe.sources import plane_ids

    assert plane_ids("movie.tif", folder / "movie.tif", both) == [
        "movie.tif#t=0,z=0", "movie.tif#t=0,z=1", "movie.tif#t=1,z=0", "movie.tif#t=1,z=1"]


def test_a_file_named_like_a_plane_is_itself(tmp_path):
    from segpipe.planes import split_plane

    (tmp_path / "odd.tif#z=1").write_bytes(b"x")
    assert split_plane("odd.tif#z=1", tmp_path) == ("odd.tif#z=1", {})
    assert split_plane("odd.tif#z=2", tmp_path) == ("odd.tif", {"z": 2})
