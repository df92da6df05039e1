"""Segmenting one shard with Mask R-CNN: decode in DataLoader workers, batch on the device."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from segpipe.errors import ImageReadError
from segpipe.imageio import read_image, write_png
from segpipe.label_stats import label_stats
from segpipe.maskrcnn.inference import (
    predict,
    predict_with_backoff,
    to_chw_tensor,
    to_model_input,
)
from segpipe.maskrcnn.model import build_model, resolve_device
from segpipe.maskrcnn.weights import missing_weights_message, read_status, resolve_weights
from segpipe.progress import Progress
from segpipe.shard import mask_path_for
from segpipe.table import (
    INSTANCES_SCHEMA,
    empty_row,
    params_json,
    rows_to_table,
    write_table_atomic,
)

log = logging.getLogger(__name__)

# Settings that shape the model rather than the run: everything but these.
_RUN_ONLY = {"kind", "batch_size", "device", "amp", "mask_threshold"}


class ImageFiles(Dataset):
    """Decodes images for the DataLoader's workers; a bad file becomes an error item."""

    def __init__(self, input_dir, image_ids):
        self.input_dir = Path(input_dir)
        self.image_ids = image_ids

    def __len__(self):
        return len(self.image_ids)

    def __getitem__(self, index):
        t0 = time.perf_counter()
        try:
            rgb = read_image(self.input_dir / self.image_ids[index], mode="rgb")
        except ImageReadError as err:
            return index, None, str(err), time.perf_counter() - t0
        # (C, M, K), kept in its integer type: converted to float on the device.
        return index, to_chw_tensor(rgb), None, time.perf_counter() - t0


def _collate(items):
    return items


def encode_rles(masks):
    """COCO compressed RLE of each (M, K) bool mask, with ``counts`` as text."""
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def instance_rows(instances, *, image_id, method, class_names):
    """A row per instance for ``instances.parquet`` (``instance_id`` = its label)."""
    rles = encode_rles(instances.masks)
    areas = instances.masks.reshape(len(instances), -1).sum(axis=1) if len(instances) else []
    return [
        {
            "image_id": image_id,
            "method": method,
            "instance_id": i + 1,
            "class_id": int(instances.class_ids[i]),
            "class_name": class_names[int(instances.class_ids[i])],
            "score": float(instances.scores[i]),
            "bbox": [float(v) for v in instances.boxes[i]],
            "area": int(areas[i]),
            "rle": rles[i],
        }
        for i in range(len(instances))
    ]


def run_maskrcnn_shard(
    shard_file, metrics_out, instances_out, *, input_dir, method, settings, masks_dir,
    weights_dir="resources/weights", ground_truth=None, threads=1,
):
    """Segment the shard's images with Mask R-CNN; write metrics and instance tables.

    If the weights are not in ``weights_dir`` (the fetch failed), every image gets an
    error row saying which file to put where, and no model is built.
    """
    from segpipe.manifest import read_shard

    shard = Path(shard_file).stem
    image_ids = read_shard(shard_file)
    params = params_json(settings)
    rows = {i: empty_row(image_id=i, method=method, kind="maskrcnn", shard=shard, params=params)
            for i in image_ids}
    instances_table = []

    source = resolve_weights(settings["model"], settings["weights"], weights_dir=weights_dir)
    status = read_status(source.status_path) if source.kind == "named" else None
    if status is not None and not status["ok"]:
        message = missing_weights_message(status)
        log.error(message)
        for row in rows.values():
            row.update(status="error", error=message)
    else:
        instances_table = _segment(rows, image_ids, input_dir, method, settings, masks_dir,
                                   weights_dir, threads, shard, ground_truth)
    write_table_atomic(rows_to_table(list(rows.values())), metrics_out)
    write_table_atomic(pa.Table.from_pylist(instances_table, schema=INSTANCES_SCHEMA), instances_out)


def _segment(rows, image_ids, input_dir, method, settings, masks_dir, weights_dir, threads, shard,
             ground_truth):
    device = resolve_device(settings["device"])
    torch.set_num_threads(max(1, threads))
    model_kwargs = {k: v for k, v in settings.items() if k not in _RUN_ONLY}
    net, names = build_model(**model_kwargs, device=device, weights_dir=weights_dir)
    workers = max(0, threads - 1)
    loader = DataLoader(
        ImageFiles(input_dir, image_ids), batch_size=settings["batch_size"], num_workers=workers,
        pin_memory=device.type == "cuda", collate_fn=_collate,
    )
    log.info("%s shard %s: %d images, batch size %d, %d loader workers, amp %s",
             method, shard, len(image_ids), settings["batch_size"], workers,
             settings["amp"] and device.type == "cuda")
    progress = Progress(len(image_ids), log, label=f"{method} shard {shard}")
    batch_size = settings["batch_size"]
    instance_table = []

    def run(chunk):
        return predict(net, chunk, mask_threshold=settings["mask_threshold"], amp=settings["amp"])

    for batch in loader:
        good = [item for item in batch if item[1] is not None]
        for index, _, error, _ in batch:
            if error is not None:
                rows[image_ids[index]].update(status="error", error=error)
                log.warning(error)
        t0 = time.perf_counter()
        tensors = [to_model_input(item[1], device) for item in good]
        failed = {}

        def fail(position, err, good=good, failed=failed):
            failed[position] = f"{Path(input_dir) / image_ids[good[position][0]]}: {err}"

        results = []
        if good:
            results, batch_size = predict_with_backoff(run, tensors, batch_size, on_fail=fail)
        per_image_s = (time.perf_counter() - t0) / max(1, len(good))
        for position, ((index, tensor, _, decode_s), result) in enumerate(zip(good, results)):
            row = rows[image_ids[index]]
            if position in failed:
                row.update(status="error", error=failed[position])
                continue
            t1 = time.perf_counter()
            labels = result.label_image()
            row["mask_path"] = mask_path_for(masks_dir, method, row["image_id"])
            write_png(row["mask_path"], labels)
            instance_table.extend(instance_rows(result, image_id=row["image_id"], method=method,
                                                class_names=names))
            t2 = time.perf_counter()
            counts = Counter(names[int(c)] for c in result.class_ids)
            row.update(label_stats(labels))
            if ground_truth is not None:
                row.update(ground_truth.score(row["image_id"], labels, pred_instances=True))
            row.update(
                status="ok",
                height=int(tensor.shape[1]),
                width=int(tensor.shape[2]),
                n_instances=len(result),
                mean_score=float(result.scores.mean()) if len(result) else None,
                class_counts=json.dumps(dict(sorted(counts.items()))),
                decode_s=decode_s,
                segment_s=per_image_s,
                write_s=t2 - t1,
                metrics_s=time.perf_counter() - t2,
            )
            row["runtime_s"] = row["decode_s"] + row["segment_s"] + row["write_s"] + row["metrics_s"]
        progress.update(len(batch), errors=sum(rows[image_ids[i[0]]]["status"] == "error" for i in batch))
    progress.close()
    return instance_table
