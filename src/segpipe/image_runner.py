"""The per-image runner: one image at a time, in the job's one core.

For kinds whose ``MethodSpec.runner`` is ``"image"``: ``segment(image, **settings)``
gives each image's :class:`segpipe.methods.Segmentation`. The frame around it (reading
the shard, rows, tables, the error policy) is :mod:`segpipe.job`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from segpipe.finish import finish_image
from segpipe.measure import grey_of
from segpipe.sources import open_image
from segpipe.tiled_finish import close_all, finish_tiled_image

if TYPE_CHECKING:
    from segpipe.job import ShardJob, ShardPlan, ShardResults
    from segpipe.methods import MethodSpec

log = logging.getLogger(__name__)


def run_images(job: ShardJob, plan: ShardPlan, results: ShardResults) -> dict:
    """Segment the shard's images one by one; each outcome goes to ``results``.

    An image that cannot be read or segmented gets ``status = 'error'`` and a message that
    names the file and the cause; the loop goes on with the next image.

    Parameters
    ----------
    job : segpipe.job.ShardJob
    plan : segpipe.job.ShardPlan
    results : segpipe.job.ShardResults

    Returns
    -------
    dict
        ``images`` and ``wall_s``.

    Raises
    ------
    OutputError
        If a mask or edge map cannot be written: the job fails, no image gets a row for it.
    """
    import cv2
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    # One job per core: library thread pools (OpenCV, OpenMP in scikit-learn, BLAS) would
    # only fight over the cores the other jobs use.
    cv2.setNumThreads(job.threads)
    threadpool_limits(job.threads)
    spec, options, how = job.spec, job.options, job.finishing
    warm_up(spec, options)
    for image_id in plan.image_ids:
        row = results.rows[image_id]
        path, reading = plan.source(job, image_id)
        try:
            t0 = time.perf_counter()
            notes, info = [], {}
            opened = open_image(path, mode=spec.colour, reading=reading,
                                tiles=job.tiles if spec.tiled is not None else None,
                                bytes_per_pixel=spec.bytes_per_pixel, memory_mb=job.memory_mb,
                                max_pixels=job.max_pixels, max_tiled_pixels=job.max_tiled_pixels,
                                notes=notes, info=info)
            row.update(info, note="; ".join(notes) or None)
            t1 = time.perf_counter()
            if opened.tiling is None:
                seg = spec.segment(opened.image, **options)
            else:
                seg = spec.tiled(opened.source, tiling=opened.tiling, threads=job.threads,
                                 **options)
            row.update(decode_s=t1 - t0, segment_s=time.perf_counter() - t1,
                       thresholds=list(seg.thresholds), foreground=seg.foreground,
                       tiles=seg.tiles, tile_cut_objects=seg.cut_objects)
            if opened.tiling is None:
                grey = grey_of(opened.image) if how.measures_objects else None
                objects = finish_image(row, seg.labels, plan.mask_paths[image_id], how,
                                       edge_map=seg.edge_map,
                                       edge_path=plan.edge_paths[image_id], grey=grey)
            else:
                try:
                    objects = finish_tiled_image(row, seg, plan.mask_paths[image_id], how,
                                                 edge_path=plan.edge_paths[image_id],
                                                 grey=opened.source, threads=job.threads,
                                                 max_pixels=job.max_pixels)
                finally:
                    close_all(seg.labels, seg.edge_map)
        except Exception as err:  # noqa: BLE001 - one bad image must not cost the other images of the shard
            results.fail(image_id, err)
            continue
        results.done(row, objects)
    return {"images": len(plan.image_ids), "wall_s": time.perf_counter() - start}


def warm_up(spec: MethodSpec, options: Mapping[str, Any]) -> None:
    """Run the method once on a tiny blank image, before any image is timed.

    Imports (scikit-learn's for k-means: 0.4 s) and first-call set-up happen once per job;
    without this they were counted in the first image's ``segment_s``, and a method's
    seconds per image on a small run mostly measured them.
    """
    shape = (16, 16) if spec.colour == "grey" else (16, 16, 3)
    try:
        spec.segment(np.zeros(shape, np.uint8), **options)
    except Exception:  # settings this image cannot satisfy: the real images will say
        log.debug("warm-up of %s failed", spec.kind, exc_info=True)
