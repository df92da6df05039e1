"""Scores of a whole method against the ground truth: COCO mask AP over all its images."""

from __future__ import annotations

import json
import logging

import numpy as np

from segpipe.imageio import read_label_image, write_bytes_atomic
from segpipe.table import METHOD_METRICS

log = logging.getLogger(__name__)


def method_coco_ap(metrics, instances, ground_truth):
    """Class-agnostic COCO mask AP of one method.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The method's rows (``image_id``, ``status``, ``mask_path``, ``kind``).
    instances : pandas.DataFrame or None
        The method's Mask R-CNN instances (full masks as RLE, with scores); None for a
        classical method, whose objects are the connected components of its mask's
        foreground, each with score 1.
    ground_truth : segpipe.ground_truth.GroundTruth
        Read as instances.

    Returns
    -------
    dict
        ``coco_ap``, ``coco_ap50``, ``coco_ap75``; None each when the ground truth has no
        instances or no image has a usable mask.
    """
    from segpipe.evaluation import coco_mask_ap, objects_of
    from segpipe.rle import decode

    empty = dict.fromkeys(METHOD_METRICS)
    if ground_truth is None or ground_truth.kind != "instances":
        return empty
    truth_by_image, pred_by_image = {}, {}
    for row in metrics[metrics["status"] == "ok"].itertuples():
        labels = read_label_image(row.mask_path)
        truth, _, _ = ground_truth.read(row.image_id, labels.shape)
        if truth is None:
            continue
        truth_by_image[row.image_id] = truth
        if instances is not None:
            mine = instances[instances["image_id"] == row.image_id]
            pred_by_image[row.image_id] = [
                (decode(r), s)
                for r, s in zip(mine["rle"], mine["score"])
            ]
        else:
            objects = objects_of(labels, instances=False)
            pred_by_image[row.image_id] = [
                (objects == i, 1.0) for i in range(1, int(objects.max()) + 1)
            ]
    if not truth_by_image:
        return empty
    scores = coco_mask_ap(truth_by_image, pred_by_image)
    return {k: (None if np.isnan(v) else float(v)) for k, v in scores.items()}


def write_method_coco_ap(metrics_paths, instance_paths, out, *, ground_truth):
    """Read one method's shard tables, score it, write the scores as JSON."""
    from segpipe.summary import read_tables
    from segpipe.table import INSTANCES_SCHEMA, METRICS_SCHEMA

    metrics = read_tables(metrics_paths, METRICS_SCHEMA).to_pandas()
    instances = read_tables(instance_paths, INSTANCES_SCHEMA).to_pandas() if instance_paths else None
    scores = method_coco_ap(metrics, instances, ground_truth)
    log.info("COCO mask AP: %s", scores)
    write_bytes_atomic(out, json.dumps(scores).encode())
