"""Segmenting one shard with Mask R-CNN: a staged pipeline whose rate is its slowest stage.

::

    DataLoader workers      main process (the GPU's)                 writer processes
    decode, pinned    ──►   group by canvas ──► forward ──► paste,  ──► label PNG, RLE,
    integer tensors         (full batches)                label image,  statistics, scores,
                                                          runs; 1 copy  rows

Decoding runs in loader processes and finishing (the host work per image) in writer
processes, so the main process only feeds the GPU. The queue to the writers is bounded
(:class:`segpipe.finish.WriterPool`), and at most ``max_pending`` decoded images wait
for their canvas bucket to fill: memory is bounded by those depths, never by the shard.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from segpipe.errors import ImageReadError
from segpipe.finish import (
    WriterPool,
    finish_image,
    fork_available,
    prepare_shard_folder,
    record_failure,
    shard_output_paths,
)
from segpipe.imageio import DEFAULT_MAX_PIXELS, MASK_SUFFIXES, read_image
from segpipe.planes import DEFAULT_READING, for_plane, split_plane
from segpipe.maskrcnn.inference import Predictor, predict_with_backoff, to_chw_tensor
from segpipe.maskrcnn.model import build_model, resolve_device, wants_cuda
from segpipe.maskrcnn.weights import missing_weights_message, read_status, resolve_weights
from segpipe.progress import Progress
from segpipe.table import (
    INSTANCES_SCHEMA,
    empty_row,
    params_json,
    rows_to_table,
    write_table_atomic,
)

log = logging.getLogger(__name__)

# Settings that shape the run rather than the model.
_RUN_ONLY = {
    "kind", "batch_size", "device", "amp", "amp_dtype", "mask_threshold", "workers", "writers",
    "channels_last", "compile", "canvas_step",
}


# Settings passed on to the Predictor as they are.
_PREDICTOR = ("mask_threshold", "amp", "amp_dtype", "channels_last", "compile", "canvas_step")


class ImageFiles(Dataset):
    """Decodes images for the DataLoader's workers; a bad file becomes an error item."""

    def __init__(self, input_dir, image_ids, max_pixels=DEFAULT_MAX_PIXELS, reading=None):
        self.input_dir = Path(input_dir)
        self.image_ids = image_ids
        self.max_pixels = max_pixels
        self.reading = reading

    def __len__(self):
        return len(self.image_ids)

    def __getitem__(self, index):
        t0 = time.perf_counter()
        notes, info = [], {}
        try:
            # Scaled by intensity_range: the model sees what the other methods see.
            rel, plane = split_plane(self.image_ids[index], self.input_dir)
            rgb = read_image(self.input_dir / rel, mode="rgb", max_pixels=self.max_pixels,
                             notes=notes, reading=for_plane(self.reading or DEFAULT_READING, plane),
                             info=info)
        except ImageReadError as err:
            return index, None, str(err), time.perf_counter() - t0, None, {}
        # (C, M, K), kept in its integer type: converted to float on the device.
        return (index, to_chw_tensor(rgb), None, time.perf_counter() - t0,
                "; ".join(notes) or None, info)


def _collate(items):
    return items


def resolve_processes(settings, *, threads, cuda):
    """Loader and writer process counts from ``workers``/``writers`` and the job's threads.

    ``auto``: on a GPU, half the job's cores decode and the rest but one (the main
    process) finish images; on the CPU the forward pass needs the cores, so images are
    decoded and finished in the main process. Writers need ``fork`` (not on macOS).

    >>> resolve_processes({"workers": "auto", "writers": "auto"}, threads=16, cuda=True)
    (8, 7)
    >>> resolve_processes({"workers": "auto", "writers": "auto"}, threads=4, cuda=False)
    (0, 0)
    >>> resolve_processes({"workers": 2, "writers": 3}, threads=1, cuda=False)
    (2, 3)
    """
    workers, writers = settings.get("workers", "auto"), settings.get("writers", "auto")
    if workers == "auto":
        workers = max(1, threads // 2) if cuda else 0
    if writers == "auto":
        writers = max(1, threads - workers - 1) if cuda else 0
    if writers and not fork_available():
        log.warning("writer processes need the fork start method, missing here: writing inline")
        writers = 0
    return workers, writers


class CanvasBuckets:
    """Groups decoded images by canvas so that forward passes get full batches.

    Parameters
    ----------
    canvas_of : callable
        ``canvas_of(height, width) -> key``.
    batch_size : int
    max_pending : int
        Most images held; beyond it the fullest bucket goes out as a partial batch.
    """

    def __init__(self, canvas_of, batch_size, max_pending):
        self.canvas_of = canvas_of
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending)
        self.buckets = {}

    def add(self, item, height, width):
        """Hold ``item``; return the batches that are ready (lists of items)."""
        bucket = self.buckets.setdefault(self.canvas_of(height, width), [])
        bucket.append(item)
        ready = []
        if len(bucket) == self.batch_size:
            ready.append(self._pop(self.canvas_of(height, width)))
        while sum(map(len, self.buckets.values())) > self.max_pending:
            ready.append(self._pop(max(self.buckets, key=lambda k: len(self.buckets[k]))))
        return ready

    def rest(self):
        """The partial batches left at the end, one per bucket."""
        return [self._pop(key) for key in sorted(self.buckets)]

    def _pop(self, key):
        return self.buckets.pop(key)


@dataclass
class _Image:
    index: int
    tensor: torch.Tensor
    decode_s: float


def finish_detections(context, row, detections, decode_s, segment_s, image=None):
    """Writer task: one image's label PNG, statistics, scores, instance and object rows.

    ``image`` (the decoded (3, M, N) tensor) is given when objects are measured.

    Returns
    -------
    row : dict
    instances : list of dict
        Rows of ``instances.parquet`` without ``class_name`` (the main process names them).
    objects : dict or None
        The image's object columns (:func:`segpipe.measure.measure_objects`), without
        ``class_name``; None when objects are not measured or there are none.
    """
    input_dir, mask_paths, ground_truth, objects_mode = context
    objects = [] if objects_mode is not None else None
    try:
        t0 = time.perf_counter()
        rles = detections.rles()
        rle_s = time.perf_counter() - t0
        row.update(decode_s=decode_s, segment_s=segment_s,
                   n_instances=len(detections),
                   mean_score=float(detections.scores.mean()) if len(detections) else None)
        grey = None
        if image is not None:
            from segpipe.measure import grey_of

            grey = grey_of(image.permute(1, 2, 0).numpy())
        # Labels are 1..N by falling score: detection i is label i + 1.
        finish_image(row, detections.labels, mask_path=mask_paths[row["image_id"]],
                     meaning="instances", ground_truth=ground_truth, objects_out=objects,
                     grey=grey, measure=bool(objects_mode), scores=detections.scores)
        row["write_s"] += rle_s
        row["runtime_s"] += rle_s
    except Exception as err:  # one image's failure is its row, not the shard's
        return record_failure(row, Path(input_dir) / row["image_id"], err), [], None
    instances = [
        {
            "image_id": row["image_id"],
            "method": row["method"],
            "instance_id": i + 1,
            "class_id": int(detections.class_ids[i]),
            "score": float(detections.scores[i]),
            "bbox": [float(v) for v in detections.boxes[i]],
            "area": int(detections.areas[i]),
            "rle": rles[i],
        }
        for i in range(len(detections))
    ]
    return row, instances, (objects[0] if objects else None)


def run_maskrcnn_shard(
    shard_file, metrics_out, instances_out, *, input_dir, method, settings, masks_dir,
    weights_dir="resources/weights", ground_truth=None, threads=1,
    max_pixels=DEFAULT_MAX_PIXELS, objects_out=None, measure_objects=True, mask_format="png",
    reading=None,
):
    """Segment the shard's images with Mask R-CNN; write metrics, instance and object tables.

    The objects table (``objects_out``) follows :func:`segpipe.shard.run_shard`: measured
    when ``measure_objects`` is set or there is ground truth, else empty.

    If the weights are not in ``weights_dir`` (the fetch failed), every image gets an
    error row saying which file to put where, and no model is built.

    Returns
    -------
    dict
        Where the time went: ``images``, ``wall_s`` and seconds per stage (see
        :func:`segment_shard_images`); empty without weights.
    """
    from segpipe.manifest import read_shard

    shard = Path(shard_file).stem
    image_ids = read_shard(shard_file)
    params = params_json(settings)
    rows = {i: empty_row(image_id=i, method=method, kind="maskrcnn", shard=shard, params=params)
            for i in image_ids}
    mask_paths = shard_output_paths(masks_dir, method, shard, image_ids,
                                    MASK_SUFFIXES[mask_format])
    prepare_shard_folder(f"{masks_dir}/{method}/{shard}", mask_paths.values())
    instances, objects, stats = [], [], {}
    measuring = objects_out is not None and (measure_objects or ground_truth is not None)

    source = resolve_weights(settings["model"], settings["weights"], weights_dir=weights_dir)
    status = read_status(source.status_path) if source.kind == "named" else None
    if status is not None and not status["ok"]:
        message = missing_weights_message(status)
        log.error(message)
        for row in rows.values():
            row.update(status="error", error=message)
    else:
        instances, stats = segment_shard_images(
            rows, image_ids, input_dir=input_dir, settings=settings, mask_paths=mask_paths,
            weights_dir=weights_dir, threads=threads, label=f"{method} shard {shard}",
            ground_truth=ground_truth, max_pixels=max_pixels,
            objects_out=objects if measuring else None, measure=measure_objects,
            reading=reading,
        )
    write_table_atomic(rows_to_table([rows[i] for i in image_ids]), metrics_out)
    write_table_atomic(pa.Table.from_pylist(instances, schema=INSTANCES_SCHEMA), instances_out)
    if objects_out is not None:
        from segpipe.measure import objects_table

        write_table_atomic(objects_table(objects), objects_out)
    return stats


def segment_shard_images(rows, image_ids, *, input_dir, settings, mask_paths, weights_dir, threads,
                         label, ground_truth=None, max_pixels=DEFAULT_MAX_PIXELS,
                         objects_out=None, measure=True, reading=None):
    """The pipeline over one shard's images; fills ``rows`` (by image id) in place.

    ``objects_out``, when given, receives each image's object columns in ``image_ids``
    order (``measure``: shape and intensity too).

    Returns
    -------
    instances : list of dict
        ``instances.parquet`` rows, in ``image_ids`` order, then by label.
    stats : dict
        ``images``, ``wall_s``, ``loop_s`` (the image loop, without model building and
        process start-up), ``decode_s`` (in the loader workers, summed),
        ``wait_loader_s`` (the main process waiting for decoded images), ``prepare_s``,
        ``forward_s``, ``postprocess_s``, ``copy_s`` (the predictor's stages; GPU time on
        CUDA), ``finish_s`` (writers' work, summed), ``wait_writers_s``, ``workers``,
        ``writers``.
    """
    start = time.perf_counter()
    cuda = wants_cuda(settings["device"])
    workers, writers = resolve_processes(settings, threads=threads, cuda=cuda)
    order = {image_id: n for n, image_id in enumerate(image_ids)}
    found, found_objects = {}, {}
    progress = Progress(len(image_ids), log, label=label)
    finish_s = 0.0

    def collect(done):
        nonlocal finish_s
        for row, instance_rows, objects in done:
            rows[row["image_id"]] = row
            found[row["image_id"]] = instance_rows
            found_objects[row["image_id"]] = objects
            finish_s += (row["write_s"] or 0.0) + (row["metrics_s"] or 0.0)
            progress.update(errors=row["status"] == "error")

    # Writer processes are forked before CUDA is initialised and loader threads exist.
    context = (str(input_dir), mask_paths, ground_truth,
               None if objects_out is None else bool(measure))
    with WriterPool(finish_detections, context, writers=writers, depth=2 * max(1, writers)) as pool:
        device = resolve_device(settings["device"])
        torch.set_num_threads(max(1, threads - workers - writers))
        model_kwargs = {k: v for k, v in settings.items() if k not in _RUN_ONLY}
        net, names = build_model(**model_kwargs, device=device, weights_dir=weights_dir)
        # Settings the config left out take the Predictor's own defaults, not a second copy.
        predictor = Predictor(net, device, **{k: settings[k] for k in _PREDICTOR if k in settings})
        if cuda:
            torch.backends.cudnn.benchmark = True  # a handful of canvas shapes: tune each once
        batch_size = settings["batch_size"]
        loader = DataLoader(
            ImageFiles(input_dir, image_ids, max_pixels, reading), batch_size=batch_size,
            num_workers=workers,
            pin_memory=cuda, collate_fn=_collate,
        )
        log.info("%s: %d images, batch size %d, %d loader workers, %d writers, amp %s, device %s",
                 label, len(image_ids), batch_size, workers, writers,
                 settings["amp"] and cuda, device)
        buckets = CanvasBuckets(predictor.canvas_of, batch_size, max_pending=4 * batch_size)
        decode_s = wait_loader_s = 0.0

        def run(batch):
            nonlocal batch_size
            failed = {}

            def fail(position, err):
                failed[position] = f"{Path(input_dir) / image_ids[batch[position].index]}: {err}"

            t0 = time.perf_counter()
            results, batch_size = predict_with_backoff(
                predictor, [item.tensor for item in batch], batch_size, on_fail=fail
            )
            per_image_s = (time.perf_counter() - t0) / len(batch)
            for position, (item, result) in enumerate(zip(batch, results)):
                row = rows[image_ids[item.index]]
                if position in failed:
                    row.update(status="error", error=failed[position])
                    log.warning(row["error"])
                    collect([(row, [], None)])
                    continue
                image = item.tensor if objects_out is not None else None
                collect(pool.submit(row, result, item.decode_s, per_image_s, image))

        mark = loop_start = time.perf_counter()
        for items in loader:
            wait_loader_s += time.perf_counter() - mark
            for index, tensor, error, seconds, note, info in items:
                decode_s += seconds
                rows[image_ids[index]].update(info, note=note)
                if error is not None:
                    row = rows[image_ids[index]]
                    row.update(status="error", error=error, decode_s=seconds)
                    log.warning(error)
                    collect([(row, [], None)])
                    continue
                for batch in buckets.add(_Image(index, tensor, seconds), *tensor.shape[-2:]):
                    run(batch)
            mark = time.perf_counter()
        for batch in buckets.rest():
            run(batch)
        collect(pool.drain())
        loop_s = time.perf_counter() - loop_start
        wait_writers_s = pool.wait_s
    progress.close()

    instances = []
    for image_id in sorted(found, key=order.__getitem__):
        instance_rows = found[image_id]
        for inst in instance_rows:
            inst["class_name"] = names[inst["class_id"]]
        objects = found_objects.get(image_id)
        if objects_out is not None and objects is not None:
            class_of = {inst["instance_id"]: inst["class_name"] for inst in instance_rows}
            objects["class_name"] = [class_of[int(k)] for k in objects["label"]]
            objects_out.append(objects)
        counts = Counter(inst["class_name"] for inst in instance_rows)
        if rows[image_id]["status"] == "ok":
            rows[image_id]["class_counts"] = json.dumps(dict(sorted(counts.items())))
        instances.extend(instance_rows)
    stats = {
        "images": len(image_ids), "wall_s": time.perf_counter() - start, "loop_s": loop_s,
        "decode_s": decode_s,
        "wait_loader_s": wait_loader_s, "finish_s": finish_s, "wait_writers_s": wait_writers_s,
        "workers": workers, "writers": writers, "cpu_count": os.cpu_count(),
        **{f"{stage}_s": seconds for stage, seconds in predictor.stage_s.items()},
    }
    log.info("%s: stage seconds %s", label, {k: round(v, 3) if isinstance(v, float) else v
                                            for k, v in stats.items()})
    return instances, stats
