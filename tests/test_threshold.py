import numpy as np
import pytest
from skimage.filters import threshold_multiotsu, threshold_otsu

from segpipe.methods.threshold import (
    compute_threshold,
    otsu_threshold,
    segment_multi_threshold,
    segment_threshold,
)

from conftest import blobs_image


def two_level(dtype=np.uint8, low=20, high=220):
    grey = np.full((4, 6), low, dtype=dtype)
    grey[:, 4:] = high
    return grey


def test_mean_threshold_known_value():
    grey = two_level()  # 16 pixels at 20, 8 at 220: mean = (16*20 + 8*220) / 24
    assert compute_threshold(grey, method="mean") == pytest.approx((16 * 20 + 8 * 220) / 24)
    seg = segment_threshold(grey, method="mean")
    np.testing.assert_array_equal(seg.labels, (grey > 86.67).astype(np.uint8))
    assert seg.thresholds == pytest.approx(((16 * 20 + 8 * 220) / 24 / 255,))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_scikit_image(dtype, seed):
    grey = blobs_image(seed).astype(dtype)
    if dtype == np.uint16:
        grey = grey * 257 + np.random.default_rng(seed).integers(0, 257, grey.shape).astype(np.uint16)
    expected = threshold_otsu(grey)
    seg = segment_threshold(grey, method="otsu")
    np.testing.assert_array_equal(seg.labels, (grey > expected).astype(np.uint8))
    top = np.iinfo(dtype).max
    assert seg.thresholds[0] * top == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("seed", range(40))
def test_otsu_from_a_histogram_equals_scikit_image_exactly(seed):
    # Sparse histograms with empty ends, few levels, and repeated counts (ties), on the
    # 8-bit and 16-bit scales the methods use.
    rng = np.random.default_rng(seed)
    size = [256, 65536][seed % 2]
    counts = np.zeros(size, np.int64)
    levels = rng.choice(size, size=rng.integers(2, 40), replace=False)
    counts[levels] = rng.integers(1, [3, 10**6][seed % 4 // 2], levels.size)
    centers = np.arange(size)
    assert otsu_threshold(counts, centers) == threshold_otsu(hist=(counts, centers))


def test_otsu_on_a_two_level_image_separates_the_levels():
    seg = segment_threshold(two_level(), method="otsu")
    assert seg.labels[:, 4:].all() and not seg.labels[:, :4].any()
    assert 20 / 255 <= seg.thresholds[0] < 220 / 255


def test_flat_image_has_no_foreground():
    seg = segment_threshold(np.full((3, 3), 9, np.uint8), method="otsu")
    assert not seg.labels.any()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fixed_value_is_on_the_unit_scale(dtype):
    top = np.iinfo(dtype).max
    grey = np.array([[0, top // 4, top // 2 + 1, top]], dtype=dtype)
    seg = segment_threshold(grey, method="value", value=0.5)
    np.testing.assert_array_equal(seg.labels, [[0, 0, 1, 1]])
    assert seg.thresholds == (0.5,)


def test_dark_foreground_is_the_complement():
    grey = blobs_image(4)
    bright = segment_threshold(grey, method="otsu").labels
    dark = segment_threshold(grey, method="otsu", foreground="dark").labels
    np.testing.assert_array_equal(dark, 1 - bright)
    assert dark.dtype == np.uint8


def test_threshold_errors():
    with pytest.raises(ValueError, match="needs a 'value'"):
        segment_threshold(two_level(), method="value")
    with pytest.raises(ValueError, match="method must be"):
        segment_threshold(two_level(), method="median")
    with pytest.raises(ValueError, match="foreground must be"):
        segment_threshold(two_level(), foreground="grey")


def test_caller_array_not_modified():
    grey = blobs_image(3)
    before = grey.copy()
    segment_threshold(grey, method="otsu")
    segment_multi_threshold(grey, classes=3)
    np.testing.assert_array_equal(grey, before)


def test_fixed_thresholds_give_bands_by_rising_intensity():
    grey = np.array([[0, 50, 51, 127, 128, 255]], dtype=np.uint8)
    seg = segment_multi_threshold(grey, thresholds=[50 / 255, 127 / 255])
    # strictly above k thresholds -> label k; equal to a threshold stays below it
    np.testing.assert_array_equal(seg.labels, [[0, 0, 1, 1, 2, 2]])
    assert seg.thresholds == pytest.approx((50 / 255, 127 / 255))


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_multi_otsu_matches_scikit_image_thresholds(classes):
    rng = np.random.default_rng(classes)
    levels = np.linspace(30, 220, classes)
    grey = np.clip(
        rng.choice(levels, size=(40, 40)) + rng.normal(0, 6, (40, 40)), 0, 255
    ).astype(np.uint8)
    expected = threshold_multiotsu(grey, classes=classes)
    seg = segment_multi_threshold(grey, classes=classes)
    np.testing.assert_allclose(np.array(seg.thresholds) * 255, expected)
    np.testing.assert_array_equal(seg.labels, np.digitize(grey, expected, right=True))
    assert set(np.unique(seg.labels)) == set(range(classes))


def test_multi_otsu_on_16_bit_bins_to_256_levels():
    rng = np.random.default_rng(0)
    grey8 = rng.choice([30, 128, 220], size=(30, 30)).astype(np.uint8)
    seg16 = segment_multi_threshold(grey8.astype(np.uint16) * 257, classes=3)
    seg8 = segment_multi_threshold(grey8, classes=3)
    np.testing.assert_array_equal(seg16.labels, seg8.labels)


def test_multi_threshold_errors():
    grey = two_level()
    with pytest.raises(ValueError, match="exactly one"):
        segment_multi_threshold(grey)
    with pytest.raises(ValueError, match="exactly one"):
        segment_multi_threshold(grey, classes=3, thresholds=[0.5])
    with pytest.raises(ValueError, match="rising"):
        segment_multi_threshold(grey, thresholds=[0.6, 0.2])
    with pytest.raises(ValueError, match="classes must be >= 2"):
        segment_multi_threshold(grey, classes=1)


def test_histogram_of_an_image_over_2_to_the_24_pixels_is_exact():
    from segpipe.methods.threshold import intensity_histogram

    grey = np.zeros((4097, 4096), np.uint8)  # one row more than 2**24 pixels
    grey[::2] = 200
    grey[-1, :7] = 9
    counts, _ = intensity_histogram(grey)
    np.testing.assert_array_equal(counts, np.bincount(grey.ravel(), minlength=256))
