"""The project's one COCO RLE encoder against pycocotools' own encode and decode."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segpipe import rle


def reference(mask):
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def masks():
    rng = np.random.default_rng(7)
    yield np.ones((5, 4), bool)  # ends in 1: no trailing zero run
    yield np.zeros((5, 4), bool)
    yield np.eye(6, dtype=bool)
    column_wrap = np.zeros((4, 3), bool)
    column_wrap[2:, 0] = column_wrap[:2, 1] = True  # one run across a column break
    yield column_wrap
    yield np.ones((1, 9), bool)
    yield np.ones((9, 1), bool)
    for _ in range(60):
        h, w = rng.integers(1, 40, 2)
        yield rng.random((h, w)) < rng.random()


@pytest.mark.parametrize("mask", list(masks()), ids=lambda m: f"{m.shape}")
def test_encode_mask_is_byte_identical_to_pycocotools_and_decodes_back(mask):
    mine = rle.encode_mask(mask)
    assert mine["size"] == list(mask.shape)
    assert mine["counts"] == reference(mask)
    np.testing.assert_array_equal(rle.decode(mine), mask)


def test_encode_objects_matches_one_pycocotools_encode_per_object():
    rng = np.random.default_rng(3)
    objects = rng.integers(0, 6, (30, 25))
    objects[objects == 4] = 0  # an absent id is skipped
    mine = rle.encode_objects(objects)
    ids = [i for i in range(1, 6) if (objects == i).any()]
    assert [r["counts"] for r in mine] == [reference(objects == i) for i in ids]


def test_runs_from_a_crop_are_placed_in_the_full_image():
    full = np.zeros((7, 5), bool)
    full[2:6, 1:4] = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 1], [1, 0, 0]], bool)
    crop = full[2:6, 1:4]
    boundaries = rle.crop_boundaries(crop, top=2, left=1, height=7)
    assert np.all(np.diff(boundaries) >= 0) and len(boundaries) % 2 == 0
    counts = rle.counts_from_boundaries(boundaries, 7, 5)
    assert counts.sum() == full.size
    assert rle.compress([counts], 7, 5)[0]["counts"] == reference(full)


def test_a_run_through_a_column_break_is_one_run():
    # rows 2-3 of column 0 then rows 0-1 of column 1 are pixels 2..5 in column-major order
    counts = rle.counts_from_boundaries(np.array([2, 4, 4, 6]), 4, 3)
    assert counts.tolist() == [2, 4, 6]


def test_compress_of_nothing_is_empty():
    assert rle.compress([], 3, 3) == []
