import os

import numpy as np
import pytest
from PIL import Image

from segpipe.errors import ImageReadError
from segpipe.imageio import label_dtype, read_image, read_label_image, write_labels, write_png

from conftest import blobs_image, encode

LUMA = np.array([0.299, 0.587, 0.114])


def save_pil(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_grey_8bit_lossless_formats_read_exactly(tmp_path, suffix):
    grey = blobs_image(0)
    path = tmp_path / f"x{suffix}"
    path.write_bytes(encode(grey, suffix))
    out = read_image(path, mode="grey")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey)
    rgb = read_image(path, mode="rgb")
    assert rgb.shape == grey.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


def test_16bit_png_keeps_its_depth(tmp_path):
    grey = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    path = tmp_path / "x16.png"
    path.write_bytes(encode(grey, ".png"))
    out = read_image(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, grey)
    assert read_image(path, mode="rgb").dtype == np.uint16


def test_colour_to_grey_uses_bt601_luma(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (10, 200, 90)
    path = tmp_path / "c.png"
    path.write_bytes(encode(rgb, ".png"))
    grey = read_image(path)
    expected = np.round(rgb.astype(float) @ LUMA)
    assert np.abs(grey.astype(float) - expected).max() <= 1
    np.testing.assert_array_equal(read_image(path, mode="rgb"), rgb)


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = (0, 200, 0)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # a fully transparent pixel keeps its stored colour
    path = save_pil(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")
    rgb = read_image(path, mode="rgb")
    np.testing.assert_array_equal(rgb, rgba[..., :3])


def test_grey_plus_alpha(tmp_path):
    la = np.stack([np.full((3, 3), 120, np.uint8), np.full((3, 3), 7, np.uint8)], axis=-1)
    path = save_pil(tmp_path, Image.fromarray(la, "LA"), "la.png")
    np.testing.assert_array_equal(read_image(path), la[..., 0])


def test_palette_is_expanded(tmp_path):
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 1, 2, 1, 0, 0])
    path = save_pil(tmp_path, pal, "p.png")
    rgb = read_image(path, mode="rgb")
    assert tuple(rgb[0, 1]) == (255, 0, 0)
    assert tuple(rgb[0, 2]) == (0, 0, 255)
    assert tuple(rgb[1, 3]) == (0, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    # A wide image tagged "rotate 90 CW" (orientation 6) must come out tall.
    wide = np.zeros((20, 40), dtype=np.uint8)
    wide[:, :10] = 255  # bright band on the left; after a 90 deg CW turn it is on top
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save_pil(tmp_path, Image.fromarray(wide), "o.jpg", exif=exif.tobytes(), quality=95)
    grey = read_image(path)
    assert grey.shape == (40, 20)
    assert grey[:8].mean() > 200 and grey[12:].mean() < 50


@pytest.mark.parametrize(
    "name, data, cause",
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"this is not an image at all", "not an image"),
        ("readme.txt", b"hello", "unsupported file type '.txt'"),
        ("cut.png", encode(blobs_image(1), ".png")[:80], "truncated"),
        ("cut.jpg", encode(blobs_image(1, colour=True), ".jpg")[:300], "truncated"),
    ],
)
def test_bad_files_raise_naming_file_and_cause(tmp_path, name, data, cause):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match=cause) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_images_over_max_pixels_are_refused_before_decoding(tmp_path):
    # A 1-bit 20000 x 20000 PNG is a few KB on disk and 400 MB decoded.
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageReadError, match=r"20000 x 20000 = 400,000,000 pixels is larger "
                                             r"than max_image_pixels \(250,000,000\)"):
        read_image(path)
    small = tmp_path / "small.png"
    small.write_bytes(encode(blobs_image(0), ".png"))
    with pytest.raises(ImageReadError, match="max_image_pixels"):
        read_image(small, max_pixels=100)
    assert read_image(small, max_pixels=None).shape == blobs_image(0).shape


@pytest.mark.parametrize("suffix", [".tif", ".gif"])
def test_multi_page_files_read_page_one_with_a_note(tmp_path, suffix):
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / f"stack{suffix}"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    notes = []
    image = read_image(path, notes=notes)
    assert int(image[0, 0]) == 10
    assert notes == ["multi-page file (3 pages): only the first page was segmented"]
    single = tmp_path / f"one{suffix}"
    pages[0].save(single)
    notes = []
    read_image(single, notes=notes)
    assert notes == []


@pytest.mark.parametrize("dtype", [np.float32, np.uint32, np.int32, np.int16])
def test_other_sample_types_are_read_to_16_bits_in_both_modes(tmp_path, dtype):
    import cv2

    # OpenCV writes these LZW-compressed: tifffile reads them with imagecodecs.
    path = tmp_path / "t.tif"
    values = np.arange(12, dtype=dtype).reshape(3, 4) * 3
    assert cv2.imwrite(str(path), values)
    grey, rgb = read_image(path, mode="grey"), read_image(path, mode="rgb")
    assert grey.dtype == rgb.dtype == np.uint16 and rgb.shape == (3, 4, 3)
    np.testing.assert_array_equal(rgb[..., 1], grey)
    if np.dtype(dtype).kind == "f":  # floats outside 0..1: their own range
        assert grey[0, 0] == 0 and grey[-1, -1] == 65535
    else:  # integers within 0..65535: the 16-bit values themselves
        np.testing.assert_array_equal(grey, values.astype(np.uint16))


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "gone.png")


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be"):
        read_image("x.png", mode="hsv")


@pytest.mark.parametrize("top, dtype", [(1, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16)])
def test_label_png_roundtrip(tmp_path, top, dtype):
    labels = np.zeros((5, 7), dtype=label_dtype(top))
    labels[1, 2], labels[4, 6] = top, 1
    assert labels.dtype == dtype
    write_png(tmp_path / "m" / "x.png", labels)
    back = read_label_image(tmp_path / "m" / "x.png")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["x.png"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m" / "x.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_label_dtype_grows_to_32_bits_and_png_refuses_them(tmp_path):
    assert label_dtype(70000) == np.uint32
    with pytest.raises(ValueError, match="32 bits"):
        label_dtype(2**32)
    labels = np.arange(70001, dtype=np.uint32).reshape(1, -1)
    with pytest.raises(ValueError, match="65535.*mask_format: tiff"):
        write_labels(tmp_path / "m.png", labels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_tiff_masks_round_trip_with_compression(tmp_path, dtype):
    import tifffile

    labels = np.zeros((300, 400), dtype)
    labels[10:200, 20:300] = np.iinfo(dtype).max
    labels[250:, :] = 7
    write_labels(tmp_path / "m.tif", labels)
    back = read_label_image(tmp_path / "m.tif")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert (tmp_path / "m.tif").stat().st_size < labels.nbytes / 20
