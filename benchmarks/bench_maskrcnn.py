"""Mask R-CNN throughput end to end, through the function the workflow's rule calls.

Each row runs ``segpipe.maskrcnn.shard.run_maskrcnn_shard`` (the production code path:
DataLoader decoding, canvas buckets, batched forward passes, batched mask pasting and
post-processing on the device, one copy per batch, writer processes for PNG, RLE and rows,
Parquet tables) over a generated folder of JPEG photographs-like images:

- ``one``: 640x480 only; ``mixed``: 12 sizes from 333x500 to 1024x768, both orientations;
- 10 or 100 instances per image (``max_detections``; random weights with score threshold 0
  fill it);
- fp32 or AMP; batch 1, 8, 16, 32.

It prints and writes (``docs/benchmarks.md``, between the ``maskrcnn`` markers) images/s
(the job's whole call, and its image loop alone), the share of the loop the GPU was busy,
and milliseconds per image by stage. Before each (precision, sizes, batch) a warm-up call
runs on a few images, so cuDNN has tuned the canvas shapes, as it has in a long job.

It needs torch, torchvision, numpy, OpenCV, Pillow, pyarrow and pycocotools, and finds
segpipe in ../src, so it runs on a GPU machine without Snakemake:

    python benchmarks/bench_maskrcnn.py --device cuda --time-limit-s 420
    python benchmarks/bench_maskrcnn.py --quick     # CPU smoke run, tiny sizes, a minute
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT, machine, markdown_table, now, revision, write_section

import numpy as np  # noqa: E402  (after _bench puts src/ on the path)
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from segpipe.manifest import write_shards  # noqa: E402
from segpipe.maskrcnn.model import resolve_device  # noqa: E402
from segpipe.maskrcnn.shard import run_maskrcnn_shard  # noqa: E402

SIZES = {
    "one": [(480, 640)],
    # (height, width): COCO-like photographs, landscape and portrait
    "mixed": [(480, 640), (640, 480), (427, 640), (640, 427), (375, 500), (500, 375),
              (512, 512), (360, 640), (640, 360), (768, 1024), (1024, 768), (333, 500)],
}
STAGES = ("wait_loader", "prepare", "forward", "postprocess", "copy", "finish", "wait_writers")


def make_images(folder, n, sizes, seed=0):
    """Smooth colour gradients with filled ellipses, as JPEG, sizes taken in turn."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        image = np.broadcast_to(
            np.linspace(rng.integers(0, 120, 3), rng.integers(120, 255, 3), w, dtype=np.float32),
            (h, w, 3)).astype(np.uint8).copy()
        for _ in range(int(rng.integers(3, 9))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(15, w // 4)), int(rng.integers(15, h // 4)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)
        name = f"img{i:05d}.jpg"
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        ids.append(name)
    return ids


def settings_for(args, *, batch, amp, detections):
    return {
        "kind": "maskrcnn", "model": args.model, "weights": "none", "seed": 0,
        "score_threshold": 0.0, "mask_threshold": 0.5, "max_detections": detections,
        "min_size": args.min_size, "max_size": args.max_size, "batch_size": batch,
        "device": args.device, "amp": amp, "amp_dtype": args.amp_dtype,
        "channels_last": not args.no_channels_last, "compile": False,
        "canvas_step": args.canvas_step, "workers": args.workers, "writers": args.writers,
    }


def run(work, name, shard_ids, settings, threads):
    """One call of the production function over ``shard_ids``; its stats and inst/image."""
    shards = work / f"shards-{name}"
    write_shards(shards, {"000000": shard_ids})
    out = work / f"out-{name}"
    stats = run_maskrcnn_shard(
        shards / "000000.json", out / "metrics.parquet", out / "instances.parquet",
        input_dir=work / "images", method="bench", settings=settings,
        masks_dir=str(out / "masks"), threads=threads,
    )
    metrics = pq.read_table(out / "metrics.parquet").to_pandas()
    n_inst = pq.read_metadata(out / "instances.parquet").num_rows
    ok = int((metrics["status"] == "ok").sum())
    if ok != len(shard_ids):
        errors = metrics.loc[metrics["status"] != "ok", "error"].head(3).tolist()
        raise RuntimeError(f"{len(shard_ids) - ok} images failed: {errors}")
    shutil.rmtree(out)
    return stats, n_inst / max(1, ok)


def row_of(config, stats, inst, cuda):
    n = stats["images"]
    gpu = sum(stats[f"{s}_s"] for s in ("prepare", "forward", "postprocess", "copy"))
    cells = [
        config["sizes"], config["precision"], str(config["batch"]), f"{inst:.0f}",
        f"{n / stats['wall_s']:.1f}", f"{n / stats['loop_s']:.1f}",
        f"{100 * gpu / stats['loop_s']:.0f}%" if cuda else "n/a",
        f"{1000 * stats['decode_s'] / n:.1f}",
    ]
    return cells + [f"{1000 * stats[f'{s}_s'] / n:.1f}" for s in STAGES]


HEADER = ["sizes", "precision", "batch", "inst/img", "img/s job", "img/s loop", "GPU busy",
          "decode ms"] + [f"{s} ms" for s in STAGES]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--n-images", type=int, default=256, help="images per measured call")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 8, 1])
    p.add_argument("--detections", type=int, nargs="+", default=[10, 100])
    p.add_argument("--precisions", nargs="+", default=["amp", "fp32"], choices=["fp32", "amp"])
    p.add_argument("--sizes", nargs="+", default=["mixed", "one"], choices=sorted(SIZES))
    p.add_argument("--model", default="maskrcnn_resnet50_fpn_v2")
    p.add_argument("--min-size", type=int, default=800)
    p.add_argument("--max-size", type=int, default=1333)
    p.add_argument("--canvas-step", type=int, default=128)
    p.add_argument("--amp-dtype", default="float16", choices=["float16", "bfloat16"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--workers", default="auto", type=lambda v: v if v == "auto" else int(v))
    p.add_argument("--writers", default="auto", type=lambda v: v if v == "auto" else int(v))
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="the job's threads")
    p.add_argument("--time-limit-s", type=float, default=None,
                   help="start no new configuration after this many seconds")
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: 4 images, sizes 64..96, batch 2, fp32, 5 detections")
    args = p.parse_args(argv)
    if args.quick:
        args.n_images, args.batch_sizes, args.precisions = 4, [2], ["fp32"]
        args.detections, args.min_size, args.max_size = [5], 64, 96
        args.out = ROOT / "benchmarks/_work/benchmarks-quick.md"
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        args.precisions = ["fp32"]  # autocast is CUDA-only in segpipe
    started = time.perf_counter()
    configs = [
        dict(precision=precision, sizes=sizes, batch=batch)
        for precision, batch, sizes in itertools.product(args.precisions, args.batch_sizes,
                                                         args.sizes)
    ]
    rows, skipped = [], []
    print(" | ".join(HEADER), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            work = Path(tmp) / config["sizes"]
            if not (work / "images").exists():
                ids = make_images(work / "images", args.n_images, SIZES[config["sizes"]])
            ids = sorted(os.listdir(work / "images"))
            for detections in args.detections:
                label = f"{config['sizes']}/{config['precision']}/b{config['batch']}/{detections}"
                if args.time_limit_s and time.perf_counter() - started > args.time_limit_s:
                    skipped.append(label)
                    continue
                settings = settings_for(args, batch=config["batch"], detections=detections,
                                        amp=config["precision"] == "amp")
                warm = ids[: min(len(ids), max(2 * config["batch"], 24))]
                run(work, "warm", warm, settings, args.threads)
                stats, inst = run(work, "run", ids, settings, args.threads)
                rows.append(row_of(config, stats, inst, cuda))
                print(" | ".join(rows[-1]), flush=True)
                if cuda:
                    torch.cuda.empty_cache()
    command = "python benchmarks/bench_maskrcnn.py " + " ".join(sys.argv[1:] if argv is None else argv)
    body = f"""## Mask R-CNN throughput, end to end (benchmarks/bench_maskrcnn.py)

- Command: `{command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine(device)}
- Each row: one call of `run_maskrcnn_shard` (what the rule runs) over {args.n_images} generated
  JPEGs, after a warm-up call on a few of them. Model {args.model}, random weights (`none`),
  score threshold 0 (so `max_detections` instances per image), min/max size
  {args.min_size}/{args.max_size}, canvas step {args.canvas_step}, AMP dtype {args.amp_dtype},
  channels_last {not args.no_channels_last}, job threads {args.threads}, workers
  {args.workers}, writers {args.writers}. Sizes `one`: 640x480; `mixed`: {len(SIZES['mixed'])}
  sizes, both orientations.
- *img/s job*: images / the whole call (model build, process start-up, tables included);
  *img/s loop*: images / the image loop. *GPU busy*: the predictor's stages timed with CUDA
  events on the stream, over the loop's wall time. Stages in ms per image: *decode* is CPU
  time in the loader workers (in parallel); *wait_loader* the main process waiting for
  decoded images; *prepare*, *forward*, *postprocess*, *copy* the predictor's stages (GPU
  time on CUDA); *finish* CPU time in the writers (label PNG, RLE, statistics; in parallel);
  *wait_writers* the main process waiting for the writers.

{markdown_table(HEADER, rows)}
"""
    if skipped:
        body += f"\nNot run (time limit {args.time_limit_s:.0f} s): {', '.join(skipped)}.\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_section(args.out, "maskrcnn", body)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
