"""Watershed, region growing, superpixels and automatic polarity, against scikit-image."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from segpipe.evaluation import label_agreement
from segpipe.methods.objects import cleaned_foreground, relabel, remove_small
from segpipe.methods.region_growing import segment_region_growing
from segpipe.methods.superpixels import segment_superpixels
from segpipe.methods.threshold import (
    auto_polarity,
    segment_multi_threshold,
    segment_threshold,
)
from segpipe.methods.watershed import euclidean_distance, segment_watershed


def discs(centres, radius, shape=(48, 80), value=200, background=30):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    grey = np.full(shape, background, np.uint8)
    for cy, cx in centres:
        grey[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = value
    return grey


# ---- polarity ----


@pytest.mark.parametrize("method", ["otsu", "mean"])
def test_auto_polarity_finds_dark_objects_on_a_bright_background(method):
    bright_objects = discs([(12, 12), (30, 50)], 6)
    dark_objects = 255 - bright_objects
    assert segment_threshold(bright_objects, method=method, foreground="auto").foreground == "bright"
    seg = segment_threshold(dark_objects, method=method, foreground="auto")
    assert seg.foreground == "dark"
    np.testing.assert_array_equal(seg.labels, segment_threshold(bright_objects, method=method).labels)


def test_auto_polarity_prefers_the_side_off_the_border_then_the_smaller_side():
    # A bright frame around a dark square larger than it: the dark side is off the border.
    bright = np.ones((10, 10), bool)
    bright[1:9, 1:9] = False
    assert auto_polarity(bright) == "dark"
    # No border pixel decides (half and half): the smaller side, here the bright one.
    bright = np.zeros((4, 4), bool)
    bright[0, :2] = bright[-1, :2] = True
    bright[1:3, 0] = True
    assert auto_polarity(bright) == "bright"


def test_dark_foreground_is_at_or_below_the_threshold():
    grey = np.array([[10, 100, 100, 200]], np.uint8)
    seg = segment_threshold(grey, method="value", value=100 / 255, foreground="dark")
    np.testing.assert_array_equal(seg.labels, [[1, 1, 1, 0]])
    bright = segment_threshold(grey, method="value", value=100 / 255, foreground="bright")
    np.testing.assert_array_equal(bright.labels + seg.labels, 1)


def test_multi_threshold_dark_numbers_bands_from_the_brightest():
    grey = np.array([[0, 100, 200]], np.uint8)
    bright = segment_multi_threshold(grey, thresholds=[0.2, 0.6])
    dark = segment_multi_threshold(grey, thresholds=[0.2, 0.6], foreground="dark")
    np.testing.assert_array_equal(dark.labels, 2 - bright.labels)
    assert dark.thresholds == bright.thresholds and dark.foreground == "dark"


# ---- clean-up ----


def test_cleaned_foreground_drops_specks_and_fills_small_holes():
    grey = discs([(20, 20)], 9)
    grey[20, 20] = 30  # a one-pixel hole
    grey[40, 70] = 200  # a speck
    mask, polarity, t = cleaned_foreground(grey, foreground="bright", min_size=8)
    reference = ndi.binary_fill_holes(grey > t)
    reference = remove_small(reference, 8)
    np.testing.assert_array_equal(mask, reference)
    assert polarity == "bright" and not mask[40, 70] and mask[20, 20]


def test_relabel_numbers_labels_in_raster_order_and_drops_small_ones():
    labels = np.array([[9, 9, 0, 4], [0, 0, 0, 4], [7, 0, 0, 0]])
    np.testing.assert_array_equal(relabel(labels, min_size=2), [[1, 1, 0, 2], [0, 0, 0, 2], [0, 0, 0, 0]])


# ---- watershed ----


def reference_distance_watershed(grey, *, h=0.5, sigma=1.0, min_size=32):
    """The recipe with scikit-image and SciPy alone."""
    from skimage.filters import gaussian
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    mask, _, _ = cleaned_foreground(grey, foreground="auto", min_size=min_size)
    distance = ndi.distance_transform_edt(mask)
    distance = gaussian(distance, sigma=sigma, mode="nearest", preserve_range=True)
    distance[~mask] = 0
    markers = label(h_maxima(distance, h) & mask, connectivity=2)
    return watershed(-distance, markers, mask=mask)


def test_distance_watershed_splits_touching_discs_like_scikit_image():
    grey = discs([(24, 20), (24, 37), (24, 62)], 9)  # two touching, one alone
    labels = segment_watershed(grey).labels
    assert labels.max() == 3
    reference = reference_distance_watershed(grey)
    assert label_agreement(labels, reference)["ari"] > 0.99
    # Raster order numbering: the leftmost disc is 1.
    assert labels[24, 12] == 1 and labels[24, 62] == 3


def test_distance_watershed_with_peaks_instead_of_h_maxima():
    grey = discs([(24, 20), (24, 37)], 9)
    labels = segment_watershed(grey, h=None, min_distance=7).labels
    assert labels.max() == 2 and labels[24, 20] != labels[24, 37]


def test_watershed_on_dark_objects_chooses_dark_and_matches_bright():
    grey = discs([(24, 20), (24, 37)], 9)
    bright = segment_watershed(grey)
    dark = segment_watershed(255 - grey)
    assert (bright.foreground, dark.foreground) == ("bright", "dark")
    np.testing.assert_array_equal(bright.labels, dark.labels)


def test_threshold_markers_flooding_the_sobel_gradient_move_boundaries_to_edges():
    # A blurred disc, thresholded low: the threshold's outline lies outside the disc's
    # edge; flooding the Sobel gradient from the cores moves it onto the edge.
    import cv2

    sharp = discs([(24, 40)], 12, value=220, background=20)
    grey = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    low = 0.2
    thresholded = segment_threshold(grey, method="value", value=low).labels
    seg = segment_watershed(grey, markers="threshold", elevation="sobel", threshold=low,
                            min_distance=8, foreground="bright")
    truth = sharp > 100
    def iou(mask):
        return (mask & truth).sum() / (mask | truth).sum()
    assert seg.labels.max() == 1
    assert iou(seg.labels > 0) > iou(thresholded > 0) + 0.1
    assert iou(seg.labels > 0) > 0.9


@pytest.mark.parametrize("side", [61, 2100])  # OpenCV rounded, and SciPy's beyond 1024 px
def test_distance_transform_is_exact_whatever_the_buffer_or_threads(side):
    # OpenCV's float32 transform varied in its last bits with the output's memory
    # alignment and the thread count, so watershed masks varied between runs.
    import cv2

    rng = np.random.default_rng(side)
    mask = np.ones((side, side + 7), bool)
    mask[rng.integers(0, side, 5), rng.integers(0, side, 5)] = False
    mask[:, : side // 3] = rng.random((side, side // 3)) < 0.9
    exact = ndi.distance_transform_edt(mask).astype(np.float32)
    threads = cv2.getNumThreads()
    try:
        for n in (1, 2):
            cv2.setNumThreads(n)
            for offset in (0, 1):  # a copy of the mask at another address
                view = np.ascontiguousarray(np.pad(mask, ((0, 0), (offset, 0)))[:, offset:])
                np.testing.assert_array_equal(euclidean_distance(view), exact)
    finally:
        cv2.setNumThreads(threads)


def test_watershed_of_an_empty_image_has_no_objects():
    assert segment_watershed(np.full((10, 10), 7, np.uint8)).labels.max() == 0


# ---- region growing ----


def test_region_growing_splits_a_component_at_an_intensity_step():
    # One foreground component made of two plateaus 100 apart (0.39 on the 0..1 scale).
    grey = np.full((20, 40), 20, np.uint8)
    grey[5:15, 5:20] = 240
    grey[5:15, 20:35] = 140
    split = segment_region_growing(grey, tolerance=0.2, sigma=0, foreground="bright", min_size=4)
    whole = segment_region_growing(grey, tolerance=0.5, sigma=0, foreground="bright", min_size=4)
    assert split.labels.max() == 2 and split.labels[10, 10] != split.labels[10, 30]
    assert whole.labels.max() == 1


def test_region_growing_matches_scikit_image_flood_from_the_brightest_seed():
    from skimage.segmentation import flood

    rng = np.random.default_rng(0)
    grey = (discs([(24, 30)], 14) + rng.integers(0, 40, (48, 80))).astype(np.uint8)
    seg = segment_region_growing(grey, tolerance=0.1, sigma=0, foreground="bright",
                                 min_distance=100, min_size=1)
    mask, _, _ = cleaned_foreground(grey, foreground="bright", min_size=1)
    image = grey / 255.0
    seed = np.unravel_index(np.argmax(np.where(mask, image, -1)), grey.shape)
    expected = flood(np.where(mask, image, np.inf), seed, tolerance=0.1)
    np.testing.assert_array_equal(seg.labels == seg.labels[seed], expected)


# ---- superpixels ----


def test_superpixels_are_scikit_images_and_cover_every_pixel():
    from skimage.segmentation import felzenszwalb, slic

    rgb = np.dstack([discs([(24, 20)], 10), discs([(24, 60)], 8), discs([(10, 40)], 5)])
    image = rgb / 255.0
    seg = segment_superpixels(rgb, algorithm="slic", n_segments=20, compactness=5)
    expected = slic(image, n_segments=20, compactness=5, sigma=0.8, channel_axis=-1, start_label=1)
    np.testing.assert_array_equal(seg.labels, expected)
    seg = segment_superpixels(rgb, algorithm="felzenszwalb", scale=50, min_size=20)
    expected = felzenszwalb(image, scale=50, sigma=0.8, min_size=20, channel_axis=-1) + 1
    np.testing.assert_array_equal(seg.labels, expected)
    assert seg.labels.min() == 1
