"""Stitched tiles: the ownership rule, merged partitions, and the tiled local methods
(watershed, region growing, superpixels) against their whole-image results."""

import threading

import numpy as np
import pytest

from segpipe.evaluation import object_f1
from segpipe.methods import get_method
from segpipe.methods.objects import cleaned_foreground, relabel, streamed_foreground
from segpipe.methods.region_growing import region_growing_tiled, segment_region_growing
from segpipe.methods.superpixels import segment_superpixels, superpixels_tiled
from segpipe.methods.watershed import segment_watershed, watershed_tiled
from segpipe.stitch import Stitcher, stitch_tiles
from segpipe.tiles import ArraySource, Tiling, map_tiles, tile_grid


def blob_image(seed, shape=(200, 300), radii=(5, 10), spacing=26, noise=4.0):
    """Discs 10-20 px across on a jittered grid, never touching, on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(40, noise, shape)
    for cy in range(spacing // 2, shape[0], spacing):
        for cx in range(spacing // 2, shape[1], spacing):
            r = rng.integers(radii[0], radii[1] + 1)
            y, x = cy + rng.integers(-2, 3), cx + rng.integers(-2, 3)
            image[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = rng.normal(190, 8)
    return np.clip(image, 0, 255).astype(np.uint8)


def stitched(truth, tiling, *, order=None, partition=False, min_size=1, view=None):
    """Stitch what a perfect local method would give: each tile sees ``truth`` in its read
    region (``view(tile, labels)`` may change that)."""
    grid = tiling.tiles_of(truth.shape)
    stitcher = Stitcher(truth.shape, grid, partition=partition, min_size=min_size)
    for k in order if order is not None else range(len(grid)):
        labels = truth[grid[k].read]
        stitcher.add(grid[k], view(grid[k], labels) if view else labels)
    return stitcher.result()


def assert_raster_order(labels):
    ids, first = np.unique(labels.ravel(), return_index=True)
    first = first[ids != 0]
    assert np.array_equal(ids[ids != 0], np.arange(1, first.size + 1))
    assert (np.diff(first) > 0).all()  # label k's first pixel comes before label k + 1's


# ---- the ownership rule (objects) ----


def test_objects_across_tile_lines_are_kept_once_and_whole():
    # Cores of 40 with margins of 12: lines at 40 and 80. Boxes up to 23 px (2 * 12 - 1)
    # are always seen whole by the tile holding their centre.
    truth = np.zeros((120, 120), np.uint16)
    truth[30:52, 30:53] = 7  # across both lines of the first corner, 22 x 23
    truth[5:15, 75:86] = 3  # across the vertical line at 80
    truth[78:83, 10:20] = 9  # across the horizontal line at 80
    truth[100:110, 100:110] = 4  # inside one core
    out = stitched(truth, Tiling(size=64, overlap=24))
    assert out.cut_objects == 0
    np.testing.assert_array_equal(np.asarray(out.labels), relabel(truth))
    assert_raster_order(np.asarray(out.labels))


def test_a_box_wider_than_the_overlap_is_whole_when_one_read_region_holds_it():
    # 30 px wide: the anchor tile (core 40..80, reads 28..92) holds it clear of its sides.
    truth = np.zeros((50, 120), np.uint8)
    truth[10:20, 45:75] = 1
    out = stitched(truth, Tiling(size=64, overlap=24))
    assert out.cut_objects == 0 and np.array_equal(np.asarray(out.labels), truth)


def test_the_first_tile_that_sees_it_whole_owns_what_the_centre_tile_cannot():
    # Margins wider than cores: the tile holding the centre (core 0..4, reads 0..8) sees
    # cols 0..7 touch its cut side; the next (reads 0..10, the whole image) sees them whole.
    truth = np.zeros((3, 10), np.uint8)
    truth[1, 0:8] = 5
    out = stitched(truth, Tiling(size=12, overlap=8))
    assert out.cut_objects == 0 and np.array_equal(np.asarray(out.labels), (truth > 0).astype(np.uint8))


def test_an_object_no_tile_sees_whole_is_cut_into_counted_pieces():
    truth = np.zeros((60, 200), np.uint8)
    truth[20:30, 10:190] = 1  # a bar wider than a tile: cores 0..40, ..., 160..200
    truth[45:55, 100:110] = 2
    out = stitched(truth, Tiling(size=64, overlap=24))
    bar = np.asarray(out.labels)[truth == 1]
    assert (bar != 0).all()  # the pieces cover the bar
    assert np.unique(bar).size == 5 == out.cut_objects  # one piece per core it crosses
    # The pieces meet at the core lines.
    assert [int(np.asarray(out.labels)[25, x]) for x in (39, 40, 79, 80)] == [1, 2, 2, 3]
    assert np.unique(np.asarray(out.labels)[truth == 2]).size == 1
    assert_raster_order(np.asarray(out.labels))


def test_pieces_under_min_size_are_dropped():
    truth = np.zeros((20, 100), np.uint8)
    truth[5:7, 37:100] = 1  # cut at 40 and 80: pieces of 2 x 3, 2 x 40, 2 x 20 pixels
    out = stitched(truth, Tiling(size=64, overlap=24), min_size=10)
    assert out.cut_objects == 2
    assert (np.asarray(out.labels)[5:7, 37:40] == 0).all() and (np.asarray(out.labels)[5:7, 40:] > 0).all()


def test_whole_objects_win_over_pieces_and_the_first_tile_over_later_ones():
    # Cores 0..40, 40..80, 80..120; reads 0..52, 28..92, 68..120.
    truth = np.zeros((40, 120), np.uint8)
    truth[5:15, 36:56] = 1  # the first tile sees it touch col 51: a piece in its core

    def disagree(tile, labels):
        labels = labels.copy()
        x0 = tile.read[1].start
        if tile.col == 1:
            labels[25:30, 60 - x0 : 80 - x0] = 2  # cols 60..79, centre in the second core
        if tile.col == 2:
            labels[25:30, 75 - x0 : 96 - x0] = 3  # cols 75..95, centre in the third
        return labels

    out = stitched(truth, Tiling(size=64, overlap=24), view=disagree)
    # The second tile's whole object takes back the first tile's piece of it.
    assert np.unique(np.asarray(out.labels)[truth == 1]).size == 1 and out.cut_objects == 0
    # Two whole objects claim cols 75..79: the earlier tile's keeps them.
    second, third = np.asarray(out.labels)[27, 70], np.asarray(out.labels)[27, 90]
    assert second != third and (np.asarray(out.labels)[25:30, 60:80] == second).all()
    assert (np.asarray(out.labels)[25:30, 80:96] == third).all()


def test_the_result_does_not_depend_on_the_order_tiles_are_added():
    rng = np.random.default_rng(0)
    truth = np.zeros((150, 170), np.uint16)
    for k in range(1, 40):  # overlapping squares, some wider than the overlap
        y, x, s = rng.integers(0, 140), rng.integers(0, 160), rng.integers(3, 40)
        truth[y : y + s, x : x + s] = k
    tiling = Tiling(size=48, overlap=16)
    first = stitched(truth, tiling)
    n = len(tiling.tiles_of(truth.shape))
    for order in (list(range(n))[::-1], list(rng.permutation(n))):
        again = stitched(truth, tiling, order=order)
        assert np.array_equal(np.asarray(again.labels), np.asarray(first.labels))
        assert again.cut_objects == first.cut_objects
    assert first.cut_objects > 0
    assert_raster_order(np.asarray(first.labels))


def test_stitcher_refuses_wrong_tiles_and_missing_ones():
    truth = np.zeros((10, 30), np.uint8)
    grid = tile_grid(truth.shape, core=10, margin=2)
    stitcher = Stitcher(truth.shape, grid)
    stitcher.add(grid[1], truth[grid[1].read])
    with pytest.raises(ValueError, match="tile 1 was added already"):
        stitcher.add(grid[1], truth[grid[1].read])
    with pytest.raises(ValueError, match=r"tile 0: labels of shape \(10, 30\)"):
        stitcher.add(grid[0], truth)
    with pytest.raises(ValueError, match="tile 0 of 3 was never added"):
        stitcher.result()
    other = tile_grid((10, 40), core=10, margin=2)[3]
    with pytest.raises(ValueError, match="not a tile of this grid"):
        stitcher.add(other, np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="a partition keeps every region; got 5"):
        Stitcher(truth.shape, grid, partition=True, min_size=5)


# ---- partitions ----


def squares_partition(shape, side, seed):
    """A partition into squares of ``side`` pixels, numbered at random."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cells = (yy // side) * (shape[1] // side + 1) + xx // side
    return np.random.default_rng(seed).permutation(cells.max() + 1)[cells] + 1


def test_a_partition_is_stitched_whole_when_tiles_agree():
    # Squares of 30 and 70 px across every tile line, numbered at random in each tile.
    for side in (30, 70):
        truth = squares_partition((130, 150), side, seed=side)

        def renumber(tile, labels):
            ids, inverse = np.unique(labels, return_inverse=True)
            return np.random.default_rng(tile.index).permutation(ids.size)[inverse] + 1

        out = stitched(truth, Tiling(size=48, overlap=16), partition=True, view=renumber)
        assert out.cut_objects == 0
        np.testing.assert_array_equal(np.asarray(out.labels), relabel(truth))


def test_a_partition_leaves_no_hole_where_tiles_disagree_and_counts_the_cuts():
    truth = squares_partition((96, 96), 30, seed=1)

    def one_pixel_regions(tile, labels):
        if tile.index != 4:  # the middle tile sees every pixel as a region of its own
            return labels
        return np.arange(1, labels.size + 1).reshape(labels.shape)

    out = stitched(truth, Tiling(size=48, overlap=16), partition=True, view=one_pixel_regions)
    assert (np.asarray(out.labels) > 0).all()
    assert_raster_order(np.asarray(out.labels))
    middle = tile_grid(truth.shape, core=32, margin=8)[4]
    assert np.unique(np.asarray(out.labels)[middle.core]).size == 32 * 32
    # Squares of 30 (edges at 30, 60, 90), cores of 32: the squares at rows and columns
    # 30..59 have only 2 rows or columns in their neighbours' cores and 8 in the middle
    # one's margin, where they merge with nothing: three are cut. The square at 60..89
    # has 26 rows and columns in the later tiles' cores: it keeps most of itself.
    assert out.cut_objects == 3
    agree = stitched(truth, Tiling(size=48, overlap=16), partition=True)
    assert agree.cut_objects == 0


def test_a_region_split_by_the_later_tile_is_cut_as_the_earlier_tile_saw_it():
    # Cores 0..32 and 32..64, reads 0..40 and 24..64. A stripe across the line at 32:
    # the second tile sees it as two regions, so nothing of its own crosses the line,
    # but the first tile saw as much of the stripe across the line as in its core.
    truth = np.ones((20, 64), np.uint8)
    truth[:, 24:40], truth[:, 40:] = 2, 3

    def split(tile, labels):
        labels = labels.copy()
        if tile.col == 1:
            labels[:, 32 - 24 : 40 - 24] = 4
        return labels

    out = stitched(truth, Tiling(size=48, overlap=16), partition=True, view=split)
    assert out.cut_objects == 1
    assert np.asarray(out.labels)[0, 31] != np.asarray(out.labels)[0, 32]
    assert stitched(truth, Tiling(size=48, overlap=16), partition=True).cut_objects == 0


# ---- the driver ----


def test_tiles_run_ahead_of_the_stitching_by_two_per_thread_at_most():
    grid = tile_grid((10, 200), core=10)
    started = []
    lock = threading.Lock()

    def work(tile):
        with lock:
            started.append(tile.index)
        return tile.index

    results = map_tiles(work, grid, threads=2)
    assert next(results) == 0
    with lock:
        assert len(started) <= 4
    assert list(results) == list(range(1, 20))


def test_stitch_tiles_hands_each_read_region_to_the_method():
    image = np.zeros((30, 70), np.uint8)
    image[10:16, 30:38] = 1
    seen = []

    def segment(pixels):
        seen.append(pixels.shape)
        return pixels

    grid = Tiling(size=32, overlap=8).tiles_of(image.shape)
    out = stitch_tiles(ArraySource(image), grid, segment, threads=2)
    assert sorted(seen) == sorted(tuple(s.stop - s.start for s in t.read) for t in grid)
    assert np.array_equal(np.asarray(out.labels), image)


# ---- the tiled kinds against the whole image ----

TILING = Tiling(size=64, overlap=24)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("whole, tiled", [(segment_watershed, watershed_tiled),
                                          (segment_region_growing, region_growing_tiled)])
def test_tiled_objects_match_the_whole_image(whole, tiled, seed):
    grey = blob_image(seed)
    expected = whole(grey)
    seg = tiled(ArraySource(grey), tiling=TILING)
    assert object_f1(np.asarray(seg.labels), expected.labels)["object_f1_50"] >= 0.99
    assert seg.cut_objects == 0  # every blob is narrower than the overlap
    assert seg.tiles == len(TILING.tiles_of(grey.shape)) == 40
    assert (seg.thresholds, seg.foreground) == (expected.thresholds, expected.foreground)
    assert_raster_order(np.asarray(seg.labels))


@pytest.mark.parametrize("tiled", [watershed_tiled, region_growing_tiled])
def test_a_blob_wider_than_the_overlap_is_cut_and_counted(tiled):
    grey = blob_image(2)
    grey[95:110, 20:180] = 200  # a bar across four core lines
    seg = tiled(ArraySource(grey), tiling=TILING, foreground="bright")
    assert seg.cut_objects >= 4
    assert np.unique(np.asarray(seg.labels)[100, 25:175]).size >= 4  # in pieces


@pytest.mark.parametrize("tiled, colour", [(watershed_tiled, False),
                                           (region_growing_tiled, False),
                                           (superpixels_tiled, True)])
def test_threads_do_not_change_the_result(tiled, colour):
    grey = blob_image(3, shape=(150, 170))
    image = np.dstack([grey, grey // 2, 255 - grey]) if colour else grey
    one = tiled(ArraySource(image), tiling=Tiling(size=48, overlap=16), threads=1)
    two = tiled(ArraySource(image), tiling=Tiling(size=48, overlap=16), threads=2)
    assert np.array_equal(np.asarray(one.labels), np.asarray(two.labels)) and np.asarray(one.labels).dtype == np.asarray(two.labels).dtype
    assert one.cut_objects == two.cut_objects


def test_felzenszwalb_regions_match_the_whole_image():
    # Flat discs on a flat background, no smoothing: regions are the discs and the
    # background, which crosses every tile line and is merged back into one region.
    grey = blob_image(4, noise=0)
    rgb = np.dstack([grey, grey, grey])
    settings = {"algorithm": "felzenszwalb", "sigma": 0}
    expected = segment_superpixels(rgb, **settings).labels
    seg = superpixels_tiled(ArraySource(rgb), tiling=TILING, **settings)
    assert object_f1(np.asarray(seg.labels), expected)["object_f1_50"] >= 0.99
    assert seg.cut_objects == 0 and np.asarray(seg.labels).min() == 1
    assert np.unique(np.asarray(seg.labels)[grey == 40]).size == 1  # one background


def test_slic_tiles_ask_for_their_share_of_the_superpixels():
    rgb = np.dstack([blob_image(5)] * 3)
    whole = segment_superpixels(rgb, n_segments=250).labels
    seg = superpixels_tiled(ArraySource(rgb), tiling=TILING, n_segments=250)
    assert np.asarray(seg.labels).min() == 1  # every pixel in a region
    assert_raster_order(np.asarray(seg.labels))
    # Superpixels of about the whole image's size: as many regions within a third.
    assert 2 / 3 < int(np.asarray(seg.labels).max()) / int(whole.max()) < 4 / 3
    # Unscaled, every tile would ask for 250 and the regions would be tiny.
    fine = superpixels_tiled(ArraySource(rgb), tiling=TILING, n_segments=250 * 40)
    assert int(np.asarray(fine.labels).max()) > 3 * int(np.asarray(seg.labels).max())


def test_the_registry_runs_the_stitched_kinds_tiled():
    for kind in ("watershed", "region_growing", "superpixels"):
        assert get_method(kind).tiled is not None


# ---- the foreground from the whole image ----


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("threshold", ["otsu", "mean", 0.4])
@pytest.mark.parametrize("dark", [False, True])
def test_streamed_foreground_is_the_whole_image_foreground(dtype, threshold, dark):
    grey = blob_image(6, shape=(70, 90)).astype(dtype)
    if dtype == np.uint16:
        grey = grey * np.uint16(257) + np.uint16(3)
    if dark:
        grey = np.iinfo(dtype).max - grey
    _, polarity, t = cleaned_foreground(grey, threshold=threshold, foreground="auto")
    grid = tile_grid(grey.shape, core=16)
    assert streamed_foreground(ArraySource(grey), grid, threshold=threshold,
                               foreground="auto", threads=2) == (t, polarity)
    assert polarity == ("dark" if dark else "bright")


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (3, 3)])
def test_streamed_polarity_counts_the_frame_as_auto_polarity(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        grey = rng.integers(0, 4, shape).astype(np.uint8)
        _, polarity, t = cleaned_foreground(grey, threshold="mean", foreground="auto",
                                            min_size=1)
        grid = tile_grid(shape, core=2)
        assert streamed_foreground(ArraySource(grey), grid, threshold="mean",
                                   foreground="auto") == (t, polarity)


def test_streamed_foreground_refuses_unknown_settings():
    grid = tile_grid((4, 4), core=2)
    source = ArraySource(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="'median'"):
        streamed_foreground(source, grid, threshold="median")
    with pytest.raises(ValueError, match="'both'"):
        streamed_foreground(source, grid, foreground="both")


def test_slic_superpixels_larger_than_the_tiles_are_refused_with_the_count_that_fits():
    # 250 superpixels over 40 cores of 40: about 6.7 a core, stitched. 100: 2.7 a core, whose
    # regions would chain across the lines; the error names the n_segments that fits.
    rgb = np.dstack([blob_image(6)] * 3)
    superpixels_tiled(ArraySource(rgb), tiling=TILING, n_segments=250)
    with pytest.raises(ValueError, match="n_segments to at least 150"):
        superpixels_tiled(ArraySource(rgb), tiling=TILING, n_segments=100)
