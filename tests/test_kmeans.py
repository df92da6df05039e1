import numpy as np
import pytest

from segpipe.methods.kmeans import segment_kmeans


def three_colour_image(rng, order):
    colours = np.array([[20, 20, 20], [120, 60, 200], [250, 240, 230]], np.uint8)[order]
    idx = rng.integers(0, 3, size=(30, 40))
    noise = rng.integers(-5, 6, size=(30, 40, 3))
    return np.clip(colours[idx].astype(int) + noise, 0, 255).astype(np.uint8), idx, order


def test_labels_ordered_by_brightness_whatever_the_cluster_order():
    rng = np.random.default_rng(0)
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        rgb, idx, order = three_colour_image(rng, np.array(order))
        labels = segment_kmeans(rgb, k=3, seed=0).labels
        # The brightness rank of each pixel's colour: dark=0, purple=1, white=2.
        rank = np.array(order)[idx]
        np.testing.assert_array_equal(labels, rank)


def test_same_seed_same_labels_on_subsampled_images():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(120, 150, 3)).astype(np.uint8)
    a = segment_kmeans(rgb, k=4, seed=7, sample_size=2000).labels
    b = segment_kmeans(rgb, k=4, seed=7, sample_size=2000).labels
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and set(np.unique(a)) == {0, 1, 2, 3}


def test_16_bit_is_scaled_like_8_bit():
    rng = np.random.default_rng(1)
    rgb, _, _ = three_colour_image(rng, np.array([0, 1, 2]))
    a = segment_kmeans(rgb, k=3).labels
    b = segment_kmeans(rgb.astype(np.uint16) * 257, k=3).labels
    np.testing.assert_array_equal(a, b)


def test_fewer_pixels_than_clusters():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(segment_kmeans(rgb, k=5).labels, [[0, 1]])


def test_k_must_be_at_least_two():
    with pytest.raises(ValueError, match="k must be >= 2"):
        segment_kmeans(np.zeros((2, 2, 3), np.uint8), k=1)
