"""Connected components of an image seen one tile at a time, numbered as if seen whole.

:func:`label_components` gives the same labels as OpenCV's SAUF labelling of the whole
mask (``cv2.connectedComponentsWithAlgorithm(mask, connectivity, cv2.CV_32S,
cv2.CCL_SAUF)``: components numbered 1..K in the raster order of their first pixel), but
holds only one tile's mask and labels per thread, plus the output labels:

1. Each tile's core is labelled on its own with SAUF. Its components get provisional
   numbers, consecutive across tiles, and the tile keeps only their sizes, first pixels
   and the labels along its four sides.
2. Provisional components that touch across a core border (4-connectivity: side by side;
   8-connectivity: diagonally too) are merged by union-find.
3. Each merged component's size is the sum of its parts and its first pixel the first of
   theirs; components are renumbered in the raster order of their first pixels.
4. Each tile's core is labelled again (SAUF is deterministic) and its provisional numbers
   are mapped to the final ones in the output.

The tiles are spread over threads (:func:`segpipe.tiles.map_tiles`): OpenCV and NumPy release the GIL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from segpipe.imageio import label_dtype
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, map_tiles


@dataclass(frozen=True)
class Components:
    """Connected components of a whole image.

    Attributes
    ----------
    labels : ScratchLabels
        ``(M, N)``, on disk (:mod:`segpipe.scratch`): 0 off the mask (and on removed components), components 1..K in the raster order
        of their first pixels; the smallest type that holds K
        (:func:`segpipe.imageio.label_dtype`).
    sizes : (K,) ndarray of int64
        Pixels of component ``i + 1``.
    first_pixels : (K,) ndarray of int64
        Flat index (``row * N + col``) of each component's first pixel in raster order;
        rising. ``np.unravel_index(first_pixels, labels.shape)`` gives rows and columns.
    """

    labels: ScratchLabels
    sizes: np.ndarray
    first_pixels: np.ndarray

    @property
    def count(self) -> int:
        """K, the number of components."""
        return int(self.sizes.size)


@dataclass(frozen=True)
class _TileScan:
    """What pass 1 keeps of one tile: its components' sizes and first pixels (flat,
    image coordinates), and its provisional labels along its four sides."""

    sizes: np.ndarray
    first_pixels: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray


def label_components(mask_of: Callable[[Tile], np.ndarray], tiles: Sequence[Tile], *,
                     shape: tuple[int, int], connectivity: int = 4, min_size: int = 1,
                     threads: int = 1) -> Components:
    """Label the connected components of a mask given tile by tile.

    Parameters
    ----------
    mask_of : callable
        ``mask_of(tile)`` gives the mask of ``tile.core``: an ``(h, w)`` ndarray of bool
        (or uint8, non-zero meaning on). It is called twice per tile and must give the
        same mask both times; calls may run on several threads at once.
    tiles : sequence of Tile
        A grid from :func:`segpipe.tiles.tile_grid` (only the cores are used).
    shape : (M, N)
        The image's shape.
    connectivity : {4, 8}
    min_size : int
        Components with fewer pixels are removed (set to 0) before numbering, as if they
        had never been found.
    threads : int
        Threads the tiles are spread over; the result does not depend on it.

    Returns
    -------
    Components
        The labels equal ``cv2.connectedComponentsWithAlgorithm(whole_mask, connectivity,
        cv2.CV_32S, cv2.CCL_SAUF)``'s when nothing is removed.

    Raises
    ------
    ValueError
        For a connectivity other than 4 or 8, or a mask whose shape is not its tile's
        core's.

    Notes
    -----
    Memory: the output labels are written to disk (:class:`segpipe.scratch.ScratchLabels`);
    everything else is per tile (the mask and int32 labels of the tiles being worked on),
    per tile side (its labels) or per component (a few int64 each).

    Examples
    --------
    >>> from segpipe.tiles import tile_grid
    >>> mask = np.array([[1, 1, 0, 1],
    ...                  [0, 1, 0, 1],
    ...                  [1, 1, 1, 1]], bool)
    >>> found = label_components(lambda t: mask[t.core], tile_grid(mask.shape, core=2),
    ...                          shape=mask.shape)
    >>> np.asarray(found.labels)  # one U-shaped component across all four tiles
    array([[1, 1, 0, 1],
           [0, 1, 0, 1],
           [1, 1, 1, 1]], dtype=uint8)
    >>> found.sizes, found.first_pixels
    (array([9]), array([0]))
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    width = shape[1]

    def scan(tile: Tile) -> _TileScan:
        count, local = _label_core(mask_of, tile, connectivity)
        flat = local.ravel()
        first = _first_pixels(flat, count)
        y0, x0 = tile.core[0].start, tile.core[1].start
        tile_width = local.shape[1]
        return _TileScan(
            sizes=np.bincount(flat, minlength=count + 1)[1:].astype(np.int64),
            first_pixels=(y0 + first // tile_width) * width + x0 + first % tile_width,
            top=local[0].copy(), bottom=local[-1].copy(),
            left=local[:, 0].copy(), right=local[:, -1].copy(),
        )

    scans = list(map_tiles(scan, tiles, threads=threads))
    # Provisional number of a tile's local label l (1..n): offsets[tile] + l.
    counts = np.array([s.sizes.size for s in scans], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    total = int(counts.sum())
    root = _union(total, *_touching(tiles, scans, offsets, connectivity))

    # Sizes add up over the parts of a component, its first pixel is the first of theirs.
    parts = root[1:]
    sizes = np.zeros(total + 1, dtype=np.int64)
    np.add.at(sizes, parts, np.concatenate([s.sizes for s in scans]))
    first = np.full(total + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, parts, np.concatenate([s.first_pixels for s in scans]))
    roots = np.flatnonzero(root == np.arange(total + 1))[1:]
    roots = roots[sizes[roots] >= min_size]
    roots = roots[np.argsort(first[roots])]
    final = np.zeros(total + 1, dtype=label_dtype(roots.size))
    final[roots] = np.arange(1, roots.size + 1)
    final = final[root]

    labels = ScratchLabels(shape, final.dtype)
    position = {tile.index: i for i, tile in enumerate(tiles)}

    def write(tile: Tile) -> None:
        offset = offsets[position[tile.index]]
        lut = final[offset : offset + counts[position[tile.index]] + 1].copy()
        lut[0] = 0
        labels[tile.core] = lut[_label_core(mask_of, tile, connectivity)[1]]

    for _ in map_tiles(write, tiles, threads=threads):
        pass
    return Components(labels=labels, sizes=sizes[roots], first_pixels=first[roots])


def _label_core(mask_of: Callable[[Tile], np.ndarray], tile: Tile,
                connectivity: int) -> tuple[int, np.ndarray]:
    """The number of components in one tile's core, and their SAUF labels (int32)."""
    mask = np.asarray(mask_of(tile))
    core_shape = (tile.core[0].stop - tile.core[0].start, tile.core[1].stop - tile.core[1].start)
    if mask.shape != core_shape:
        raise ValueError(f"the mask of tile {tile.index} has shape {mask.shape}, "
                         f"its core {core_shape}")
    if mask.dtype != np.uint8:
        mask = (mask != 0).view(np.uint8)
    # SAUF scans line by line and numbers components in the raster order of their first
    # pixels (the default algorithms scan in blocks), which _first_pixels relies on.
    n, local = cv2.connectedComponentsWithAlgorithm(np.ascontiguousarray(mask), connectivity,
                                                    cv2.CV_32S, cv2.CCL_SAUF)
    return n - 1, local


def _first_pixels(flat: np.ndarray, count: int) -> np.ndarray:
    """The flat index of the first pixel of labels 1..count, numbered in raster order.

    With labels in raster order of first appearance, the running maximum rises by one at
    exactly each label's first pixel: a linear scan instead of a sort.
    """
    running = np.maximum.accumulate(flat)
    rises = np.flatnonzero(np.diff(running, prepend=0))
    if rises.size != count:
        raise RuntimeError(f"OpenCV's SAUF labelling numbered {count} components out of "
                           "raster order; tiled labels would not match whole-image ones")
    return rises.astype(np.int64)


def _touching(tiles: Sequence[Tile], scans: Sequence[_TileScan], offsets: np.ndarray,
              connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of provisional labels that touch across a core border.

    The labels along each grid line are strung together over the whole image, so the
    diagonal neighbours of 8-connectivity are found across tile corners too.
    """
    at = {(t.row, t.col): i for i, t in enumerate(tiles)}
    rows = 1 + max(t.row for t in tiles)
    cols = 1 + max(t.col for t in tiles)

    def provisional(position: int, side: str) -> np.ndarray:
        local = getattr(scans[position], side).astype(np.int64)
        return np.where(local > 0, local + offsets[position], 0)

    def line(cells: Iterable[tuple[int, int]], side: str) -> np.ndarray:
        return np.concatenate([provisional(at[cell], side) for cell in cells])

    pairs = []
    shifts = (0,) if connectivity == 4 else (0, 1, -1)
    for c in range(cols - 1):
        left = line(((r, c) for r in range(rows)), "right")
        right = line(((r, c + 1) for r in range(rows)), "left")
        pairs += _pairs(left, right, shifts)
    for r in range(rows - 1):
        above = line(((r, c) for c in range(cols)), "bottom")
        below = line(((r + 1, c) for c in range(cols)), "top")
        pairs += _pairs(above, below, shifts)
    empty = [np.empty(0, np.int64)]
    return (np.concatenate([a for a, _ in pairs] + empty),
            np.concatenate([b for _, b in pairs] + empty))


def _pairs(a: np.ndarray, b: np.ndarray, shifts: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs (a[i], b[i + shift]) where both are labelled, for each shift."""
    found = []
    for shift in shifts:
        if shift >= 0:
            x, y = a[: a.size - shift], b[shift:]
        else:
            x, y = a[-shift:], b[: b.size + shift]
        both = (x > 0) & (y > 0)
        found.append((x[both], y[both]))
    return found


def _union(total: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over labels 0..total joined by the pairs (a[i], b[i]): the root of each
    label, the smallest label of its set.

    Vectorised in rounds: every pair whose labels have different roots hooks the larger
    root under the smaller (so no cycle can form), then paths are compressed to their
    roots. Each round merges at least one set; chains of components across many tiles
    still take only a few rounds, since a round hooks all of their roots at once.
    """
    parent = np.arange(total + 1, dtype=np.int64)
    while True:
        parent = _compress(parent)
        ra, rb = parent[a], parent[b]
        apart = ra != rb
        if not apart.any():
            return parent
        a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))


def _compress(parent: np.ndarray) -> np.ndarray:
    """Every label pointing straight at its root (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand
