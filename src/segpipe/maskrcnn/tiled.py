"""Mask R-CNN's instances on the tiles of a large image, stitched into the image's.

Each tile's read region goes to the network at its own scale (``native``, see
:mod:`segpipe.maskrcnn.inference`), so the model sees a large image's objects at their
size instead of shrunk to 800-1333 pixels. A tile's detections are in its own pixels;
:class:`DetectionStitcher` keeps each instance once, by the ownership rule of
:mod:`segpipe.stitch` (:class:`segpipe.stitch.Ownership`) applied to the box of its mask:

- an instance a tile sees whole (its mask touches no side of the read region that cuts
  through the image) is kept, with its whole mask, by its owner tile only;
- an instance no tile sees whole is *cut*: each tile keeps its piece inside its own core
  (mask clipped to the core, box clipped to the core), and each piece kept counts in
  ``cut_objects``. A whole instance wins over a piece: piece pixels that an instance kept
  whole covers are dropped, and a piece left with none is dropped, as the label-image
  stitcher does.

The image's detections are then made as for a whole image: by falling score (ties: the
tile first in the grid, then the tile's own order), labels 1..N, a pixel that several
masks cover going to the highest score, boxes in image coordinates. Nothing depends on the
order the tiles arrive in.

Memory: each kept instance's mask as a crop of its box; the image's label image is made
whole at the end (1 to 4 bytes a pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.imageio import label_dtype
from segpipe.maskrcnn.inference import Detections
from segpipe.rle import crop_boundaries
from segpipe.stitch import Ownership
from segpipe.tiles import Tile


@dataclass(frozen=True)
class StitchedDetections:
    """An image's detections made from its tiles.

    Attributes
    ----------
    detections : Detections
        In image coordinates, by falling score, as a whole image's.
    tiles : int
        The tiles the image was cut into.
    cut_objects : int
        The pieces kept of instances no tile saw whole (an instance cut in three counts
        three).
    """

    detections: Detections
    tiles: int
    cut_objects: int


@dataclass
class _Kept:
    """One instance a tile keeps: its mask as a crop at ``(top, left)`` in the image."""

    score: float
    class_id: int
    box: np.ndarray
    top: int
    left: int
    crop: np.ndarray
    tile: int
    rank: int
    cut: bool


def mask_crop(runs: np.ndarray, height: int) -> tuple[int, int, np.ndarray]:
    """An instance's mask from its run boundaries, as the crop of its pixels' box.

    Parameters
    ----------
    runs : (2k,) ndarray of int64
        Ascending column-major run boundaries (:attr:`Detections.runs`).
    height : int
        The height of the image the runs are in.

    Returns
    -------
    top, left : int
        Where the crop's first pixel is (0, 0 for an empty mask).
    crop : (h, w) ndarray of bool
        (0, 0) for an empty mask.

    >>> top, left, crop = mask_crop(np.array([4, 6, 7, 8]), 3)  # column 1: rows 1-2; column 2: row 1
    >>> top, left, crop.astype(int).tolist()
    (1, 1, [[1, 1], [1, 0]])
    """
    runs = np.asarray(runs, np.int64)
    if runs.size == 0:
        return 0, 0, np.zeros((0, 0), bool)
    starts, stops = runs[0::2], runs[1::2]
    left = int(starts[0] // height)
    right = int((stops[-1] - 1) // height) + 1
    base = left * height
    # A run may go on from the bottom of one column to the top of the next: marking
    # starts and stops over the columns spanned, in column-major order, covers both.
    edges = np.zeros((right - left) * height + 1, np.int64)
    np.add.at(edges, starts - base, 1)
    np.add.at(edges, stops - base, -1)
    mask = (np.cumsum(edges[:-1]) > 0).reshape(right - left, height).T
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0]), left, mask[rows[0]: rows[-1] + 1]


def _tight(top: int, left: int, crop: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The crop cut to its pixels' box (0 x 0 when it has none)."""
    rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
    if rows.size == 0:
        return top, left, np.zeros((0, 0), bool)
    return (top + int(rows[0]), left + int(cols[0]),
            crop[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1])


class DetectionStitcher:
    """Stitches the detections of a grid's tiles into one image's detections.

    Parameters
    ----------
    shape : tuple of int
        The image's shape, ``(M, N)`` or ``(M, N, C)``.
    tiles : sequence of Tile
        The grid (``Tiling.tiles_of(shape)``), in its order.

    Raises
    ------
    ValueError
        For an empty grid or a grid out of order.

    Examples
    --------
    A 3-pixel instance across the line between two tiles is kept once, whole:

    >>> from segpipe.tiles import tile_grid
    >>> grid = tile_grid((1, 10), core=5, margin=3)
    >>> stitcher = DetectionStitcher((1, 10), grid)
    >>> def found(tile, first, last):  # one instance over image columns first..last
    ...     x0 = tile.origin[1]
    ...     labels = np.zeros((1, tile.read[1].stop - x0), np.uint8)
    ...     labels[0, first - x0: last - x0 + 1] = 1
    ...     return Detections(labels=labels, boxes=np.array([[first - x0, 0, last - x0 + 1, 1]], np.float32),
    ...                       class_ids=np.array([1]), scores=np.array([0.9], np.float32),
    ...                       areas=np.array([last - first + 1]),
    ...                       runs=[np.array([first - x0, last - x0 + 1])])
    >>> for tile in reversed(grid):  # any order
    ...     stitcher.add(tile, found(tile, 4, 6))
    >>> out = stitcher.result()
    >>> out.detections.labels, out.detections.boxes, out.cut_objects
    (array([[0, 0, 0, 0, 1, 1, 1, 0, 0, 0]], dtype=uint8), array([[4., 0., 7., 1.]], dtype=float32), 0)
    """

    def __init__(self, shape: tuple[int, ...], tiles: Sequence[Tile]) -> None:
        self.tiles = list(tiles)
        self.shape = (int(shape[0]), int(shape[1]))
        self._rule = Ownership(self.shape, self.tiles)  # checks the grid
        self._kept: dict[int, list[_Kept]] = {}

    @property
    def complete(self) -> bool:
        """Whether every tile of the grid has been added."""
        return len(self._kept) == len(self.tiles)

    def add(self, tile: Tile, detections: Detections) -> None:
        """Hand over the detections of ``tile``'s read region, in its own pixels.

        Tiles may come in any order.

        Raises
        ------
        ValueError
            For a tile not of this grid, a tile given twice, or detections whose label
            image is not the shape of the tile's read region.
        """
        if tile.index >= len(self.tiles) or self.tiles[tile.index] != tile:
            raise ValueError(f"tile {tile.index} ({tile.core}) is not a tile of this grid")
        if tile.index in self._kept:
            raise ValueError(f"tile {tile.index} was added already")
        height, width = (s.stop - s.start for s in tile.read)
        if detections.labels.shape != (height, width):
            raise ValueError(f"tile {tile.index}: detections of shape {detections.labels.shape}, "
                             f"expected its read region's {(height, width)}")
        y0, x0 = tile.origin
        crops = [mask_crop(r, height) for r in detections.runs]
        n = len(crops)
        box = np.zeros((n, 4), np.int64)  # top, left, bottom, right (inclusive), in the tile
        for i, (top, left, crop) in enumerate(crops):
            if crop.size:
                box[i] = top, left, top + crop.shape[0] - 1, left + crop.shape[1] - 1
            else:
                # An empty mask (none of its probabilities above the threshold) is kept
                # as a whole image keeps it, placed by its predicted box.
                bx0, by0, bx1, by1 = detections.boxes[i]
                first = np.clip(np.floor([by0, bx0]), 0, [height - 1, width - 1])
                last = np.clip(np.ceil([by1, bx1]) - 1, first, [height - 1, width - 1])
                box[i] = *first.astype(np.int64), *last.astype(np.int64)
        top, left = box[:, 0] + y0, box[:, 1] + x0
        bottom, right = box[:, 2] + y0, box[:, 3] + x0
        whole, owned = self._rule.of(tile, top, left, bottom, right)
        rows, cols = tile.core
        reaches_core = ((top < rows.stop) & (bottom >= rows.start)
                        & (left < cols.stop) & (right >= cols.start))
        shift = np.array([x0, y0, x0, y0], np.float32)
        # A piece's box (x0, y0, x1, y1) is clipped to the core's edges.
        low = np.array([cols.start, rows.start] * 2, np.float32)
        high = np.array([cols.stop, rows.stop] * 2, np.float32)
        kept = []
        for i, (crop_top, crop_left, crop) in enumerate(crops):
            common = {"score": float(detections.scores[i]),
                      "class_id": int(detections.class_ids[i]), "tile": tile.index, "rank": i}
            if whole[i] and owned[i]:
                kept.append(_Kept(box=detections.boxes[i] + shift, top=int(top[i]),
                                  left=int(left[i]), crop=crop, cut=False, **common))
            elif not whole[i] and reaches_core[i] and crop.size:
                # Its piece inside this tile's core; its box clipped to the core.
                ty, tx = crop_top + y0, crop_left + x0
                inside = crop[max(0, rows.start - ty): rows.stop - ty,
                              max(0, cols.start - tx): cols.stop - tx]
                piece_top, piece_left, piece = _tight(max(ty, rows.start), max(tx, cols.start),
                                                      inside)
                if piece.size:
                    clipped = np.clip(detections.boxes[i] + shift, low, high)
                    kept.append(_Kept(box=clipped, top=piece_top, left=piece_left,
                                      crop=piece, cut=True, **common))
        self._kept[tile.index] = kept

    def result(self) -> StitchedDetections:
        """The image's detections; call after every tile.

        Raises
        ------
        ValueError
            If a tile is missing.
        """
        missing = [t.index for t in self.tiles if t.index not in self._kept]
        if missing:
            raise ValueError(f"tile {missing[0]} of {len(self.tiles)} was never added")
        kept = self._without_covered_pieces()
        order = sorted(range(len(kept)),
                       key=lambda k: (-kept[k].score, kept[k].tile, kept[k].rank))
        kept = [kept[k] for k in order]
        labels = np.zeros(self.shape, label_dtype(len(kept)))
        for label, inst in enumerate(kept, start=1):
            region = labels[inst.top: inst.top + inst.crop.shape[0],
                            inst.left: inst.left + inst.crop.shape[1]]
            # Labels go by falling score: a pixel already taken keeps the higher score.
            region[inst.crop & (region == 0)] = label
        detections = Detections(
            labels=labels,
            boxes=np.array([k.box for k in kept], np.float32).reshape(-1, 4),
            class_ids=np.array([k.class_id for k in kept], np.int64),
            scores=np.array([k.score for k in kept], np.float32),
            areas=np.array([np.count_nonzero(k.crop) for k in kept], np.int64),
            runs=[crop_boundaries(k.crop, top=k.top, left=k.left, height=self.shape[0])
                  for k in kept],
        )
        return StitchedDetections(detections, tiles=len(self.tiles),
                                  cut_objects=sum(k.cut for k in kept))

    def _without_covered_pieces(self) -> list[_Kept]:
        """Every kept instance, the pieces less the pixels a whole instance covers (a
        piece left with none is dropped)."""
        kept = [k for tile in self.tiles for k in self._kept[tile.index]]
        whole = [k for k in kept if not k.cut and k.crop.size]
        spans = np.array([(k.top, k.left, k.top + k.crop.shape[0], k.left + k.crop.shape[1])
                          for k in whole], np.int64).reshape(-1, 4)
        out = []
        for tile in self.tiles:
            pieces = [k for k in self._kept[tile.index] if k.cut]
            out.extend(k for k in self._kept[tile.index] if not k.cut)
            if not pieces:
                continue
            rows, cols = tile.core
            cover = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
            meets = ((spans[:, 0] < rows.stop) & (spans[:, 2] > rows.start)
                     & (spans[:, 1] < cols.stop) & (spans[:, 3] > cols.start))
            for k in np.flatnonzero(meets):
                inst = whole[k]
                _paint(cover, inst.crop, inst.top - rows.start, inst.left - cols.start)
            for piece in pieces:
                y, x = piece.top - rows.start, piece.left - cols.start
                h, w = piece.crop.shape
                crop = piece.crop & ~cover[y: y + h, x: x + w]
                piece.top, piece.left, piece.crop = _tight(piece.top, piece.left, crop)
                if piece.crop.size:
                    out.append(piece)
        return out


def _paint(target: np.ndarray, crop: np.ndarray, top: int, left: int) -> None:
    """``target |= crop`` placed at ``(top, left)`` of ``target``, clipped to it."""
    y0, x0 = max(top, 0), max(left, 0)
    y1 = min(top + crop.shape[0], target.shape[0])
    x1 = min(left + crop.shape[1], target.shape[1])
    if y1 > y0 and x1 > x0:
        target[y0:y1, x0:x1] |= crop[y0 - top: y1 - top, x0 - left: x1 - left]
