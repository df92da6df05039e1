"""The exact tiled kinds equal their whole-image functions bit for bit (issue 20, point 2):
threshold, multi_threshold, edges, kmeans, and the connected components they rest on."""

import itertools

import cv2
import numpy as np
import pytest

from segpipe.components import label_components
from segpipe.methods import get_method
from segpipe.methods.edges import OPERATORS, edges_tiled, segment_edges
from segpipe.methods.kmeans import kmeans_tiled, segment_kmeans
from segpipe.methods.threshold import (
    POLARITIES,
    histogram_threshold,
    intensity_histogram,
    multi_threshold_tiled,
    segment_multi_threshold,
    segment_threshold,
    threshold_tiled,
)
from segpipe.tiles import ArraySource, Tiling, map_tiles, tile_grid

from conftest import blobs_image

SHAPE = (37, 53)
# Cores of 4 (37 and 53 leave one-pixel-wide last row and column), 12 (a one-pixel last
# row), 13 (a one-pixel last column), 7 with a wide overlap, 14, 40 (one row of two
# tiles), 54 (one tile over everything).
TILINGS = [Tiling(size=4), Tiling(size=16, overlap=4), Tiling(size=13), Tiling(size=13, overlap=6),
           Tiling(size=17, overlap=3), Tiling(size=40), Tiling(size=60, overlap=6)]
TILING_IDS = [f"{t.size}-{t.overlap}" for t in TILINGS]


def grey_image(dtype):
    """Blobs on a noisy background, plus salt and pepper; 16-bit with all 16 bits used."""
    rng = np.random.default_rng(11)
    grey = blobs_image(5, SHAPE)
    grey[rng.random(SHAPE) < 0.03] = 255
    grey[rng.random(SHAPE) < 0.03] = 0
    if dtype == np.uint16:
        return grey.astype(np.uint16) * 257 ^ rng.integers(0, 256, SHAPE).astype(np.uint16)
    return grey


def rgb_image(dtype):
    rgb = blobs_image(6, SHAPE, colour=True)
    rgb[..., 1] += np.random.default_rng(12).integers(0, 30, SHAPE).astype(np.uint8)
    return rgb.astype(np.uint16) * 257 if dtype == np.uint16 else rgb


def assert_same(whole, tiled, tiling, shape):
    """Every output of a tiled run equals the whole-image run's, dtypes included."""
    assert tiled.labels.dtype == whole.labels.dtype
    np.testing.assert_array_equal(tiled.labels, whole.labels)
    assert tiled.thresholds == whole.thresholds
    assert tiled.foreground == whole.foreground
    if whole.edge_map is None:
        assert tiled.edge_map is None
    else:
        assert tiled.edge_map.dtype == whole.edge_map.dtype
        np.testing.assert_array_equal(tiled.edge_map, whole.edge_map)
    assert tiled.tiles == len(tile_grid(shape[:2], core=tiling.core))
    assert whole.tiles is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
def test_threshold(tiling, dtype):
    grey = grey_image(dtype)
    for method, foreground in itertools.product(("mean", "otsu", "value"), POLARITIES):
        value = 0.45 if method == "value" else None
        whole = segment_threshold(grey, method=method, value=value, foreground=foreground)
        tiled = threshold_tiled(ArraySource(grey), tiling=tiling, threads=2, method=method,
                                value=value, foreground=foreground)
        assert_same(whole, tiled, tiling, grey.shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
def test_multi_threshold(tiling, dtype):
    grey = grey_image(dtype)
    settings = [{"classes": 2}, {"classes": 3}, {"classes": 4}, {"thresholds": [0.1, 0.5, 0.52]}]
    for setting, foreground in itertools.product(settings, POLARITIES):
        whole = segment_multi_threshold(grey, foreground=foreground, **setting)
        tiled = multi_threshold_tiled(ArraySource(grey), tiling=tiling, threads=2,
                                      foreground=foreground, **setting)
        assert_same(whole, tiled, tiling, grey.shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
def test_edges(tiling, dtype):
    grey = grey_image(dtype)
    for operator, threshold, min_size in itertools.product(OPERATORS, ("otsu", 0.15), (1, 3, 16)):
        settings = {"operator": operator, "threshold": threshold, "min_region_size": min_size}
        whole = segment_edges(grey, **settings)
        tiled = edges_tiled(ArraySource(grey), tiling=tiling, threads=2, **settings)
        assert_same(whole, tiled, tiling, grey.shape)


def test_edges_regions_over_255_across_many_tiles():
    # A grid of bright lines every 5 pixels encloses over 255 cells (uint16 labels), cut
    # by 3-pixel tiles into pieces that must be joined and numbered in raster order.
    grey = np.zeros((90, 96), np.uint8)
    grey[::5] = grey[:, ::5] = 200
    grey += np.random.default_rng(3).integers(0, 20, grey.shape).astype(np.uint8)
    for operator in ("laplace", "sobel"):
        whole = segment_edges(grey, operator=operator, min_region_size=2)
        assert whole.labels.max() > 255
        tiled = edges_tiled(ArraySource(grey), tiling=Tiling(size=3), operator=operator,
                            min_region_size=2)
        assert_same(whole, tiled, Tiling(size=3), grey.shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("tiling", TILINGS[:5], ids=TILING_IDS[:5])
def test_kmeans(tiling, dtype):
    rgb = rgb_image(dtype)
    # 20000 > 37 x 53: every pixel is the sample; 300 and 1000: drawn samples.
    for k, sample_size, seed in [(2, 20000, 0), (3, 300, 1), (4, 1000, 2)]:
        settings = {"k": k, "sample_size": sample_size, "seed": seed, "n_init": 1}
        whole = segment_kmeans(rgb, **settings)
        tiled = kmeans_tiled(ArraySource(rgb), tiling=tiling, threads=2, **settings)
        assert_same(whole, tiled, tiling, rgb.shape)


def test_kmeans_with_fewer_pixels_than_clusters():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    tiled = kmeans_tiled(ArraySource(rgb), tiling=Tiling(size=1), k=5)
    assert_same(segment_kmeans(rgb, k=5), tiled, Tiling(size=1), rgb.shape)


def test_kmeans_assignment_does_not_depend_on_how_pixels_are_chunked():
    # scikit-learn assigns 256 pixels at a time through a BLAS product: a tile's pixels
    # fall in other chunks, of other sizes, than the whole image's. Each pixel's distances
    # must come out the same, bit for bit, for the tiled labels to equal the whole ones;
    # 200,000 random colours give thousands of near ties.
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (200_000, 3)).astype(np.float32) * np.float32(1 / 255)
    model = KMeans(n_clusters=7, n_init=1, random_state=0).fit(pixels[:2000])
    whole = model.predict(pixels)
    for size in (1, 3, 255, 257, 1000, 4099):
        chunks = [model.predict(pixels[i : i + size])
                  for i in range(0, min(20_000, 1000 * size), size)]
        np.testing.assert_array_equal(np.concatenate(chunks), whole[: sum(map(len, chunks))])


@pytest.mark.parametrize("shape", [(1, 29), (23, 1), (1, 1), (2, 2), (3, 40)])
def test_thin_images_and_polarity_ties(shape):
    # One-row and one-column images count their border pixels twice (auto_polarity's
    # concatenation does); a two-level image gives ties on the border.
    rng = np.random.default_rng(sum(shape))
    grey = rng.choice(np.array([30, 200], np.uint8), size=shape)
    for tiling in (Tiling(size=1), Tiling(size=2), Tiling(size=5, overlap=2)):
        for method, foreground in itertools.product(("mean", "otsu"), POLARITIES):
            assert_same(segment_threshold(grey, method=method, foreground=foreground),
                        threshold_tiled(ArraySource(grey), tiling=tiling, method=method,
                                        foreground=foreground), tiling, shape)
        for foreground in POLARITIES:
            assert_same(segment_multi_threshold(grey, classes=3, foreground=foreground),
                        multi_threshold_tiled(ArraySource(grey), tiling=tiling, classes=3,
                                              foreground=foreground), tiling, shape)
        for operator in OPERATORS:
            assert_same(segment_edges(grey, operator=operator, min_region_size=2),
                        edges_tiled(ArraySource(grey), tiling=tiling, operator=operator,
                                    min_region_size=2), tiling, shape)


def test_one_column_counts_its_inside_twice_on_the_border():
    # auto_polarity strings the first and last rows, then both side columns, together: in
    # one column the inner pixels come twice. Here that makes bright the border's side
    # (4 of 6); counted once, it would be a tie, and bright's 2 pixels would win.
    grey = np.array([[10], [200], [200], [10]], np.uint8)
    whole = segment_threshold(grey, method="value", value=0.5, foreground="auto")
    assert whole.foreground == "dark"
    for tiling in (Tiling(size=1), Tiling(size=3)):
        tiled = threshold_tiled(ArraySource(grey), tiling=tiling, method="value", value=0.5,
                                foreground="auto")
        assert_same(whole, tiled, tiling, grey.shape)


def test_auto_polarity_decided_by_pixel_counts_on_a_border_tie():
    # Half the border is bright, half dark: auto falls back to the side with fewer pixels,
    # which the tiled run must count over all tiles. Bright is the larger side here.
    grey = np.full((6, 6), 200, np.uint8)
    grey[:3] = 10  # the top half dark: half the border...
    grey[1:3, 1:5] = 200  # ...but not its inside, so bright covers more pixels
    bright = grey > 100
    border = np.concatenate((bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]))
    assert 2 * border.sum() == border.size and 2 * bright.sum() > bright.size
    whole = segment_threshold(grey, method="value", value=0.5, foreground="auto")
    assert whole.foreground == "dark"
    tiled = threshold_tiled(ArraySource(grey), tiling=Tiling(size=4), method="value", value=0.5,
                            foreground="auto")
    assert_same(whole, tiled, Tiling(size=4), grey.shape)


def test_random_images_tilings_and_settings():
    # A seeded stand-in for property-based tests: shapes, sample types, tilings, threads
    # and settings drawn at random.
    rng = np.random.default_rng(2020)
    for _ in range(25):
        shape = tuple(int(s) for s in rng.integers(1, 30, 2))
        dtype = (np.uint8, np.uint16)[rng.integers(2)]
        grey = (rng.random(shape) ** rng.uniform(0.3, 3) * np.iinfo(dtype).max).astype(dtype)
        size = int(rng.integers(1, 35))
        tiling = Tiling(size=size, overlap=int(rng.integers(0, size)))
        threads = int(rng.integers(1, 4))
        source = ArraySource(grey)
        method = ("mean", "otsu", "value")[rng.integers(3)]
        foreground = POLARITIES[rng.integers(3)]
        value = float(rng.random()) if method == "value" else None
        assert_same(segment_threshold(grey, method=method, value=value, foreground=foreground),
                    threshold_tiled(source, tiling=tiling, threads=threads, method=method,
                                    value=value, foreground=foreground), tiling, shape)
        classes = int(rng.integers(2, 5))
        assert_same(segment_multi_threshold(grey, classes=classes, foreground=foreground),
                    multi_threshold_tiled(source, tiling=tiling, threads=threads,
                                          classes=classes, foreground=foreground),
                    tiling, shape)
        edges = {"operator": OPERATORS[rng.integers(4)], "min_region_size": int(rng.integers(1, 9)),
                 "threshold": ("otsu", float(rng.random()) * 0.5)[rng.integers(2)]}
        assert_same(segment_edges(grey, **edges),
                    edges_tiled(source, tiling=tiling, threads=threads, **edges), tiling, shape)


def test_results_do_not_depend_on_threads():
    grey, rgb, tiling = grey_image(np.uint8), rgb_image(np.uint8), Tiling(size=9)
    for threads in (1, 2, 5):
        assert_same(segment_edges(grey, min_region_size=4),
                    edges_tiled(ArraySource(grey), tiling=tiling, threads=threads,
                                min_region_size=4), tiling, grey.shape)
        assert_same(segment_kmeans(rgb, k=3, sample_size=500, n_init=1),
                    kmeans_tiled(ArraySource(rgb), tiling=tiling, threads=threads, k=3,
                                 sample_size=500, n_init=1), tiling, rgb.shape)


def test_tiled_functions_read_only_tiles():
    # A source that refuses any read larger than a tile plus its halo.
    class TileOnly(ArraySource):
        def read(self, rows, cols):
            assert rows.stop - rows.start <= 8 + 2 and cols.stop - cols.start <= 8 + 2
            return super().read(rows, cols)

    grey, rgb, tiling = grey_image(np.uint8), rgb_image(np.uint8), Tiling(size=8)
    threshold_tiled(TileOnly(grey), tiling=tiling, foreground="auto")
    multi_threshold_tiled(TileOnly(grey), tiling=tiling, classes=3, foreground="auto")
    edges_tiled(TileOnly(grey), tiling=tiling)
    kmeans_tiled(TileOnly(rgb), tiling=tiling, k=2, sample_size=100, n_init=1)


def test_memory_follows_the_tiles_not_the_image():
    # A tiled run holds a few tiles' worth (tracemalloc sees NumPy's and OpenCV's arrays).
    # On this 1024 x 1024 image the whole-image edges need 11 MB beyond their outputs,
    # k-means 23 MB.
    import tracemalloc

    rng = np.random.default_rng(9)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (1024, 1024)).astype(np.uint8), (0, 0), 3)
    rgb = np.dstack([grey, 255 - grey, grey // 2])
    tiling = Tiling(size=128)
    bound = {"threshold_tiled": 0.5, "multi_threshold_tiled": 0.5, "edges_tiled": 4.5,
             "kmeans_tiled": 3}
    runs = [(threshold_tiled, grey, {"foreground": "auto"}),
            (multi_threshold_tiled, grey, {"classes": 3, "foreground": "auto"}),
            (edges_tiled, grey, {}),
            (kmeans_tiled, rgb, {"k": 3, "n_init": 1})]
    for tiled, image, settings in runs:
        tiled(ArraySource(image[:8, :8]), tiling=tiling, **settings)  # imports done before
        tracemalloc.start()
        try:
            tiled(ArraySource(image), tiling=tiling, threads=2, **settings)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # The labels and edge maps are on disk (segpipe.scratch), so nothing is
        # image-sized: the uint8 labels alone would be 1 MB. What is left is per tile in
        # flight (four on two threads): edges' 16-bit histograms (0.5 MB each), k-means'
        # float pixels.
        assert peak < bound[tiled.__name__] * 2**20, (tiled.__name__, peak)


def test_mean_from_the_histogram_is_numpys_mean():
    # The tiled mean is the exact integer sum over the count; so is grey.mean(), for any
    # realistic size (partial sums stay below 2**53), with pairwise summation or not.
    rng = np.random.default_rng(8)
    for shape in [(1, 1), (3, 7), (97, 211), (1000, 1001), (2048, 3001)]:
        for dtype in (np.uint8, np.uint16):
            top = np.iinfo(dtype).max
            grey = (top - rng.integers(0, 3, shape)).astype(dtype)  # sums with many digits
            assert histogram_threshold(*intensity_histogram(grey), method="mean") == grey.mean()


def test_settings_refused_as_the_whole_image_functions_refuse_them():
    grey, rgb, tiling = ArraySource(grey_image(np.uint8)), ArraySource(rgb_image(np.uint8)), Tiling(8)
    with pytest.raises(ValueError, match="foreground must be one of"):
        threshold_tiled(grey, tiling=tiling, foreground="both")
    with pytest.raises(ValueError, match="needs a 'value'"):
        threshold_tiled(grey, tiling=tiling, method="value")
    with pytest.raises(ValueError, match="got 'median'"):
        threshold_tiled(grey, tiling=tiling, method="median")
    with pytest.raises(ValueError, match="exactly one of"):
        multi_threshold_tiled(grey, tiling=tiling)
    with pytest.raises(ValueError, match="classes must be >= 2, got 1"):
        multi_threshold_tiled(grey, tiling=tiling, classes=1)
    with pytest.raises(ValueError, match="rising"):
        multi_threshold_tiled(grey, tiling=tiling, thresholds=[0.5, 0.2])
    with pytest.raises(ValueError, match="operator must be one of"):
        edges_tiled(grey, tiling=tiling, operator="canny")
    with pytest.raises(ValueError, match="k must be >= 2, got 1"):
        kmeans_tiled(rgb, tiling=tiling, k=1)
    with pytest.raises(ValueError, match=r"shape \(M, N\), got \(37, 53, 3\)"):
        threshold_tiled(rgb, tiling=tiling)
    with pytest.raises(ValueError, match=r"shape \(M, N, C\), got \(37, 53\)"):
        kmeans_tiled(grey, tiling=tiling)


def test_registry_runs_the_exact_kinds_tiled():
    assert get_method("threshold").tiled is threshold_tiled
    assert get_method("multi_threshold").tiled is multi_threshold_tiled
    assert get_method("edges").tiled is edges_tiled
    assert get_method("kmeans").tiled is kmeans_tiled


# --- segpipe.components on its own -------------------------------------------------------

def whole_components(mask, connectivity, min_size=1):
    """cv2's SAUF labels of the whole mask, small components removed and the rest
    renumbered in order, with their sizes and first pixels found by np.unique."""
    n, labels = cv2.connectedComponentsWithAlgorithm(mask.astype(np.uint8), connectivity,
                                                     cv2.CV_32S, cv2.CCL_SAUF)
    sizes = np.bincount(labels.ravel(), minlength=n)
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(n, np.int64)
    lut[keep] = np.arange(1, keep.sum() + 1)
    labels = lut[labels]
    values, first = np.unique(labels.ravel(), return_index=True)
    return labels, sizes[keep], first[values > 0]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_equal_cv2_on_random_masks(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 40, 2))
        mask = rng.random(shape) < rng.uniform(0.2, 0.8)
        core, min_size = int(rng.integers(1, 20)), int(rng.integers(1, 5))
        found = label_components(lambda tile, mask=mask: mask[tile.core],
                                 tile_grid(shape, core=core), shape=shape,
                                 connectivity=connectivity, min_size=min_size,
                                 threads=int(rng.integers(1, 4)))
        labels, sizes, first = whole_components(mask, connectivity, min_size)
        np.testing.assert_array_equal(found.labels, labels)
        np.testing.assert_array_equal(found.sizes, sizes)
        np.testing.assert_array_equal(found.first_pixels, first)
        assert found.count == sizes.size and found.labels.dtype == np.uint8


def test_components_a_spiral_across_many_tiles():
    # One path spiralling inwards through every tile of a 3-pixel grid, a pixel away from
    # its earlier turns: a single component of 820 pixels whose pieces, in many tiles,
    # union-find must join end to end.
    n = 41
    mask = np.zeros((n, n), bool)
    mask[0, 0] = True
    y, x, dy, dx, turns = 0, 0, 0, 1, 0

    def free(y, x):
        return 0 <= y < n and 0 <= x < n and not mask[y, x]

    while turns < 2:
        if free(y + dy, x + dx) and free(y + 2 * dy, x + 2 * dx):
            y, x, turns = y + dy, x + dx, 0
            mask[y, x] = True
        else:
            dy, dx, turns = dx, -dy, turns + 1
    assert cv2.connectedComponents(mask.view(np.uint8), connectivity=4)[0] == 2
    for connectivity in (4, 8):
        found = label_components(lambda tile: mask[tile.core], tile_grid(mask.shape, core=3),
                                 shape=mask.shape, connectivity=connectivity)
        labels, sizes, first = whole_components(mask, connectivity)
        np.testing.assert_array_equal(found.labels, labels)
        np.testing.assert_array_equal(found.sizes, sizes)
        np.testing.assert_array_equal(found.first_pixels, first)


def test_components_diagonal_across_a_tile_corner():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = mask[2, 0] = True  # (1, 1) and (2, 2) meet at a tile corner
    grid = tile_grid(mask.shape, core=2)
    four = label_components(lambda t: mask[t.core], grid, shape=mask.shape, connectivity=4)
    eight = label_components(lambda t: mask[t.core], grid, shape=mask.shape, connectivity=8)
    assert four.count == 3 and eight.count == 1
    np.testing.assert_array_equal(eight.labels, mask.astype(np.uint8))
    # (2, 0) touches (1, 1) across the other diagonal, from the tile below-left.
    assert eight.sizes.tolist() == [3] and eight.first_pixels.tolist() == [5]


def test_components_large_counts_get_wider_labels():
    mask = np.zeros((40, 40), bool)
    mask[::2, ::2] = True  # 400 single pixels
    found = label_components(lambda t: mask[t.core], tile_grid(mask.shape, core=7),
                             shape=mask.shape, connectivity=8)
    assert found.count == 400 and found.labels.dtype == np.uint16
    np.testing.assert_array_equal(found.labels, whole_components(mask, 8)[0])


def test_components_take_uint8_masks_and_check_their_shape():
    mask = np.array([[0, 255, 0], [0, 7, 0]], np.uint8)
    found = label_components(lambda t: mask[t.core], tile_grid(mask.shape, core=1),
                             shape=mask.shape)
    np.testing.assert_array_equal(found.labels, (mask > 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"mask of tile 0 has shape \(2, 3\), its core \(1, 1\)"):
        label_components(lambda t: mask, tile_grid(mask.shape, core=1), shape=mask.shape)
    with pytest.raises(ValueError, match="connectivity must be 4 or 8, got 6"):
        label_components(lambda t: mask[t.core], tile_grid(mask.shape, core=1),
                         shape=mask.shape, connectivity=6)


def test_map_tiles_keeps_the_grid_order_and_checks_threads():
    grid = tile_grid((10, 10), core=3)
    assert list(map_tiles(lambda t: t.index, grid, threads=4)) == list(range(len(grid)))
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        list(map_tiles(lambda t: t.index, grid, threads=0))
