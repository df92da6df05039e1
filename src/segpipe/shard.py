"""Segmenting one shard of images with one method: the work of one Snakemake job."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from segpipe.errors import ImageReadError
from segpipe.imageio import read_image, write_png
from segpipe.label_stats import label_stats
from segpipe.methods import get_method
from segpipe.progress import Progress
from segpipe.table import empty_row, params_json, rows_to_table

log = logging.getLogger(__name__)


def mask_path_for(masks_dir, method, image_id):
    """Where an image's mask goes: its id (folders and extension kept) plus ``.png``.

    Keeping the whole relative path means two files with one name in different folders,
    or ``a.png`` beside ``a.jpg``, never share a mask.

    >>> mask_path_for("results/masks", "otsu", "plate1/a.jpg")
    'results/masks/otsu/plate1/a.jpg.png'
    """
    return f"{masks_dir}/{method}/{image_id}.png"


def segment_images(
    image_ids, *, input_dir, method, settings, shard, masks_dir, edges_dir, ground_truth=None,
    progress_every_s=10.0,
):
    """Segment each image with one method; return one metrics row per image.

    An image that cannot be read or segmented gets ``status = 'error'`` and a message that
    names the file and the cause; the loop goes on with the next image.

    Parameters
    ----------
    image_ids : sequence of str
        Paths relative to ``input_dir``.
    input_dir : str
    method : str
        The method's name in the config (the ``method`` column and the mask folder).
    settings : dict
        The method's resolved settings, ``kind`` included.
    shard : str
    masks_dir, edges_dir : str
        Roots of the mask and edge-map trees.
    ground_truth : segpipe.ground_truth.GroundTruth, optional
        Scores each mask against it, in the same row.

    Returns
    -------
    pyarrow.Table
        Rows in :data:`segpipe.table.METRICS_SCHEMA`, in ``image_ids`` order.
    """
    spec = get_method(settings["kind"])
    kwargs = {k: v for k, v in settings.items() if k != "kind"}
    params = params_json(settings)
    progress = Progress(
        len(image_ids), log, label=f"{method} shard {shard}", every_s=progress_every_s
    )
    rows = []
    for image_id in image_ids:
        row = empty_row(image_id=image_id, method=method, kind=spec.kind, shard=shard, params=params)
        path = Path(input_dir) / image_id
        try:
            _segment_one(row, path, spec, kwargs, masks_dir, edges_dir, ground_truth)
        except ImageReadError as err:
            row.update(status="error", error=str(err))
        except Exception as err:  # one bad image must not cost the other images of the shard
            log.exception("segmenting %s failed", path)
            row.update(status="error", error=f"{path}: segmentation failed ({type(err).__name__}: {err})")
        if row["status"] == "error":
            log.warning(row["error"])
        rows.append(row)
        progress.update(errors=row["status"] == "error")
    progress.close()
    return rows_to_table(rows)


def _segment_one(row, path, spec, kwargs, masks_dir, edges_dir, ground_truth):
    t0 = time.perf_counter()
    image = read_image(path, mode=spec.colour)
    t1 = time.perf_counter()
    seg = spec.segment(image, **kwargs)
    t2 = time.perf_counter()
    mask_path = mask_path_for(masks_dir, row["method"], row["image_id"])
    write_png(mask_path, seg.labels)
    if seg.edge_map is not None:
        row["edge_path"] = mask_path_for(edges_dir, row["method"], row["image_id"])
        write_png(row["edge_path"], seg.edge_map)
    t3 = time.perf_counter()
    stats = label_stats(seg.labels)
    if ground_truth is not None:
        stats.update(ground_truth.score(row["image_id"], seg.labels, pred_instances=False))
    t4 = time.perf_counter()
    row.update(
        stats,
        status="ok",
        mask_path=mask_path,
        height=image.shape[0],
        width=image.shape[1],
        thresholds=list(seg.thresholds),
        decode_s=t1 - t0,
        segment_s=t2 - t1,
        write_s=t3 - t2,
        metrics_s=t4 - t3,
        runtime_s=t4 - t0,
    )


def run_shard(
    shard_file, output, *, input_dir, method, settings, masks_dir, edges_dir, ground_truth=None,
    threads=1,
):
    """Segment the images listed in ``shard_file`` and write the metrics table ``output``."""
    import cv2

    from segpipe.manifest import read_shard
    from segpipe.table import write_table_atomic

    from threadpoolctl import threadpool_limits

    # One job per core: library thread pools (OpenCV, OpenMP in scikit-learn, BLAS) would
    # only fight over the cores the other jobs use.
    cv2.setNumThreads(threads)
    threadpool_limits(threads)
    shard = Path(shard_file).stem
    image_ids = read_shard(shard_file)
    log.info("%s shard %s: %d images, settings %s", method, shard, len(image_ids), settings)
    table = segment_images(
        image_ids,
        input_dir=input_dir,
        method=method,
        settings=settings,
        shard=shard,
        masks_dir=masks_dir,
        edges_dir=edges_dir,
        ground_truth=ground_truth,
    )
    write_table_atomic(table, output)
