import numpy as np
import pytest
from scipy import ndimage

from segpipe.methods.edges import KERNELS, convolve3x3, edge_strength, segment_edges

from conftest import blobs_image


def test_kernels_are_the_designs():
    np.testing.assert_array_equal(KERNELS["sobel_h"], [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    np.testing.assert_array_equal(KERNELS["sobel_v"], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(KERNELS["laplace"], [[1, 1, 1], [1, -8, 1], [1, 1, 1]])


@pytest.mark.parametrize("name", ["sobel_h", "sobel_v", "laplace"])
def test_convolution_matches_scipy(name):
    # An asymmetric image, so a correlation (unflipped kernel) would not pass.
    image = np.random.default_rng(1).random((9, 13)).astype(np.float32)
    expected = ndimage.convolve(image.astype(np.float64), KERNELS[name].astype(np.float64))
    np.testing.assert_allclose(convolve3x3(image, KERNELS[name]), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("operator", ["sobel_h", "sobel_v", "sobel", "laplace"])
def test_edge_strength_matches_scipy_on_unit_scale(operator, dtype):
    grey = blobs_image(2).astype(dtype) * (257 if dtype == np.uint16 else 1)
    unit = grey / np.iinfo(dtype).max

    def conv(name):
        return ndimage.convolve(unit, KERNELS[name].astype(np.float64))

    if operator == "sobel":
        expected = np.hypot(conv("sobel_h"), conv("sobel_v"))
    else:
        expected = np.abs(conv(operator))
    np.testing.assert_allclose(edge_strength(grey, operator), expected, atol=1e-4)


def test_sobel_h_responds_to_horizontal_edges_only():
    grey = np.zeros((10, 10), np.uint8)
    grey[5:] = 255
    assert edge_strength(grey, "sobel_h")[4:6].min() > 0.9
    assert edge_strength(grey, "sobel_v").max() == 0


def test_regions_enclosed_by_edges():
    # A bright square on a dark background: two regions (inside and outside), 0 on edges.
    grey = np.zeros((30, 30), np.uint8)
    grey[10:20, 10:20] = 200
    seg = segment_edges(grey, operator="sobel", min_region_size=1)
    labels = seg.labels
    assert labels.dtype == np.uint8
    assert labels.max() == 2
    inside, outside = labels[15, 15], labels[0, 0]
    assert inside != outside and inside > 0 and outside > 0
    assert (labels[9:11, 12:18] == 0).all()  # the square's top edge
    assert seg.edge_map.dtype == np.uint16 and seg.edge_map.shape == grey.shape
    assert seg.edge_map[10, 15] > seg.edge_map[0, 0] == 0
    assert len(seg.thresholds) == 1


def test_fixed_threshold_and_small_regions_dropped():
    grey = np.zeros((30, 30), np.uint8)
    grey[10:20, 10:20] = 200
    grey[2, 2] = 200  # a speck whose enclosed interior is tiny
    seg = segment_edges(grey, operator="laplace", threshold=0.1, min_region_size=20)
    assert seg.thresholds == (0.1,)
    # every kept region is large, and labels are 1..N without gaps
    sizes = np.bincount(seg.labels.ravel())[1:]
    assert sizes.min() >= 20
    assert set(np.unique(seg.labels)) == set(range(seg.labels.max() + 1))


def test_flat_image_is_one_region():
    seg = segment_edges(np.full((8, 8), 77, np.uint8), operator="sobel")
    assert (seg.labels == 1).all()


def test_unknown_operator():
    with pytest.raises(ValueError, match="operator must be one of"):
        edge_strength(np.zeros((3, 3), np.uint8), "prewitt")


@pytest.mark.parametrize("operator", ["sobel", "laplace"])
def test_regions_are_numbered_in_raster_order(operator):
    """Region k + 1 is the k-th region met reading the image row by row, as
    skimage.measure.label numbers them, on an image with hundreds of regions."""
    from skimage.measure import label

    rng = np.random.default_rng(7)
    grey = (rng.random((300, 400)) > 0.5).astype(np.uint8) * 255
    grey = np.kron(grey[::6, ::6], np.ones((6, 6), np.uint8))[:300, :400]
    seg = segment_edges(grey, operator=operator, min_region_size=1)
    expected = label(seg.labels > 0, connectivity=1)
    assert seg.labels.max() > 100
    np.testing.assert_array_equal(seg.labels, expected)
