"""Scores of a whole method against the ground truth: COCO mask AP over all its images.

Streamed one image at a time (:class:`segpipe.evaluation.MaskAP`): each image's objects
are run-length encoded straight from its label image, matched, and dropped, so memory
follows one image and one shard's tables, not the whole run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segpipe.imageio import read_label_image, write_bytes_atomic
from segpipe.table import METHOD_METRICS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from segpipe.ground_truth import GroundTruth

log = logging.getLogger(__name__)


def _empty(note: str) -> dict[str, float | str | None]:
    return {**dict.fromkeys(METHOD_METRICS), "coco_note": note}


def method_coco_ap(shards: Iterable[tuple[pd.DataFrame, pd.DataFrame]],
                   ground_truth: GroundTruth | None, *,
                   meaning: str) -> dict[str, float | str | None]:
    """Class-agnostic COCO mask AP of one method.

    Parameters
    ----------
    shards : iterable of (metrics, detections)
        Per shard: its metrics rows (pandas.DataFrame with ``image_id``, ``status``,
        ``mask_path``) and its detections (pandas.DataFrame): for a method with its own
        instance masks (Mask R-CNN), ``instances`` rows (``image_id``, ``instance_id``,
        ``score``, ``rle``), scored on those full masks; otherwise ``objects`` rows
        (``image_id``, ``label``, ``score``), scored on the objects of the mask file.
    ground_truth : segpipe.ground_truth.GroundTruth
        Read as instances.
    meaning : {"foreground", "classes", "regions", "instances"}
        What the method's labels mean; classes and regions have no objects to score.

    Returns
    -------
    dict
        ``coco_ap``, ``coco_ap50``, ``coco_ap75`` (None each where they do not apply or
        cannot be computed) and ``coco_note`` saying why (None when computed).
    """
    from segpipe.evaluation import MaskAP, objects_of
    from segpipe.rle import encode_objects

    if ground_truth is None or ground_truth.kind != "instances":
        return _empty("needs instance ground truth")
    if meaning not in ("foreground", "instances"):
        return _empty(f"not applicable: the method's labels are {meaning}, not objects")
    ap = MaskAP()
    skipped = 0
    for metrics, detections in shards:
        by_image = {k: g for k, g in detections.groupby("image_id", sort=False)}
        for row in metrics[metrics["status"] == "ok"].itertuples():
            labels = read_label_image(row.mask_path)
            truth, _, _ = ground_truth.read(row.image_id, labels.shape)
            if truth is None:
                skipped += 1
                continue
            mine = by_image.get(row.image_id)
            if "rle" in detections:
                mine = mine.sort_values("instance_id") if mine is not None else None
                rles = [] if mine is None else [
                    {"size": [int(v) for v in r["size"]], "counts": r["counts"].encode("ascii")}
                    for r in mine["rle"]
                ]
            else:
                objects = objects_of(labels, meaning)
                rles = encode_objects(objects)
                present = np.unique(objects)
                present = present[present != 0]
                if mine is None or len(mine) != present.size:
                    raise ValueError(
                        f"{row.image_id}: the objects table lists "
                        f"{0 if mine is None else len(mine)} objects, the mask has {present.size}")
                mine = mine.sort_values("label")
            scores = [] if mine is None else mine["score"].to_numpy()
            ap.add_image(row.image_id, encode_objects(truth), rles, scores)
    if ap.images == 0:
        return _empty("no image with a usable ground-truth mask")
    scores = ap.result()
    if skipped:
        log.info("COCO AP: %d images without usable ground truth left out", skipped)
    note = None if ap.n_truth else "the ground truth has no object"
    return {**{k: (None if np.isnan(v) else float(v)) for k, v in scores.items()},
            "coco_note": note}


def iter_shards(
    metrics_paths: Iterable[str | os.PathLike],
    detection_paths: Iterable[str | os.PathLike],
    detection_schema: pa.Schema,
    columns: Sequence[str],
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(metrics, detections) DataFrames per shard, read one shard at a time, with only
    the detection ``columns`` scoring needs."""
    import pyarrow.parquet as pq

    from segpipe.table import METRICS_SCHEMA

    detections = {Path(p).stem: p for p in detection_paths}
    for path in sorted(map(str, metrics_paths)):
        metrics = pq.read_table(path, schema=METRICS_SCHEMA,
                                columns=["image_id", "status", "mask_path"]).to_pandas()
        other = detections.get(Path(path).stem)
        if other is None:
            table = detection_schema.empty_table().select(columns)
        else:
            table = pq.read_table(other, schema=detection_schema, columns=columns)
        yield metrics, table.to_pandas()


def write_method_coco_ap(
    metrics_paths: Iterable[str | os.PathLike],
    instance_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    ground_truth: GroundTruth | None,
    meaning: str,
    object_paths: Iterable[str | os.PathLike] = (),
) -> None:
    """Score one method's shard tables and write the scores as JSON.

    A failure is logged with its traceback and written as null scores with a note, so
    that the summary and the leaderboard of every other method are still made.
    """
    from segpipe.measure import OBJECTS_SCHEMA
    from segpipe.table import INSTANCES_SCHEMA

    try:
        if instance_paths:
            shards = iter_shards(metrics_paths, instance_paths, INSTANCES_SCHEMA,
                                 ["image_id", "instance_id", "score", "rle"])
        else:
            shards = iter_shards(metrics_paths, object_paths, OBJECTS_SCHEMA,
                                 ["image_id", "label", "score"])
        scores = method_coco_ap(shards, ground_truth, meaning=meaning)
    except Exception as err:  # a failed score must not cost the run its summary
        log.exception("COCO mask AP failed")
        scores = _empty(f"COCO AP failed: {type(err).__name__}: {err}")
    log.info("COCO mask AP: %s", scores)
    write_bytes_atomic(out, json.dumps(scores).encode())
