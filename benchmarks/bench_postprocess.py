"""Post-processing of Mask R-CNN detections on the CPU, before and after the pipeline rework.

One 640x480 image with N instances (default 100): 28x28 mask probabilities and boxes
like a detector's (sides log-uniform between 16 and 320 pixels). Measured, in one process
and one thread, each the median of ``--repeats`` runs:

- *before* (the code of commit 6170911): torchvision's ``paste_masks_in_image`` (one
  full-size mask per instance), threshold, the label image painted instance by
  instance from full masks, areas from full masks, pycocotools ``encode`` of a
  Fortran-ordered copy of all masks, and the PNG;
- *after*: ``segpipe.maskrcnn.postprocess.paste_batch`` (the device stage, here on the
  CPU) and ``segpipe.batch_runner.finish_detections`` (the writer stage: PNG, RLE
  compression, label statistics, rows).

Writes its table to ``docs/benchmarks.md`` between the ``maskrcnn-post`` markers.

    .venv/bin/python benchmarks/bench_postprocess.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segpipe.batch_runner import WriterContext, finish_detections
from segpipe.finish import Finishing
from segpipe.imageio import label_dtype, write_png
from segpipe.maskrcnn.inference import Detections
from segpipe.maskrcnn.postprocess import paste_batch, runs_by_instance
from segpipe.table import empty_row

from _bench import ROOT, machine, markdown_table, now, revision, write_section


def detections(n, height, width, seed=0):
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(np.log(16), np.log(320), (n, 2)))
    x0 = rng.uniform(0, width - side[:, 0])
    y0 = rng.uniform(0, height - side[:, 1])
    boxes = np.stack([x0, y0, x0 + side[:, 0], y0 + side[:, 1]], 1).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    # Smooth blobs, as a trained mask head gives, not pixel noise.
    logits = torch.nn.functional.avg_pool2d(torch.randn(n, 1, 28, 28, generator=gen) * 6, 5, 1, 2)
    return torch.sigmoid(logits[:, 0]), torch.from_numpy(boxes)


def before(probs, boxes, height, width, out):
    """The code path of commit 6170911, for one image."""
    from pycocotools import mask as mask_utils
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    t0 = time.perf_counter()
    masks = (paste_masks_in_image(probs[:, None], boxes, (height, width))[:, 0] > 0.5).numpy()
    t1 = time.perf_counter()
    labels = np.zeros((height, width), np.uint16)
    for index in range(len(masks) - 1, -1, -1):
        labels[masks[index]] = index + 1
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    _ = [r["counts"].decode("ascii") for r in rles], areas
    write_png(out, labels)
    return t1 - t0, time.perf_counter() - t1


def after(probs, boxes, height, width, masks_dir):
    n = len(probs)
    t0 = time.perf_counter()
    pasted = paste_batch(probs, boxes, torch.zeros(n, dtype=torch.int64), torch.arange(n),
                         [(height, width)], threshold=0.5)
    start, end = runs_by_instance(pasted.run_instance.numpy(), n)
    positions = pasted.run_position.numpy()
    det = Detections(
        labels=pasted.labels[:-1].numpy().reshape(height, width).astype(label_dtype(n)),
        boxes=boxes.numpy(), class_ids=np.ones(n, np.int64), scores=np.linspace(1, 0.5, n),
        areas=pasted.areas.numpy(), runs=[positions[a:b] for a, b in zip(start, end)],
    )
    t1 = time.perf_counter()
    row = empty_row(image_id="a.jpg", method="m", kind="maskrcnn", shard="0", params="{}")
    context = WriterContext("in", {"a.jpg": f"{masks_dir}/a.jpg.png"}, Finishing("instances"))
    finish_detections(context, row, det, 0.0, 0.0)
    return t1 - t0, time.perf_counter() - t1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, nargs="+", default=[10, 100])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    height, width = 480, 640
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.instances:
            probs, boxes = detections(n, height, width)
            timings = {"before": [], "after": []}
            for _ in range(args.repeats):
                timings["before"].append(before(probs, boxes, height, width, Path(tmp) / "b.png"))
                timings["after"].append(after(probs, boxes, height, width, tmp))
            for name, runs in timings.items():
                device = statistics.median(r[0] for r in runs) * 1000
                host = statistics.median(r[1] for r in runs) * 1000
                total = statistics.median(r[0] + r[1] for r in runs) * 1000
                rows.append([name, n, f"{device:.1f}", f"{host:.1f}", f"{total:.1f}"])
                print(rows[-1], flush=True)
    header = ["code", "instances", "paste ms", "label image, RLE, PNG, rows ms", "total ms"]
    command = "benchmarks/bench_postprocess.py " + " ".join(sys.argv[1:] if argv is None else argv)
    body = f"""## Mask R-CNN post-processing on the CPU (benchmarks/bench_postprocess.py)

- Command: `.venv/bin/python {command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine()}; one thread (torch and OpenCV), median of {args.repeats} runs.
- One 640x480 image, detections with sides log-uniform in 16..320 px, smooth 28x28 masks.
  *before*: commit 6170911's path (torchvision's per-instance `paste_masks_in_image` in the
  forward pass; then label image, areas and pycocotools RLE from full masks, PNG).
  *after*: `paste_batch` (the device stage, here on the CPU: pasting, label image, areas,
  run boundaries) then the writer task `finish_detections` (PNG, RLE compression, label
  statistics, rows). On a GPU node the first column runs on the GPU and the second in the
  writer processes.

{markdown_table(header, rows)}
"""
    write_section(args.out, "maskrcnn-post", body)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
