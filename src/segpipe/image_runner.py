"""Segmenting one shard of images with one method: the work of one Snakemake job."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from segpipe.finish import finish_image, prepare_shard_folder, record_failure, shard_output_paths
from segpipe.imageio import DEFAULT_MAX_PIXELS, MASK_SUFFIXES, read_image
from segpipe.measure import grey_of
from segpipe.methods import get_method
from segpipe.planes import DEFAULT_READING, for_plane, split_plane
from segpipe.progress import Progress
from segpipe.table import empty_row, params_json, rows_to_table

log = logging.getLogger(__name__)


def segment_images(
    image_ids, *, input_dir, method, settings, shard, masks_dir, edges_dir, ground_truth=None,
    progress_every_s=10.0, max_pixels=DEFAULT_MAX_PIXELS, objects_out=None, measure=True,
    mask_format="png", reading=None,
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
    max_pixels : int
        Larger images get an error row without being decoded (``max_image_pixels``).
    objects_out : list, optional
        Receives each image's objects (:func:`segpipe.measure.measure_objects`), for
        methods whose labels have objects; None measures none.
    measure : bool
        Measure shape and intensity of the objects (``measure_objects``).
    mask_format : {"png", "tiff"}
        The masks' file format (edge maps are always PNG).
    reading : segpipe.planes.Reading, optional
        Channel, slice, time point and intensity range of the images.

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
    mask_paths = shard_output_paths(masks_dir, method, shard, image_ids,
                                    MASK_SUFFIXES[mask_format])
    edge_paths = shard_output_paths(edges_dir, method, shard, image_ids)
    prepare_shard_folder(f"{masks_dir}/{method}/{shard}", mask_paths.values())
    if spec.edge_maps or Path(f"{edges_dir}/{method}/{shard}").exists():
        prepare_shard_folder(f"{edges_dir}/{method}/{shard}", edge_paths.values())
    _warm_up(spec, kwargs)
    rows = []
    for image_id in image_ids:
        row = empty_row(image_id=image_id, method=method, kind=spec.kind, shard=shard, params=params)
        rel, plane = split_plane(image_id, input_dir)
        path = Path(input_dir) / rel
        try:
            _segment_one(row, path, spec, kwargs, mask_paths[image_id], edge_paths[image_id],
                         ground_truth, max_pixels, objects_out, measure,
                         for_plane(reading or DEFAULT_READING, plane))
        except Exception as err:  # one bad image must not cost the other images of the shard
            record_failure(row, path, err)
        rows.append(row)
        progress.update(errors=row["status"] == "error")
    progress.close()
    return rows_to_table(rows)


def _warm_up(spec, kwargs):
    """Run the method once on a tiny blank image, before any image is timed.

    Imports (scikit-learn's for k-means: 0.4 s) and first-call set-up happen once per job;
    without this they were counted in the first image's ``segment_s``, and a method's
    seconds per image on a small run mostly measured them.
    """
    import numpy as np

    shape = (16, 16) if spec.colour == "grey" else (16, 16, 3)
    try:
        spec.segment(np.zeros(shape, np.uint8), **kwargs)
    except Exception:  # settings this image cannot satisfy: the real images will say
        log.debug("warm-up of %s failed", spec.kind, exc_info=True)


def _segment_one(row, path, spec, kwargs, mask_path, edge_path, ground_truth, max_pixels,
                 objects_out, measure, reading):
    t0 = time.perf_counter()
    notes, info = [], {}
    image = read_image(path, mode=spec.colour, max_pixels=max_pixels, notes=notes,
                       reading=reading, info=info)
    row.update(info, note="; ".join(notes) or None)
    t1 = time.perf_counter()
    seg = spec.segment(image, **kwargs)
    row.update(decode_s=t1 - t0, segment_s=time.perf_counter() - t1,
               thresholds=list(seg.thresholds), foreground=seg.foreground)
    grey = grey_of(image) if objects_out is not None and spec.has_objects else None
    finish_image(row, seg.labels, mask_path=mask_path, meaning=spec.labels,
                 ground_truth=ground_truth, edge_map=seg.edge_map, edge_path=edge_path,
                 objects_out=objects_out, grey=grey, measure=measure)


def run_shard(
    shard_file, output, *, input_dir, method, settings, masks_dir, edges_dir, ground_truth=None,
    threads=1, max_pixels=DEFAULT_MAX_PIXELS, objects_output=None, measure_objects=True,
    mask_format="png", reading=None,
):
    """Segment the images listed in ``shard_file``; write the metrics table ``output`` and
    the objects table ``objects_output``.

    Objects are measured when ``measure_objects`` is set or there is ground truth (COCO AP
    ranks the objects by their scores); otherwise the objects table is empty."""
    import cv2
    from threadpoolctl import threadpool_limits

    from segpipe.manifest import read_shard
    from segpipe.measure import objects_table
    from segpipe.table import write_table_atomic

    # One job per core: library thread pools (OpenCV, OpenMP in scikit-learn, BLAS) would
    # only fight over the cores the other jobs use.
    cv2.setNumThreads(threads)
    threadpool_limits(threads)
    shard = Path(shard_file).stem
    image_ids = read_shard(shard_file)
    log.info("%s shard %s: %d images, settings %s", method, shard, len(image_ids), settings)
    wanted = objects_output is not None and (measure_objects or ground_truth is not None)
    objects = [] if wanted else None
    table = segment_images(
        image_ids,
        input_dir=input_dir,
        method=method,
        settings=settings,
        shard=shard,
        masks_dir=masks_dir,
        edges_dir=edges_dir,
        ground_truth=ground_truth,
        max_pixels=max_pixels,
        objects_out=objects,
        measure=measure_objects,
        mask_format=mask_format,
        reading=reading,
    )
    write_table_atomic(table, output)
    if objects_output is not None:
        write_table_atomic(objects_table(objects or ()), objects_output)
