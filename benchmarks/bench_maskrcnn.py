"""Mask R-CNN throughput end to end, through the function the workflow's rule calls.

Each row runs ``segpipe.job.run_shard_job`` on a Mask R-CNN job (the production code path:
DataLoader decoding, canvas buckets, batched forward passes, batched mask pasting and
post-processing on the device, one copy per batch, writer processes for PNG, RLE and rows,
Parquet tables; on the CPU the device stage takes a batch one image at a time,
``Predictor.one_at_a_time``) over a generated folder of JPEG photographs-like images:

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

With ``--stand-in MS`` the network is not run: ``Predictor.forward`` (the forward pass and
nothing else) is replaced by :class:`StandInNetwork`, which sleeps MS milliseconds per
image, as a host waits for a GPU, and returns fixed detections (``--detections`` per image,
28x28 mask probabilities in boxes of photograph-like sizes). Everything else runs for real:
decoding workers, canvas buckets, the canvas, the paste, the copy to the host, the writers
(label PNG, RLE, statistics, rows) and the Parquet tables. It reports host CPU seconds per
image by stage and the rate against the stand-in's own, and PASS when the pipeline reaches
90% of min(stand-in rate, cores / host CPU seconds per image); section ``maskrcnn-stand-in``:

    python benchmarks/bench_maskrcnn.py --stand-in 50 --images 256 --detections 10 100
    python benchmarks/bench_maskrcnn.py --stand-in 1 --quick   # seconds, to benchmarks/_work
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import torch

from segpipe.manifest import write_shards
from segpipe.maskrcnn import ACCELERATOR_BATCHES, MaskRCNN
from segpipe.maskrcnn.inference import Predictor
from segpipe.maskrcnn.model import resolve_device

# _bench puts ../src on the path first: the segpipe imports below need no install.
from _bench import ROOT, cores, cpu_seconds, machine, markdown_table, now, revision, write_section

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
            axes = tuple(int(rng.integers(min(15, max(1, s // 4 - 1)), max(2, s // 4)))
                         for s in (w, h))
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


def run(work, name, shard_ids, settings, threads, *, keep=False):
    """One call of the production function over ``shard_ids``.

    Its outputs go to ``work/out-<name>``, removed afterwards unless ``keep``.

    Returns
    -------
    stats : dict
        The runner's own (images, wall and loop seconds, seconds per stage).
    cpu : dict
        CPU seconds the call took (:func:`_bench.cpu_seconds`' keys): its loader and writer
        processes are waited for before it returns, so ``children`` holds all of theirs.
    instances_per_image : float
    """
    # The pipeline's public entry, and the only place this script drives the shard job.
    from segpipe.job import ShardJob, run_shard_job
    from segpipe.layout import Layout

    shards = work / f"shards-{name}"
    write_shards(shards, {"000000": shard_ids})
    out = work / f"out-{name}"
    job = ShardJob(method="bench", settings=settings, shard_file=str(shards / "000000.json"),
                   input_dir=str(work / "images"), metrics_out=str(out / "metrics.parquet"),
                   instances_out=str(out / "instances.parquet"), layout=Layout(str(out)),
                   threads=threads)
    before = cpu_seconds()
    stats = run_shard_job(job)
    after = cpu_seconds()
    cpu = {k: after[k] - before[k] for k in after if after[k] is not None}
    metrics = pq.read_table(out / "metrics.parquet").to_pandas()
    n_inst = pq.read_metadata(out / "instances.parquet").num_rows
    ok = int((metrics["status"] == "ok").sum())
    if ok != len(shard_ids):
        errors = metrics.loc[metrics["status"] != "ok", "error"].head(3).tolist()
        raise RuntimeError(f"{len(shard_ids) - ok} images failed: {errors}")
    if not keep:
        shutil.rmtree(out)
    return stats, cpu, n_inst / max(1, ok)


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


# Mask R-CNN's mask head: probabilities on a 28x28 grid per detection, pasted into its box.
MASK_SIDE = 28
# Photographs at the sizes the stand-in is measured on by default, width x height.
STAND_IN_SIZES = ["1024x1024", "1200x800"]


def fixed_detections(n, *, seed=0):
    """The stand-in's ``n`` detections, in units of the image's sides, so every image
    gets the same ones at its own scale.

    Box sides are log-uniform from 2% to 60% of the image's (about 20 to 600 pixels on a
    1024x1024 photograph, COCO's small to large objects), with aspect ratios from 1:2 to
    2:1; each mask is a soft ellipse with a wavy edge, filling most of its box, as the
    mask head's probabilities look before the paste.

    Returns
    -------
    boxes : (n, 4) ndarray of float32
        x0, y0, x1, y1 as fractions of the image's width and height.
    class_ids : (n,) ndarray of int64, in 1..90 (COCO's layout)
    scores : (n,) ndarray of float32, falling from 0.99 to 0.3
    masks : (n, 28, 28) ndarray of float32, probabilities
    """
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(np.log(0.02), np.log(0.6), n))
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    width = np.minimum(side * np.sqrt(aspect), 0.95)
    height = np.minimum(side / np.sqrt(aspect), 0.95)
    x0, y0 = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
    boxes = np.stack([x0, y0, x0 + width, y0 + height], axis=1).astype(np.float32)
    class_ids = rng.integers(1, 91, n).astype(np.int64)
    scores = np.linspace(0.99, 0.3, n, dtype=np.float32)

    grid = (np.arange(MASK_SIDE) + 0.5) / MASK_SIDE * 2 - 1
    y, x = np.meshgrid(grid, grid, indexing="ij")
    cx, cy = (rng.uniform(-0.1, 0.1, (n, 1, 1)) for _ in range(2))
    ax, ay = (rng.uniform(0.6, 0.95, (n, 1, 1)) for _ in range(2))
    waves = rng.integers(2, 6, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    edge = 1 + 0.12 * np.sin(waves * np.arctan2(y - cy, x - cx) + phase)
    radius = np.hypot((x - cx) / ax, (y - cy) / ay) / edge
    masks = (1 / (1 + np.exp(-10 * (1 - radius)))).astype(np.float32)
    return boxes, class_ids, scores, masks


class StandInNetwork:
    """Takes the network's place in ``Predictor.forward``: no CPU, fixed detections.

    Parameters
    ----------
    ms : float
        Milliseconds per image, slept: the host waits as for a GPU, using no CPU. One
        call sleeps at a time, as one GPU runs one batch at a time, whatever the number of
        threads that call it.
    detections : int
        Detections per image (:func:`fixed_detections`).

    Attributes
    ----------
    images : int
        Images it was called on.
    wall_s, cpu_s : float
        Wall and CPU seconds of the threads in its calls (the CPU should be near 0).
    """

    def __init__(self, *, ms, detections):
        self.seconds_per_image = ms / 1000
        self.fixed = [torch.from_numpy(a) for a in fixed_detections(detections)]
        self.on_device = {}
        self.images, self.wall_s, self.cpu_s = 0, 0.0, 0.0
        self.device = threading.Lock()

    def __call__(self, canvas, image_sizes):
        """ROI-head outputs for a canvas, as ``Predictor.forward`` returns them."""
        wall, cpu = time.perf_counter(), time.thread_time()
        with self.device:
            time.sleep(self.seconds_per_image * len(image_sizes))
        device = canvas.device
        if device not in self.on_device:
            self.on_device[device] = [t.to(device) for t in self.fixed]
        boxes, class_ids, scores, masks = self.on_device[device]
        outputs = []
        for height, width in image_sizes:
            scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
            # Fresh tensors per image, as a forward pass returns.
            outputs.append({"boxes": boxes * scale, "labels": class_ids.clone(),
                            "scores": scores.clone(), "masks": masks[:, None].clone()})
        self.images += len(image_sizes)
        self.wall_s += time.perf_counter() - wall
        self.cpu_s += time.thread_time() - cpu
        return outputs


@contextlib.contextmanager
def network_replaced_by(stand_in, concurrent_batches=ACCELERATOR_BATCHES):
    """``Predictor.forward``, segpipe's seam for the network alone, calls ``stand_in``.

    The stand-in stands for an accelerator, so the runner treats the model as it treats
    one on a GPU: as many batches in its device stage at once (``concurrent_batches``)
    as on a GPU, not the CPU's one, unless told otherwise (``--device-batches``), and
    whole batches through the predictor, not the CPU's one image at a time
    (``Predictor.one_at_a_time``).
    """
    with mock.patch.object(Predictor, "forward",
                           lambda predictor, canvas, image_sizes: stand_in(canvas, image_sizes)), \
            mock.patch.object(MaskRCNN, "concurrent_batches", concurrent_batches), \
            mock.patch.object(Predictor, "one_at_a_time", False):
        yield


def parse_size(text):
    """``WxH`` (width x height, as image sizes are written) as (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT, e.g. 1024x768, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def stand_in_layout(args, device):
    """Loader workers and writers for the stand-in runs.

    On CUDA, what the options say (``auto``: the runner's own choice). On the CPU, ``auto``
    means the runner's GPU layout (half the job's threads decode, the rest but one write),
    not its CPU one (all inline, for a forward pass that needs every core): the stand-in
    stands for a GPU.
    """
    if device.type == "cuda":
        return args.workers, args.writers
    workers = max(1, args.threads // 2) if args.workers == "auto" else args.workers
    writers = max(1, args.threads - workers - 1) if args.writers == "auto" else args.writers
    return workers, writers


def stand_in_call(args, work, name, ids, settings, detections, *, keep=False):
    """:func:`run` with a fresh stand-in in the network's place; its results and the
    stand-in (which counts what it was called on)."""
    stand_in = StandInNetwork(ms=args.stand_in, detections=detections)
    with network_replaced_by(stand_in, args.device_batches):
        stats, cpu, inst = run(work, name, ids, settings, args.threads, keep=keep)
    return stats, cpu, inst, stand_in


def stand_in_result(args, sizes, batch, detections, full, warm, n_warm):
    """One row's figures from the measured call ``full`` and the warm-up call ``warm``.

    Host CPU per image is marginal: the measured call's CPU less the warm-up call's, over
    the difference in images, so that what every call pays once (model building, process
    start-up, the tables' headers) drops out.
    """
    (stats, cpu, inst, stand_in), (_, warm_cpu, _, _) = full, warm
    n = stats["images"]
    extra = n - n_warm
    if extra > 0:
        main_s = (cpu["own"] - warm_cpu["own"]) / extra
        children_s = (cpu["children"] - warm_cpu["children"]) / extra
    else:  # no warm-up to subtract: an upper bound
        main_s, children_s = cpu["own"] / n, cpu["children"] / n
    host_s = main_s + children_s
    rate = n / stats["loop_s"]
    stand_in_rate = 1000 / args.stand_in
    cpu_rate = cores() / host_s if host_s > 0 else float("inf")
    target = 0.9 * min(stand_in_rate, cpu_rate)
    others = cpu.get("machine", 0.0) - cpu["own"] - cpu["children"]
    return {
        "sizes": ", ".join(f"{w}x{h}" for h, w in sizes), "batch": batch,
        "detections": detections, "instances_per_image": inst, "images": n,
        "rate": rate, "job_rate": n / stats["wall_s"], "stand_in_rate": stand_in_rate,
        "host_cpu_s": host_s, "main_cpu_s": main_s, "children_cpu_s": children_s,
        "cpu_rate": cpu_rate, "target": target, "passed": rate >= target,
        "serial_rate": 1 / (args.stand_in / 1000 + main_s),
        "stand_in_images": stand_in.images, "stand_in_cpu_s": stand_in.cpu_s / n,
        "others_cores": max(0.0, others) / stats["wall_s"] if "machine" in cpu else None,
        "stage_s": {s: stats[f"{s}_s"] / n for s in ("decode", *STAGES)},
        "workers": stats["workers"], "writers": stats["writers"],
    }


def verdict(r):
    """The pass line of one result."""
    return (f"{'PASS' if r['passed'] else 'FAIL'}: {r['rate']:.1f} images/s "
            f"{'>=' if r['passed'] else '<'} 90% of min(stand-in {r['stand_in_rate']:.1f}, "
            f"{cores()} cores / {r['host_cpu_s']:.4f} host CPU s per image = "
            f"{r['cpu_rate']:.1f}) = {r['target']:.1f} images/s")


STAND_IN_RATES = ["sizes", "batch", "inst/img", "stand-in img/s", "img/s loop", "img/s job",
                  "host CPU ms/img", "cores / CPU img/s", "90% target img/s", "verdict",
                  "main-process bound img/s"]
STAND_IN_STAGES = (["sizes", "batch", "inst/img"] + [f"{s} ms" for s in ("decode", *STAGES)]
                   + ["CPU main ms", "CPU loaders+writers ms", "CPU stand-in ms",
                      "others' cores"])


def stand_in_rows(r):
    """The cells of one result in the rates table and in the stages table."""
    common = [r["sizes"], str(r["batch"]), f"{r['instances_per_image']:.0f}"]
    rates = common + [
        f"{r['stand_in_rate']:.1f}", f"{r['rate']:.1f}", f"{r['job_rate']:.1f}",
        f"{1000 * r['host_cpu_s']:.1f}", f"{r['cpu_rate']:.1f}", f"{r['target']:.1f}",
        "PASS" if r["passed"] else "FAIL", f"{r['serial_rate']:.1f}",
    ]
    others = "n/a" if r["others_cores"] is None else f"{r['others_cores']:.2f}"
    stages = common + [f"{1000 * v:.1f}" for v in r["stage_s"].values()] + [
        f"{1000 * r['main_cpu_s']:.1f}", f"{1000 * r['children_cpu_s']:.1f}",
        f"{1000 * r['stand_in_cpu_s']:.2f}", others,
    ]
    return rates, stages


def stand_in_main(args, argv):
    """The ``--stand-in`` runs: one row per (batch size, detections)."""
    device = resolve_device(args.device)
    sizes = args.size or [parse_size(s) for s in STAND_IN_SIZES]
    batch_sizes = args.batch_sizes or [16]
    workers, writers = stand_in_layout(args, device)
    load_start = os.getloadavg()[0]
    results = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ids = make_images(work / "images", args.n_images, sizes)
        for batch, detections in itertools.product(batch_sizes, args.detections):
            settings = settings_for(args, batch=batch, amp=True, detections=detections)
            settings.update(workers=workers, writers=writers)
            # One full batch per canvas bucket, at most half the images: the warm-up
            # call's one-off costs are the measured call's.
            n_warm = max(1, min(len(ids) // 2, batch * len(sizes)))
            keep = args.work is not None
            if not results:
                # What only a process's first call pays (imports, libraries' first use)
                # would make the warm-up call dearer than the measured one.
                stand_in_call(args, work, "warm", ids[:n_warm], settings, detections)
            warm = stand_in_call(args, work, "warm", ids[:n_warm], settings, detections)
            full = stand_in_call(args, work, f"b{batch}-d{detections}", ids, settings,
                                 detections, keep=keep)
            results.append(stand_in_result(args, sizes, batch, detections, full, warm, n_warm))
            print(verdict(results[-1]), flush=True)
    rows = [stand_in_rows(r) for r in results]
    command = "python benchmarks/bench_maskrcnn.py " + " ".join(sys.argv[1:] if argv is None else argv)
    size_list = ", ".join(f"{w}x{h}" for h, w in sizes)
    layout = (f"loader workers {results[0]['workers']}, writers {results[0]['writers']}"
              if results else "")
    where = ("GPU time" if device.type == "cuda"
             else "on the CPU here, so host work that a GPU would do")
    body = f"""## Mask R-CNN pipeline with a stand-in network (benchmarks/bench_maskrcnn.py --stand-in)

- Command: `{command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine(device)}; {cores()} cores for this process.
- Load average (1 min): {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.
- Each row: one call of `run_shard_job` (what the rule runs) over {args.n_images} generated
  JPEGs ({size_list}, in turn), with `Predictor.forward` (the network's forward pass and
  nothing else) replaced by a stand-in that sleeps {args.stand_in:g} ms per image, using no
  CPU, as a host waits for a GPU. It returns the same detections on every image, at the
  image's scale: box sides log-uniform from 2% to 60% of the image's, 28x28 mask
  probabilities as the mask head gives them before the paste. Everything else runs as in
  production: loader workers decode, canvas buckets fill, the canvas is prepared, the masks
  are pasted and summarised and copied to the host, writer processes write the label PNGs,
  RLE, statistics and rows, and the Parquet tables are written. Device {device}; {layout};
  job threads {args.threads}; device stage {args.device_batches} batches at once; min/max size {args.min_size}/{args.max_size}; canvas step
  {args.canvas_step}.
- *img/s loop*: images / the runner's image loop (model building and process start-up
  left out); *img/s job*: images / the whole call. *Host CPU ms/img*: CPU time of the main
  process (all its threads) and of its loader and writer processes, marginal: the call's
  less that of a warm-up call on its first images, over the difference in images.
  *90% target*: 90% of min(the stand-in's rate, cores / host CPU seconds per image); PASS
  when img/s loop reaches it. *Main-process bound*: 1 / (the stand-in's seconds + the main
  process's CPU seconds per image), the rate of a main process that waits for the network
  and does its own work in turn, with nothing overlapped.
- Stages in ms per image, from the runner's stats: *decode* and *finish* summed over the
  loader and writer processes, which run in parallel; *wait_loader* and *wait_writers* the
  main process waiting for them; *prepare*, *forward* (the stand-in), *postprocess* (paste,
  label images, runs) and *copy*, the predictor's stages in the main process
  ({where}).
  *CPU main* and *CPU loaders+writers*: the two parts of the host CPU; *CPU stand-in*: the
  main process's CPU inside the stand-in; *others' cores*: the CPU that other processes on
  the machine took during the call, in cores.
- Not modelled: the host's own work in a real forward pass (launching its kernels).

{markdown_table(STAND_IN_RATES, [rates for rates, _ in rows])}

{markdown_table(STAND_IN_STAGES, [stages for _, stages in rows])}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_section(args.out, "maskrcnn-stand-in", body)
    print(f"written to {args.out}")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--n-images", "--images", type=int, default=256,
                   help="images per measured call")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="default 16 32 8 1; with --stand-in, 16")
    p.add_argument("--detections", type=int, nargs="+", default=[10, 100])
    p.add_argument("--precisions", nargs="+", default=["amp", "fp32"], choices=["fp32", "amp"])
    p.add_argument("--sizes", nargs="+", default=["mixed", "one"], choices=sorted(SIZES))
    p.add_argument("--size", nargs="+", type=parse_size, metavar="WxH",
                   help="image sizes, taken in turn, instead of --sizes (with --stand-in, "
                        f"default {' '.join(STAND_IN_SIZES)})")
    p.add_argument("--stand-in", type=float, metavar="MS",
                   help="replace the network by a stand-in taking MS ms per image")
    p.add_argument("--work", type=Path,
                   help="with --stand-in: keep the images and each row's outputs here "
                        "(out-b<batch>-d<detections>/)")
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
    p.add_argument("--device-batches", type=int, default=ACCELERATOR_BATCHES, metavar="N",
                   help="with --stand-in: batches in the runner's device stage at once "
                        f"(default {ACCELERATOR_BATCHES}, as on a GPU)")
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: 4 images, sizes 64..96, batch 2, fp32, 5 detections")
    args = p.parse_args(argv)
    if args.stand_in is not None and args.stand_in <= 0:
        p.error(f"--stand-in must be positive (milliseconds per image), got {args.stand_in:g}")
    if args.work is not None and args.stand_in is None:
        p.error("--work is for --stand-in runs")
    if args.quick:
        args.n_images, args.batch_sizes, args.precisions = 4, [2], ["fp32"]
        args.detections, args.min_size, args.max_size = [5], 64, 96
        if args.stand_in is not None:
            args.size = args.size or [(48, 64), (64, 48)]
        args.out = ROOT / "benchmarks/_work/benchmarks-quick.md"
    if args.stand_in is not None:
        return stand_in_main(args, argv)
    args.batch_sizes = args.batch_sizes or [16, 32, 8, 1]
    sizes_of = dict(SIZES)
    if args.size:
        sizes_of["custom"] = args.size
        args.sizes = ["custom"]
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        args.precisions = ["fp32"]  # autocast is CUDA-only in segpipe
    started = time.perf_counter()
    configs = [
        {"precision": precision, "sizes": sizes, "batch": batch}
        for precision, batch, sizes in itertools.product(args.precisions, args.batch_sizes,
                                                         args.sizes)
    ]
    rows, skipped = [], []
    print(" | ".join(HEADER), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            work = Path(tmp) / config["sizes"]
            if not (work / "images").exists():
                ids = make_images(work / "images", args.n_images, sizes_of[config["sizes"]])
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
                stats, _, inst = run(work, "run", ids, settings, args.threads)
                rows.append(row_of(config, stats, inst, cuda))
                print(" | ".join(rows[-1]), flush=True)
                if cuda:
                    torch.cuda.empty_cache()
    command = "python benchmarks/bench_maskrcnn.py " + " ".join(sys.argv[1:] if argv is None else argv)
    custom = f"; `custom`: {', '.join(f'{w}x{h}' for h, w in args.size)}" if args.size else ""
    body = f"""## Mask R-CNN throughput, end to end (benchmarks/bench_maskrcnn.py)

- Command: `{command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine(device)}
- Each row: one call of `run_shard_job` (what the rule runs) over {args.n_images} generated
  JPEGs, after a warm-up call on a few of them. Model {args.model}, random weights (`none`),
  score threshold 0 (so `max_detections` instances per image), min/max size
  {args.min_size}/{args.max_size}, canvas step {args.canvas_step}, AMP dtype {args.amp_dtype},
  channels_last {not args.no_channels_last}, job threads {args.threads}, workers
  {args.workers}, writers {args.writers}. Sizes `one`: 640x480; `mixed`: {len(SIZES['mixed'])}
  sizes, both orientations{custom}.
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
