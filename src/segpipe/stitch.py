"""Label images of overlapping tiles stitched into one label image.

A method that is only local (watershed, region growing, superpixels, Mask R-CNN) cannot
give its whole-image result bit for bit on tiles. Each tile is segmented on its read
region, its core and a margin of ``overlap // 2`` on each side (:mod:`segpipe.tiles`), and
the tiles' labels are stitched here, in one of two ways.

Objects (``partition=False``: instances, 0 is background)
    A tile *sees an object whole* when the object does not touch a side of the tile's read
    region that cuts through the image (sides on the image border do not count): an object
    touching a cut side may go on beyond it. Each object seen whole is kept by one tile
    only, its *owner*, decided from its bounding box alone, so that every tile that sees it
    whole names the same owner: in each direction (rows, then columns) the owner is the
    tile whose core holds the box's centre, ``(first + last) // 2``, if that tile sees the
    box whole, else the first tile that does (this happens only at the image border,
    where read regions are clipped, with margins at least as wide as cores; the tile
    holding the centre sees every box whole that any tile does otherwise). The owner
    keeps the object with all its pixels, margins included; the other tiles drop it.

    The tile whose core holds the centre sees whole every object at most
    ``2 * margin - 1`` pixels tall and wide (``overlap - 1`` for an even overlap), so such
    objects are never cut. Larger objects are whole when some tile's read region holds
    them away from its cut sides. An object that no tile sees whole is *cut*: each tile
    keeps its part in its own core, a piece, so the pieces cover the object and meet at
    the core lines. Tiles that segment the same object differently can also leave a
    piece: pixels no kept whole object claims.

    Where kept objects claim the same pixel, a whole object wins over a piece, and between
    whole objects the tile first in the grid's order wins. Objects and pieces left with
    fewer than ``min_size`` pixels are dropped, as the methods drop small objects.
    ``cut_objects`` counts the pieces kept in the result: an object cut in three counts
    three.

Regions (``partition=True``: a partition of the image, every pixel labelled)
    Every tile keeps its core: the cores partition the image, so every pixel gets exactly
    one label and there are no holes at the tile lines. A region crossing a core line is
    then in pieces, one per tile, and two pieces are merged (union-find) when the two
    tiles agree on them where their read regions overlap: in the later tile's margin over
    the earlier tile's core, the later tile's region and the earlier tile's piece cover
    more than half of each other's pixels there. A region is cut at a line when a tile
    saw at least as much of it across the line (in its margin over the neighbour's core)
    as in its own core, and its piece ended up merged with none of the neighbour's:
    ``cut_objects`` counts the regions of the result with such a cut, once each. A region
    that crosses by less keeps more than half of what its tile saw of it (IoU above 0.5,
    as object F1 asks): tiles that disagree on it by a few pixels do not count as a cut.

In both, labels are unique across the image and numbered 1..N in the raster order of each
label's first pixel, so the result depends neither on the order in which tiles are added
nor on how many threads segment them.

Memory: a few numbers per label, the read region of the tile being stitched, and the
labels of the tiles handed over ahead of their turn (:class:`Stitcher` stitches in the
grid's order; :func:`stitch_tiles` segments ``threads`` tiles at a time and lets at most
``2 * threads`` run or wait ahead of the stitching). The provisional labels (4 bytes a
pixel) are on disk (:class:`segpipe.scratch.ScratchLabels`), and the result is read
through a lookup table from there, never held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.imageio import label_dtype
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, TileSource, map_tiles

_NO_PIXEL = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Stitched:
    """A stitched label image.

    Attributes
    ----------
    labels : ScratchLabels
        ``(M, N)``, on disk (:mod:`segpipe.scratch`): 0 is background (objects only),
        labels 1..N in the raster order of their first pixels; the smallest type that
        holds N.
    cut_objects : int
        Labels the stitching had to cut at a tile line (see the module's notes).
    """

    labels: ScratchLabels
    cut_objects: int


class _Axis:
    """The grid along one direction: each tile row's (or column's) core and read interval."""

    def __init__(self, cores: Sequence[slice], reads: Sequence[slice], length: int) -> None:
        self.core_starts = np.array([c.start for c in cores], np.int64)
        self.core_stops = np.array([c.stop for c in cores], np.int64)
        self.read_starts = np.array([r.start for r in reads], np.int64)
        self.read_stops = np.array([r.stop for r in reads], np.int64)
        self.length = length

    def sees_whole(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``(n, tiles)`` bool: which tile rows hold ``first..last`` (inclusive) inside
        their read interval without touching an end that cuts through the image."""
        first, last = first[:, None], last[:, None]
        starts, stops = self.read_starts, self.read_stops
        clear_start = (first > starts) | ((first == starts) & (starts == 0))
        clear_stop = (last < stops - 1) | ((last == stops - 1) & (stops == self.length))
        return clear_start & clear_stop

    def owner(self, sees: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The owning tile row of each interval (see the module's notes); -1 where no tile
        row sees it whole."""
        centre = np.searchsorted(self.core_starts, (first + last) // 2, side="right") - 1
        anchored = sees[np.arange(len(first)), centre]
        owner = np.where(anchored, centre, np.argmax(sees, axis=1))
        return np.where(sees.any(axis=1), owner, -1)

    def cores_meeting(self, read: slice) -> range:
        """The tile rows whose cores meet the interval ``read``."""
        first = int(np.searchsorted(self.core_stops, read.start, side="right"))
        last = int(np.searchsorted(self.core_starts, read.stop, side="left"))
        return range(first, last)



class Ownership:
    """The ownership rule of a grid (see the module's notes), for objects given by their
    bounding boxes: which tile sees an object whole, and which one keeps it.

    :class:`Stitcher` applies it to the objects of label images; a detector's instances
    (boxes and masks, Mask R-CNN) can apply it to its boxes directly.

    Parameters
    ----------
    shape : (M, N)
        The image's shape.
    tiles : sequence of Tile
        The grid (``Tiling.tiles_of(shape)``), in its order.

    Raises
    ------
    ValueError
        For an empty grid, or a grid out of order.

    Examples
    --------
    >>> from segpipe.tiles import tile_grid
    >>> grid = tile_grid((1, 10), core=5, margin=3)
    >>> rule = Ownership((1, 10), grid)
    >>> box = [np.array([0]), np.array([4]), np.array([0]), np.array([6])]  # cols 4..6
    >>> # Both tiles see it whole; the second one's core holds its centre, column 5.
    >>> [tuple(map(bool, (w[0], o[0]))) for w, o in (rule.of(t, *box) for t in grid)]
    [(True, False), (True, True)]
    """

    def __init__(self, shape: tuple[int, ...], tiles: Sequence[Tile]) -> None:
        if not tiles:
            raise ValueError("a grid needs at least one tile, got none")
        for k, tile in enumerate(tiles):
            if tile.index != k:
                raise ValueError(f"tile {tile.index} is at position {k} of the grid")
        rows = {t.row: t for t in tiles}
        cols = {t.col: t for t in tiles}
        self.rows = _Axis([rows[r].core[0] for r in sorted(rows)],
                          [rows[r].read[0] for r in sorted(rows)], int(shape[0]))
        self.cols = _Axis([cols[c].core[1] for c in sorted(cols)],
                          [cols[c].read[1] for c in sorted(cols)], int(shape[1]))

    def of(self, tile: Tile, top: np.ndarray, left: np.ndarray, bottom: np.ndarray,
           right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For boxes found by ``tile`` (image coordinates, ``bottom`` and ``right``
        inclusive): whether ``tile`` sees each one whole, and whether it owns it (keeps
        it whole). An object no tile sees whole is owned by none: it is cut."""
        top, left, bottom, right = (np.asarray(v, np.int64) for v in (top, left, bottom, right))
        row_sees = self.rows.sees_whole(top, bottom)
        col_sees = self.cols.sees_whole(left, right)
        whole = row_sees[:, tile.row] & col_sees[:, tile.col]
        owned = ((self.rows.owner(row_sees, top, bottom) == tile.row)
                 & (self.cols.owner(col_sees, left, right) == tile.col))
        return whole, owned


class Stitcher:
    """Stitches the labels of a grid's tiles into one label image.

    Parameters
    ----------
    shape : tuple of int
        The image's shape, ``(M, N)`` or ``(M, N, C)``.
    tiles : sequence of Tile
        The grid (``Tiling.tiles_of(shape)``), in its order.
    partition : bool
        False: the labels are objects (0 background), stitched by ownership. True: they
        partition the image, stitched core by core and merged across the lines.
    min_size : int
        Objects only: labels left with fewer pixels are dropped.

    Raises
    ------
    ValueError
        For an empty grid, a grid out of order, or ``min_size`` below 1 (or above 1 for a
        partition).

    Examples
    --------
    A 3-pixel object across the line between two tiles, seen whole by the first tile:

    >>> from segpipe.tiles import tile_grid
    >>> truth = np.array([[0, 0, 0, 0, 5, 5, 5, 0, 0, 0]])
    >>> grid = tile_grid(truth.shape, core=5, margin=3)
    >>> stitcher = Stitcher(truth.shape, grid)
    >>> for tile in reversed(grid):  # any order
    ...     stitcher.add(tile, truth[tile.read])
    >>> stitched = stitcher.result()
    >>> np.asarray(stitched.labels), stitched.cut_objects
    (array([[0, 0, 0, 0, 1, 1, 1, 0, 0, 0]], dtype=uint8), 0)
    """

    def __init__(self, shape: tuple[int, ...], tiles: Sequence[Tile], *,
                 partition: bool = False, min_size: int = 1) -> None:
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}")
        if partition and min_size > 1:
            # Dropping small regions would leave holes in a partition.
            raise ValueError(f"min_size applies to objects, a partition keeps every region; "
                             f"got {min_size}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.partition = partition
        self.min_size = min_size
        self._tiles = list(tiles)
        self._owners = Ownership(self.shape, self._tiles)  # checks the grid
        self._at = {(t.row, t.col): t for t in self._tiles}
        # Provisional labels, on disk: a stitched image is never held whole.
        self._labels: ScratchLabels | None = ScratchLabels(self.shape, np.uint32)
        self._waiting: dict[int, np.ndarray] = {}
        self._next = 0
        # Per provisional label (0 unused): is it a piece (objects), its tile, and its
        # union-find parent (regions only merge).
        self._count = 0
        self._flag = np.zeros(1024, bool)
        self._tile = np.zeros(1024, np.int64)
        self._parent = np.zeros(1024, np.int64)
        # Regions: (provisional labels, neighbour tile) that crossed into its core.
        self._crossings: list[tuple[np.ndarray, int]] = []

    def add(self, tile: Tile, labels: np.ndarray) -> None:
        """Hand over the labels of ``tile``'s read region.

        Tiles may come in any order; each is stitched once those before it in the grid
        are, and held until then.

        Raises
        ------
        ValueError
            For a tile not of this grid, a tile given twice, or labels whose shape is not
            the tile's read region.
        """
        if tile.index >= len(self._tiles) or self._tiles[tile.index] != tile:
            raise ValueError(f"tile {tile.index} ({tile.core}) is not a tile of this grid")
        if tile.index < self._next or tile.index in self._waiting:
            raise ValueError(f"tile {tile.index} was added already")
        read_shape = tuple(s.stop - s.start for s in tile.read)
        if labels.shape != read_shape:
            raise ValueError(f"tile {tile.index}: labels of shape {labels.shape}, expected its "
                             f"read region's {read_shape}")
        if labels.dtype == np.bool_:
            labels = labels.view(np.uint8)
        self._waiting[tile.index] = labels
        while self._next in self._waiting:
            ready = self._tiles[self._next]
            if self.partition:
                self._add_regions(ready, self._waiting.pop(self._next))
            else:
                self._add_objects(ready, self._waiting.pop(self._next))
            self._next += 1

    def result(self) -> Stitched:
        """The stitched labels, renumbered in raster order; call once, after every tile.

        Raises
        ------
        ValueError
            If a tile is missing.
        """
        if self._labels is None:
            raise ValueError("result() was taken already")
        if self._next < len(self._tiles):
            raise ValueError(f"tile {self._next} of {len(self._tiles)} was never added")
        n = self._count + 1
        sizes = np.zeros(n, np.int64)
        first = np.full(n, _NO_PIXEL, np.int64)
        width = self.shape[1]
        for tile in self._tiles:
            block = self._labels[tile.core]
            ids, index, counts = np.unique(block, return_index=True, return_counts=True)
            rows, cols = np.divmod(index, block.shape[1])
            flat = (rows + tile.core[0].start) * width + cols + tile.core[1].start
            sizes[ids] += counts
            first[ids] = np.minimum(first[ids], flat)
        sizes[0] = 0
        root = self._roots()
        group_size = np.zeros(n, np.int64)
        np.add.at(group_size, root, sizes)
        group_first = np.full(n, _NO_PIXEL, np.int64)
        np.minimum.at(group_first, root, first)
        is_root = root == np.arange(n)
        is_root[0] = False
        kept = np.flatnonzero(is_root & (group_size >= self.min_size))
        kept = kept[np.argsort(group_first[kept], kind="stable")]
        number = np.zeros(n, np.int64)
        number[kept] = np.arange(1, kept.size + 1)
        if self.partition:
            group_cut = self._cut_regions(root)
        else:
            group_cut = np.zeros(n, bool)
            np.logical_or.at(group_cut, root, self._flag[:n])
        cut = int(np.count_nonzero(group_cut[kept]))
        out = self._labels.mapped(number[root].astype(label_dtype(kept.size)))
        self._labels = None
        return Stitched(labels=out, cut_objects=cut)

    # ---- objects ----

    def _add_objects(self, tile: Tile, labels: np.ndarray) -> None:
        from scipy.ndimage import find_objects

        boxes = [(k + 1, box) for k, box in enumerate(find_objects(labels)) if box is not None]
        if not boxes:
            return
        ids = np.array([k for k, _ in boxes], np.int64)
        y0, x0 = tile.origin
        top = np.array([b[0].start for _, b in boxes], np.int64) + y0
        bottom = np.array([b[0].stop for _, b in boxes], np.int64) + (y0 - 1)
        left = np.array([b[1].start for _, b in boxes], np.int64) + x0
        right = np.array([b[1].stop for _, b in boxes], np.int64) + (x0 - 1)
        whole, owned = self._owners.of(tile, top, left, bottom, right)
        rows, cols = tile.core
        reaches_core = ((top < rows.stop) & (bottom >= rows.start)
                        & (left < cols.stop) & (right >= cols.start))
        piece = ~whole & reaches_core
        region = self._labels[tile.read]
        lut = np.zeros(int(ids[-1]) + 1, np.uint32)
        lut[ids[whole & owned]] = self._new_labels(np.zeros(np.count_nonzero(whole & owned), bool),
                                                   tile.index)
        new = lut[labels]
        # A whole object takes free pixels and pieces' pixels; the first tile keeps its own.
        write = (new != 0) & ((region == 0) | self._flag[region])
        region[write] = new[write]
        if piece.any():
            lut[:] = 0
            lut[ids[piece]] = self._new_labels(np.ones(np.count_nonzero(piece), bool), tile.index)
            core = region[tile.inner]
            new = lut[labels[tile.inner]]
            write = (new != 0) & (core == 0)
            core[write] = new[write]
        self._labels[tile.read] = region

    # ---- regions ----

    def _add_regions(self, tile: Tile, labels: np.ndarray) -> None:
        core_labels = labels[tile.inner]
        core_sizes = np.bincount(core_labels.ravel(), minlength=int(labels.max()) + 1)
        present = np.flatnonzero(core_sizes[1:]) + 1
        lut = np.zeros(core_sizes.size, np.uint32)
        lut[present] = self._new_labels(np.zeros(present.size, bool), tile.index)
        for other in self._neighbours(tile):
            zone = tuple(slice(max(r.start, c.start), min(r.stop, c.stop))
                         for r, c in zip(tile.read, other.core, strict=True))
            local = tuple(slice(z.start - o, z.stop - o)
                          for z, o in zip(zone, tile.origin, strict=True))
            if other.index < tile.index:
                self._merge_agreeing(labels[local], self._labels[zone], lut)
            # What this tile saw of its regions across the line: a region with at least
            # as much there as in its own core is cut unless it merges with that tile.
            across = np.bincount(labels[local].ravel(), minlength=core_sizes.size)
            crossing = np.flatnonzero((across >= core_sizes) & (core_sizes > 0))
            crossing = crossing[crossing != 0]
            if crossing.size:
                self._crossings.append((lut[crossing].astype(np.int64), other.index))
        self._labels[tile.core] = lut[core_labels]

    def _neighbours(self, tile: Tile) -> Iterator[Tile]:
        """The other tiles whose cores meet ``tile``'s read region."""
        for r in self._owners.rows.cores_meeting(tile.read[0]):
            for c in self._owners.cols.cores_meeting(tile.read[1]):
                other = self._at.get((r, c))
                if other is not None and other is not tile:
                    yield other

    def _merge_agreeing(self, mine: np.ndarray, theirs: np.ndarray, lut: np.ndarray) -> None:
        """Merge this tile's regions (``mine``, its own labels; ``lut`` their provisional
        labels) with the earlier pieces (``theirs``) they cover more than half of, and that
        cover more than half of them, over the same pixels."""
        their_ids, their_index = np.unique(theirs, return_inverse=True)
        pairs, overlap = np.unique(mine.ravel().astype(np.int64) * their_ids.size
                                   + their_index.ravel(), return_counts=True)
        a, b = np.divmod(pairs, their_ids.size)
        mine_total = np.bincount(a, weights=overlap)[a]
        theirs_total = np.bincount(b, weights=overlap)[b]
        agree = (2 * overlap > mine_total) & (2 * overlap > theirs_total)
        agree &= (lut[a] != 0) & (their_ids[b] != 0)
        for x, y in zip(lut[a[agree]], their_ids[b[agree]], strict=True):
            self._union(int(x), int(y))

    def _union(self, x: int, y: int) -> None:
        x, y = self._find(x), self._find(y)
        if x != y:
            self._parent[max(x, y)] = min(x, y)

    def _find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    def _cut_regions(self, root: np.ndarray) -> np.ndarray:
        """Per root, whether one of its pieces crossed into a neighbour's core (see
        ``_add_regions``) and the region holds no piece of that neighbour."""
        n_tiles = len(self._tiles)
        ids = np.arange(1, root.size)
        holds = np.unique(root[ids] * n_tiles + self._tile[ids])
        cut = np.zeros(root.size, bool)
        for labels, other in self._crossings:
            missing = ~np.isin(root[labels] * n_tiles + other, holds)
            cut[root[labels[missing]]] = True
        return cut

    def _roots(self) -> np.ndarray:
        """Every provisional label's root (its own label for objects, never merged)."""
        root = self._parent[: self._count + 1].copy()
        while True:
            up = root[root]
            if np.array_equal(up, root):
                return root
            root = up

    # ---- provisional labels ----

    def _new_labels(self, flags: np.ndarray, tile: int) -> np.ndarray:
        """Provisional labels for ``len(flags)`` new objects or regions of ``tile``."""
        start, stop = self._count + 1, self._count + 1 + flags.size
        if stop > np.iinfo(np.uint32).max:
            raise ValueError(f"more than {np.iinfo(np.uint32).max} labels in one image")
        if stop > self._flag.size:
            grown = max(stop, 2 * self._flag.size)
            more = grown - self._flag.size
            self._flag = np.concatenate([self._flag, np.zeros(more, bool)])
            self._tile = np.concatenate([self._tile, np.zeros(more, np.int64)])
            self._parent = np.concatenate([self._parent, np.zeros(more, np.int64)])
        self._flag[start:stop] = flags
        self._tile[start:stop] = tile
        self._parent[start:stop] = np.arange(start, stop)
        self._count = stop - 1
        return np.arange(start, stop, dtype=np.uint32)


def stitch_tiles(source: TileSource, tiles: Sequence[Tile],
                 segment: Callable[[np.ndarray], np.ndarray], *, threads: int = 1,
                 partition: bool = False, min_size: int = 1) -> Stitched:
    """Segment every tile's read region with ``segment`` and stitch the labels.

    Parameters
    ----------
    source : TileSource
        Where the pixels come from (:mod:`segpipe.tiles`).
    tiles : sequence of Tile
        The grid, ``tiling.tiles_of(source.shape)``.
    segment : callable
        ``segment(pixels) -> labels`` for one read region; called from ``threads``
        threads at once.
    threads : int
        Tiles segmented at the same time; the result does not depend on it.
    partition, min_size
        As for :class:`Stitcher`.

    Returns
    -------
    Stitched

    Examples
    --------
    >>> from segpipe.tiles import ArraySource, Tiling
    >>> image = np.zeros((6, 40), np.uint8); image[2:4, 10:30] = 1  # wider than a tile
    >>> tiling = Tiling(size=12, overlap=4)
    >>> out = stitch_tiles(ArraySource(image), tiling.tiles_of(image.shape), lambda a: a)
    >>> np.asarray(out.labels)[3, 10:30:2], out.cut_objects  # three pieces, cut at the core lines
    (array([1, 1, 1, 2, 2, 2, 2, 3, 3, 3], dtype=uint8), 3)
    """
    stitcher = Stitcher(source.shape, tiles, partition=partition, min_size=min_size)
    segmented = map_tiles(lambda tile: segment(source.read(*tile.read)), tiles,
                          threads=threads)
    for tile, labels in zip(tiles, segmented, strict=True):
        stitcher.add(tile, labels)
    return stitcher.result()
