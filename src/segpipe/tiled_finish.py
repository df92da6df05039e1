"""Finishing an image segmented in tiles, one block at a time: mask, row, scores, objects.

A tiled method leaves its labels on disk (:class:`segpipe.scratch.ScratchLabels`). This
module does for them what :func:`segpipe.finish.finish_image` does for a label image in
memory, with the same results, without ever holding an image-sized array:

- the mask (and edge map) is written block by block (:func:`write_mask`);
- the row's statistics come from label counts summed over the blocks, and the objects of
  a foreground (its 8-connected components) from :func:`segpipe.components.label_components`;
- the ground-truth scores are accumulated block by block
  (:class:`segpipe.evaluation.TiledScores`), the truth read by region when its mask is a
  tiled TIFF;
- the objects are measured in regions (:func:`measure_tiled_objects`).

Every pass reads blocks of :data:`BLOCK` pixels a side (with a margin where a measurement
looks at neighbours), spread over the job's threads. Memory: a few blocks per thread and
a few numbers per label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from segpipe.components import label_components
from segpipe.scratch import ScratchLabels
from segpipe.tiles import Tile, TileSource, map_tiles, tile_grid

if TYPE_CHECKING:
    from segpipe.finish import Finishing
    from segpipe.ground_truth import GroundTruth
    from segpipe.methods import Segmentation

# The side of the blocks the finishing passes read: the chunks of a zarr mask, and four
# rows of a TIFF mask's tiles, so that both writers take them without reshaping.
BLOCK = 1024
# Objects whose bounding box is taller or wider are measured from sums over the blocks:
# area, centroid, box and intensities exactly, shape columns null (docs/tiles.md). Smaller
# ones are measured whole, in a region read around them: a block's region reaches at most
# this far beyond its core, so it stays under (BLOCK + MAX_OBJECT_SIDE + 10)^2 pixels.
MAX_OBJECT_SIDE = 1024


def finish_tiled_image(row: dict[str, Any], seg: Segmentation, mask_path: str, how: Finishing,
                       *, edge_path: str | None, grey: TileSource | None,
                       threads: int = 1, max_pixels: int | None = None) -> dict[str, Any] | None:
    """:func:`segpipe.finish.finish_image` for a tiled segmentation (labels on disk).

    Parameters
    ----------
    row, mask_path, how, edge_path
        As for :func:`segpipe.finish.finish_image`.
    seg : Segmentation
        Its ``labels`` (and ``edge_map``) are :class:`ScratchLabels`.
    grey : TileSource, optional
        The image, read by region (grey or RGB): what the objects are measured on.
    threads : int
        The job's threads, over which blocks are spread.
    max_pixels : int, optional
        ``max_image_pixels``: a ground-truth mask that cannot be read by region (no tiled
        TIFF) is read whole only for images up to this size.

    Returns
    -------
    dict or None
        The image's object columns, as :func:`segpipe.measure.measure_objects` gives
        them for the whole image.
    """
    from segpipe.finish import complete_row

    labels = seg.labels
    t0 = time.perf_counter()
    write_mask(mask_path, labels)
    if seg.edge_map is not None:
        write_mask(edge_path, seg.edge_map)
        row["edge_path"] = edge_path
    t1 = time.perf_counter()
    objects, n_objects = object_map(labels, how.meaning, threads=threads)
    row.update(tiled_label_stats(labels, how.meaning, n_objects, threads=threads))
    if how.ground_truth is not None:
        row.update(score_tiled(how.ground_truth, row["image_id"], labels, objects,
                               pred_meaning=how.meaning, threads=threads,
                               max_pixels=max_pixels))
    measured = None
    if how.measures_objects and objects is not None:
        measured = measure_tiled_objects(objects, grey, image_id=row["image_id"],
                                         method=row["method"], shape=how.shapes,
                                         threads=threads)
    complete_row(row, mask_path, labels.shape, write_s=t1 - t0,
                 metrics_s=time.perf_counter() - t1)
    return measured


def write_mask(path: str, labels: ScratchLabels) -> None:
    """Write a label image kept on disk to its mask file, the same file
    :func:`segpipe.imageio.write_labels` writes for the same array.

    OME-Zarr masks, and TIFF masks large enough to be tiled BigTIFFs, are written block by
    block. Smaller TIFF masks and PNG masks are read whole and written as one: a PNG
    cannot be written in parts (use ``mask_format: tiff`` or ``zarr`` for large images).
    """
    from segpipe.imageio import write_labels
    from segpipe.labelstore import TILED_TIFF_PIXELS, mask_format_of, open_label_writer

    kind = mask_format_of(path)
    if kind == "zarr" or (kind == "tiff" and labels.size > TILED_TIFF_PIXELS):
        with open_label_writer(path, labels.shape, labels.dtype) as writer:
            for tile, block in labels.blocks(tile_grid(labels.shape, core=BLOCK)):
                writer.write(*tile.core, block)
    else:
        write_labels(path, np.asarray(labels))


def object_map(labels: ScratchLabels, meaning: str, *,
               threads: int = 1) -> tuple[ScratchLabels | None, int | None]:
    """The objects of a label image on disk, as :func:`segpipe.evaluation.objects_of`
    gives them whole, and their count for a foreground (None otherwise)."""
    if meaning == "instances":
        return labels, None
    if meaning != "foreground":
        return None, None
    found = label_components(lambda tile: labels[tile.core] > 0,
                             tile_grid(labels.shape, core=BLOCK), shape=labels.shape,
                             connectivity=8, threads=threads)
    return found.labels, found.count


def tiled_label_stats(labels: ScratchLabels, meaning: str, n_objects: int | None, *,
                      threads: int = 1) -> dict[str, int | float | None]:
    """:func:`segpipe.label_stats.label_stats` of a label image on disk; ``n_objects``
    is a foreground's component count (:func:`object_map`)."""
    counts = np.zeros(1, np.int64)
    for found in map_tiles(lambda tile: np.bincount(labels[tile.core].ravel()),
                           tile_grid(labels.shape, core=BLOCK), threads=threads):
        if found.size > counts.size:
            counts = np.concatenate([counts, np.zeros(found.size - counts.size, np.int64)])
        counts[:found.size] += found
    n_labels = int(np.count_nonzero(counts[1:]))
    if meaning == "instances":
        n_objects = n_labels
    elif meaning != "foreground":
        n_objects = None
    return {"n_labels": n_labels, "n_objects": n_objects,
            "foreground_fraction": float(counts[1:].sum()) / labels.size}


def score_tiled(truth: GroundTruth, image_id: str, labels: ScratchLabels,
                objects: ScratchLabels | None, *, pred_meaning: str, threads: int = 1,
                max_pixels: int | None = None) -> dict[str, Any]:
    """:meth:`segpipe.ground_truth.GroundTruth.score` of a label image on disk, block by
    block; the same scores (:class:`segpipe.evaluation.TiledScores`). A truth mask that
    is not a tiled TIFF is read whole only up to ``max_pixels``; one that fails while read
    region by region (a corrupt chunk) leaves a note, as an unreadable one does whole."""
    from segpipe.evaluation import TRUTH_MEANING, TiledScores

    source, where, note = truth.open(image_id, labels.shape, max_pixels=max_pixels)
    if source is None:
        return {"gt_path": where, "gt_note": note}

    def read_truth(rows: slice, cols: slice) -> np.ndarray:
        try:
            return np.asarray(source.read(rows, cols))
        except Exception as err:  # any decoding failure: the truth is unusable
            raise _TruthUnreadable(f"{where}: {type(err).__name__}: {err}") from err

    scores = TiledScores(truth_kind=truth.kind, pred_meaning=pred_meaning,
                         tolerance=truth.tolerance)
    try:
        return {"gt_path": where, **_tiled_scores(scores, labels, objects, read_truth,
                                                  TRUTH_MEANING[truth.kind], threads)}
    except _TruthUnreadable as err:
        return {"gt_path": None, "gt_note": f"ground truth unusable: {err}"}


class _TruthUnreadable(Exception):
    """A region of a ground-truth mask could not be read."""


def _tiled_scores(scores: Any, labels: ScratchLabels, objects: ScratchLabels | None,
                  read_truth: Callable[[slice, slice], np.ndarray], truth_meaning: str,
                  threads: int) -> dict[str, Any]:
    truth_objects = None
    if scores.needs_objects and truth_meaning == "foreground":
        truth_objects = label_components(lambda tile: read_truth(*tile.core) > 0,
                                         tile_grid(labels.shape, core=BLOCK),
                                         shape=labels.shape, connectivity=8,
                                         threads=threads).labels

    def count(tile: Tile) -> tuple:
        pred, true = labels[tile.read], read_truth(*tile.read)
        pred_objects = true_objects = None
        if scores.needs_objects:
            pred_objects = pred[tile.inner] if objects is labels else objects[tile.core]
            true_objects = (true[tile.inner] if truth_objects is None
                            else truth_objects[tile.core])
        return scores.count(pred, true, tile.inner, pred_objects=pred_objects,
                            truth_objects=true_objects)

    grid = tile_grid(labels.shape, core=BLOCK, margin=scores.halo)
    for counted in map_tiles(count, grid, threads=threads):
        scores.merge(counted)
    return scores.result()


def measure_tiled_objects(objects: ScratchLabels, grey: TileSource | None, *, image_id: str,
                          method: str, shape: bool = True,
                          threads: int = 1) -> dict[str, Any] | None:
    """:func:`segpipe.measure.measure_objects` of an object map on disk.

    Each object is measured whole, with every column as the whole image gives it, in a
    region read around it: the block whose core holds its box's top-left corner reads
    its core grown down and right to the boxes of the objects it holds that way, and by
    :data:`segpipe.measure.SCORE_MARGIN` on every side (what the contrast score looks
    at). Where that margin holds no background, the score compares with the mean
    background of the whole image, summed over the blocks (exact up to float rounding).
    Objects taller or wider than :data:`MAX_OBJECT_SIDE` are measured from sums over the
    blocks instead (:func:`_large_objects`).
    """
    from segpipe.measure import SCORE_MARGIN, grey_of, measure_objects

    height, width = objects.shape
    grid = tile_grid(objects.shape, core=BLOCK)
    (top, left, bottom, right), background = _boxes(objects, grey, grid, threads=threads)
    ids = np.flatnonzero(bottom > 0)  # bottom, right: exclusive; 0 for absent labels
    if ids.size == 0:
        return None
    large = ((bottom[ids] - top[ids] > MAX_OBJECT_SIDE)
             | (right[ids] - left[ids] > MAX_OBJECT_SIDE))
    small_ids, large_ids = ids[~large], ids[large]
    home_row = np.searchsorted([t.core[0].stop for t in grid if t.col == 0],
                               top[small_ids], side="right")
    home_col = np.searchsorted([t.core[1].stop for t in grid if t.row == 0],
                               left[small_ids], side="right")
    columns_per_row = 1 + max(t.col for t in grid)
    home = home_row * columns_per_row + home_col
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(len(grid) + 1))

    def measure(tile: Tile) -> dict[str, Any] | None:
        mine = small_ids[order[bounds[tile.index]:bounds[tile.index + 1]]]
        if mine.size == 0:
            return None
        (r0, r1), (c0, c1) = ((s.start, s.stop) for s in tile.core)
        rows = slice(max(0, r0 - SCORE_MARGIN), min(height, max(r1, int(bottom[mine].max()))
                                                    + SCORE_MARGIN))
        cols = slice(max(0, c0 - SCORE_MARGIN), min(width, max(c1, int(right[mine].max()))
                                                    + SCORE_MARGIN))
        pixels = None if grey is None else grey_of(grey.read(rows, cols))
        return measure_objects(objects[rows, cols], pixels, image_id=image_id, method=method,
                               shape=shape, only=mine, origin=(rows.start, cols.start),
                               image_background=background)

    parts = [part for part in map_tiles(measure, grid, threads=threads) if part is not None]
    if large_ids.size:
        parts.append(_large_objects(objects, grey, grid, large_ids, top, left, bottom, right,
                                    background, image_id=image_id, method=method,
                                    shape=shape))
    return _merged_columns(parts)


def _boxes(objects: ScratchLabels, grey: TileSource | None, grid: list[Tile], *,
           threads: int) -> tuple[tuple[np.ndarray, ...], float | None]:
    """Every label's bounding box (top, left, bottom and right exclusive), indexed by
    label (bottom is 0 where a label is absent), and the image's mean background
    intensity on the 0..1 scale (None without ``grey`` or background)."""
    from scipy.ndimage import find_objects

    from segpipe.imageio import intensity_max
    from segpipe.measure import grey_of

    def scan(tile: Tile) -> tuple[np.ndarray, int, int, float]:
        block = objects[tile.core]
        found = find_objects(block)
        rows = [(k + 1, box[0].start, box[1].start, box[0].stop, box[1].stop)
                for k, box in enumerate(found) if box is not None]
        boxes = np.array(rows, np.int64).reshape(-1, 5)
        boxes[:, 1:] += [tile.core[0].start, tile.core[1].start] * 2
        if grey is None:
            return boxes, 0, 0, 1.0
        pixels = grey_of(grey.read(*tile.core))
        outside = block == 0
        return (boxes, int(pixels[outside].sum(dtype=np.int64)), int(np.count_nonzero(outside)),
                float(intensity_max(pixels.dtype)))

    found = list(map_tiles(scan, grid, threads=threads))
    everything = np.concatenate([f[0] for f in found])
    n = int(everything[:, 0].max()) + 1 if len(everything) else 1
    top = np.full(n, np.iinfo(np.int64).max)
    left = np.full(n, np.iinfo(np.int64).max)
    bottom = np.zeros(n, np.int64)
    right = np.zeros(n, np.int64)
    label = everything[:, 0]
    np.minimum.at(top, label, everything[:, 1])
    np.minimum.at(left, label, everything[:, 2])
    np.maximum.at(bottom, label, everything[:, 3])
    np.maximum.at(right, label, everything[:, 4])
    total, count = sum(f[1] for f in found), sum(f[2] for f in found)
    background = total / found[0][3] / count if grey is not None and count else None
    return (top, left, bottom, right), background


def _large_objects(objects: ScratchLabels, grey: TileSource | None, grid: list[Tile],
                   ids: np.ndarray, top: np.ndarray, left: np.ndarray, bottom: np.ndarray,
                   right: np.ndarray, background: float | None, *, image_id: str, method: str,
                   shape: bool) -> dict[str, Any]:
    """Objects too large to read whole, from sums over the blocks: area, centroid and box
    exact, mean and max intensity exact up to the order of a float sum; eccentricity,
    solidity and perimeter null; the score is the contrast of the object's mean to the
    mean of the image's background (not of its box's surroundings)."""
    from segpipe.imageio import intensity_max
    from segpipe.measure import grey_of

    n = ids.size
    sums = np.zeros((4, n))  # pixels, row sum, column sum, intensity sum
    maxima = np.zeros(n)
    top_value = 1.0
    for tile, block in objects.blocks(grid):
        mask = np.isin(block, ids)
        if not mask.any():
            continue
        pixels = None if grey is None else grey_of(grey.read(*tile.core))
        if pixels is not None:
            top_value = float(intensity_max(pixels.dtype))
        rows, cols = np.nonzero(mask)
        which = np.searchsorted(ids, block[rows, cols])
        sums[0] += np.bincount(which, minlength=n)
        sums[1] += np.bincount(which, weights=rows + tile.core[0].start, minlength=n)
        sums[2] += np.bincount(which, weights=cols + tile.core[1].start, minlength=n)
        if pixels is not None:
            values = pixels[rows, cols].astype(np.float64)
            sums[3] += np.bincount(which, weights=values, minlength=n)
            np.maximum.at(maxima, which, values)
    area = sums[0].astype(np.int64)
    inside = sums[3] / area / top_value
    columns: dict[str, Any] = {
        "image_id": [image_id] * n, "method": [method] * n,
        "label": ids.astype(np.int32), "area": area,
        "bbox": np.stack([top[ids], left[ids], bottom[ids], right[ids]], axis=1).astype(np.int32),
        "score": (np.abs(inside - background) if grey is not None and background is not None
                  else np.zeros(n)),
        "class_name": [None] * n,
    }
    if shape:
        columns.update(centroid_y=sums[1] / area, centroid_x=sums[2] / area,
                       eccentricity=[None] * n, solidity=[None] * n, perimeter=[None] * n)
        if grey is not None:
            columns.update(mean_intensity=sums[3] / area, max_intensity=maxima)
    return columns


def _merged_columns(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The columns of several :func:`segpipe.measure.measure_objects` results as one,
    ordered by label as the whole image's are."""
    if not parts:
        return None
    label = np.concatenate([part["label"] for part in parts])
    order = np.argsort(label, kind="stable")
    merged: dict[str, Any] = {}
    for name in parts[0]:
        values = [part.get(name) for part in parts]
        if any(v is None for v in values):
            continue
        if name == "bbox" or all(isinstance(v, np.ndarray) for v in values):
            merged[name] = np.concatenate(values)[order]
        else:
            flat = [x for v in values for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
            merged[name] = [flat[i] for i in order]
    return merged


def close_all(*arrays: object) -> None:
    """Free the scratch files of a finished image now rather than when collected."""
    for array in arrays:
        if isinstance(array, ScratchLabels):
            array.close()
