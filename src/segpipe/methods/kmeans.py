"""k-means clustering of pixel colours, whole or in tiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from segpipe.imageio import intensity_max, label_dtype
from segpipe.methods.base import Segmentation
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, TileSource, Tiling, map_tiles, tile_grid

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

# Luma weights (BT.601) to order clusters from dark to bright.
_LUMA = np.array([0.299, 0.587, 0.114])


def segment_kmeans(rgb: np.ndarray, *, k: int = 3, seed: int = 0, sample_size: int = 20000,
                   n_init: int = 3) -> Segmentation:
    """Cluster pixel colours with k-means; labels 0..k-1 from the darkest cluster up.

    The centres are fitted on a random subsample of the pixels and every pixel is then
    assigned to its nearest centre. On 1-megapixel photographs a 20,000-pixel sample
    gives an inertia within 1% of a fit on all pixels at a small fraction of the time
    (docs/benchmarks.md).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8 or uint16
    k : int
        Number of clusters, at least 2.
    seed : int
        Seeds the subsample and scikit-learn's initialisation: the same image and seed
        give the same labels.
    sample_size : int
        Pixels used to fit the centres (all pixels if the image has fewer).
    n_init : int
        k-means restarts on the sample; the best is kept.

    Returns
    -------
    Segmentation
        ``labels`` (uint8 for k <= 256): cluster index, ordered by the luma of the
        centres so that label 0 is the darkest cluster in every image and run.

    Examples
    --------
    >>> rgb = np.zeros((4, 4, 3), dtype=np.uint8); rgb[:, 2:] = 200
    >>> segment_kmeans(rgb, k=2).labels[0]
    array([0, 0, 1, 1], dtype=uint8)
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    pixels = _unit_pixels(rgb)
    draw = _sample_draw(pixels.shape[0], sample_size, seed)
    model, rank = _fit(pixels if draw is None else pixels[draw], k=k, seed=seed, n_init=n_init)
    labels = rank[model.predict(pixels)].reshape(rgb.shape[:2])
    return Segmentation(labels=labels.astype(label_dtype(k - 1)))


def kmeans_tiled(source: TileSource, *, tiling: Tiling, threads: int = 1, k: int = 3,
                 seed: int = 0, sample_size: int = 20000, n_init: int = 3) -> Segmentation:
    """:func:`segment_kmeans` of an image read tile by tile; the same result, bit for bit.

    The sample is drawn as the whole image's is, over the flat pixel indices of the whole
    image (so independently of the tiling), and its pixels are gathered tile by tile into
    the draw's order; the fit is then the same. Each tile's core is assigned to the
    nearest centres by ``KMeans.predict``, as the whole image is: scikit-learn assigns
    pixels 256 at a time through a BLAS matrix product in which each pixel's distances are
    computed alone, by the same operations whatever chunk it falls in
    (``tests/test_tiled_exact.py`` checks this bit for bit).

    Parameters
    ----------
    source : TileSource
        A colour ``(M, N, C)`` image of uint8 or uint16 (:mod:`segpipe.tiles`).
    tiling : Tiling
        Tiles of ``tiling.core`` pixels a side; the overlap is not needed.
    threads : int
        Threads the tiles are spread over; the result does not depend on it.
    k, seed, sample_size, n_init
        As for :func:`segment_kmeans`.

    Returns
    -------
    Segmentation
        As :func:`segment_kmeans`'s, with ``tiles`` the number of tiles.

    Raises
    ------
    ValueError
        For k below 2, or a source that is not ``(M, N, C)``.

    Notes
    -----
    Memory: the labels (uint8 for k <= 256) go to disk (:mod:`segpipe.scratch`); the rest
    is per tile (its
    pixels in float32 and their assignment: about 24 bytes per pixel of a tile) or per
    sampled pixel (the sample and its draw).

    Examples
    --------
    >>> from segpipe.tiles import ArraySource
    >>> rgb = np.zeros((4, 4, 3), dtype=np.uint8); rgb[:, 2:] = 200
    >>> np.asarray(kmeans_tiled(ArraySource(rgb), tiling=Tiling(size=3), k=2).labels)[0]
    array([0, 0, 1, 1], dtype=uint8)
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if len(source.shape) != 3:
        raise ValueError(f"a colour image has shape (M, N, C), got {tuple(source.shape)}")
    height, width = source.shape[:2]
    grid = tile_grid((height, width), core=tiling.core)
    draw = _sample_draw(height * width, sample_size, seed)
    if draw is None:
        draw = np.arange(height * width)
    sample = np.empty((draw.size, source.shape[2]), dtype=np.float32)
    rows, cols = np.divmod(draw, width)
    # The tile each drawn pixel falls in (tile_grid numbers tiles in raster order), and the
    # drawn pixels grouped by tile.
    owner = (rows // tiling.core) * -(-width // tiling.core) + cols // tiling.core
    by_tile = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[by_tile], np.arange(len(grid) + 1))

    def gather(tile: Tile) -> None:
        mine = by_tile[bounds[tile.index] : bounds[tile.index + 1]]
        if mine.size:
            block = source.read(*tile.core)
            sample[mine] = _unit_pixels(
                block[rows[mine] - tile.core[0].start, cols[mine] - tile.core[1].start])

    for _ in map_tiles(gather, grid, threads=threads):
        pass
    model, rank = _fit(sample, k=k, seed=seed, n_init=n_init)
    labels = ScratchLabels((height, width), label_dtype(k - 1))

    def assign(tile: Tile) -> None:
        block = source.read(*tile.core)
        labels[tile.core] = rank[model.predict(_unit_pixels(block))].reshape(block.shape[:2])

    # Every predict limits BLAS to one thread and restores the count it found on leaving;
    # overlapping on several threads, one could find another's limit and restore that.
    # Holding the limit around them all leaves nothing to restore but this one.
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in map_tiles(assign, grid, threads=threads):
            pass
    return Segmentation(labels=labels, tiles=len(grid))


def _unit_pixels(rgb: np.ndarray) -> np.ndarray:
    """(P, C) float32 pixels on the 0..1 scale."""
    pixels = rgb.reshape(-1, rgb.shape[-1]).astype(np.float32)
    pixels *= np.float32(1.0 / intensity_max(rgb.dtype))
    return pixels


def _sample_draw(count: int, sample_size: int, seed: int) -> np.ndarray | None:
    """The flat indices of the pixels the centres are fitted on; None for all of them."""
    if count <= sample_size:
        return None
    return np.random.default_rng(seed).choice(count, size=sample_size, replace=False)


def _fit(sample: np.ndarray, *, k: int, seed: int, n_init: int) -> tuple[KMeans, np.ndarray]:
    """The model fitted on ``sample``, and each cluster's rank by the luma of its centre."""
    from sklearn.cluster import KMeans

    # An image with fewer pixels than k cannot have k clusters; it gets one per pixel.
    model = KMeans(n_clusters=min(k, sample.shape[0]), n_init=n_init, random_state=int(seed))
    model.fit(sample)
    order = np.argsort(model.cluster_centers_ @ _LUMA, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return model, rank
