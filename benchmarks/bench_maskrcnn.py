"""Mask R-CNN throughput, end to end, without Snakemake.

Runs segpipe's own Mask R-CNN path (DataLoader decoding, batched forward passes, masks
thresholded on the device, one copy to the host per pass, instance label image, COCO RLE
with pycocotools, PNG writing) over synthetic 640x480 JPEGs, at several batch sizes, in
fp32 and with AMP, and writes a table with the time split by stage into
docs/benchmarks.md (section between the maskrcnn markers).

It needs torch, torchvision, numpy, Pillow, OpenCV and pycocotools, and finds segpipe in
../src, so it runs on a GPU machine that has no Snakemake:

    python benchmarks/bench_maskrcnn.py --device cuda --n-images 512
    python benchmarks/bench_maskrcnn.py --quick          # a CPU smoke run, about a minute

With ``--weights DEFAULT`` the pretrained file must already be in resources/weights
(``snakemake fetch_maskrcnn_weights`` or a copy). Random weights (``none``) detect
``--max-detections`` junk objects per image, which makes mask pasting and RLE costlier
than on real photographs: the table says which weights each row used.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from segpipe.imageio import write_png  # noqa: E402
from segpipe.maskrcnn.inference import predict, to_model_input  # noqa: E402
from segpipe.maskrcnn.model import build_model, resolve_device  # noqa: E402
from segpipe.maskrcnn.shard import ImageFiles, encode_rles  # noqa: E402

START, END = "<!-- maskrcnn:start -->", "<!-- maskrcnn:end -->"
STAGES = ("wait_decode", "inference", "label_image", "rle", "write")


def make_images(folder, n, size=(640, 480), seed=0):
    """Synthetic photographs: smooth colour gradients with filled ellipses, as JPEG."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    ids = []
    for i in range(n):
        base = np.linspace(rng.integers(0, 120, 3), rng.integers(120, 255, 3), w, dtype=np.float32)
        image = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            dx, dy = int(rng.integers(30, 200)), int(rng.integers(30, 200))
            draw.ellipse([x, y, x + dx, y + dy], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        name = f"img{i:05d}.jpg"
        image.save(folder / name, quality=90)
        ids.append(name)
    return ids


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(net, device, folder, ids, *, batch_size, amp, workers, out_dir):
    """One pass over the images; returns total wall seconds and seconds per stage."""
    loader = DataLoader(ImageFiles(folder, ids), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda", collate_fn=list)
    stages = dict.fromkeys(STAGES, 0.0)
    n_instances = 0
    sync(device)
    start = time.perf_counter()
    mark = start
    for batch in loader:
        t0 = time.perf_counter()
        stages["wait_decode"] += t0 - mark
        tensors = [to_model_input(item[1], device) for item in batch]
        results = predict(net, tensors, mask_threshold=0.5, amp=amp)
        t1 = time.perf_counter()
        stages["inference"] += t1 - t0
        for (index, *_), inst in zip(batch, results):
            ta = time.perf_counter()
            labels = inst.label_image()
            tb = time.perf_counter()
            encode_rles(inst.masks)
            tc = time.perf_counter()
            write_png(out_dir / f"{index}.png", labels)
            td = time.perf_counter()
            stages["label_image"] += tb - ta
            stages["rle"] += tc - tb
            stages["write"] += td - tc
            n_instances += len(inst)
        mark = time.perf_counter()
    sync(device)
    return time.perf_counter() - start, stages, n_instances / len(ids)


def machine(device):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (f"GPU: {gpu}; CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}")


def table(rows):
    head = ("| device | weights | precision | batch | images/s | inst/img | "
            + " | ".join(f"{s} ms/img" for s in STAGES) + " |")
    lines = [head, "|" + "---|" * (6 + len(STAGES))]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['weights']} | {r['precision']} | {r['batch']} | "
            f"{r['ips']:.1f} | {r['inst']:.1f} | "
            + " | ".join(f"{1000 * r['stages'][s] / r['n']:.1f}" for s in STAGES) + " |"
        )
    return "\n".join(lines)


def write_section(path, command, device, rows, note):
    body = "\n".join([
        START,
        "## Mask R-CNN throughput (benchmarks/bench_maskrcnn.py)",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Machine: {machine(device)}",
        "",
        "End to end = decoding in DataLoader workers, forward pass (torchvision's mask "
        "pasting included), thresholding and one copy to the host per pass, instance label "
        "image, COCO RLE of every instance (pycocotools), PNG writing. `wait_decode` is time "
        "the main loop waited for the loader. Synthetic 640x480 JPEGs.",
        "",
        table(rows),
        "",
        note,
        END,
    ])
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text:
        text = text[: text.index(START)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--precisions", nargs="+", default=["fp32", "amp"], choices=["fp32", "amp"])
    p.add_argument("--model", default="maskrcnn_resnet50_fpn_v2")
    p.add_argument("--weights", default="none")
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="4 images, batch 1 and 2, fp32")
    args = p.parse_args(argv)
    if args.quick:
        args.n_images, args.batch_sizes, args.precisions = 4, [1, 2], ["fp32"]
    device = resolve_device(args.device)
    if device.type != "cuda":
        # autocast is CUDA-only in segpipe: on the CPU "amp" would repeat fp32.
        args.precisions = ["fp32"]
    torch.backends.cudnn.benchmark = True
    net, _ = build_model(model=args.model, weights=args.weights, seed=0, score_threshold=0.5,
                         max_detections=args.max_detections, min_size=800, max_size=1333,
                         device=device, weights_dir=str(ROOT / "resources/weights"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = make_images(tmp / "images", args.n_images)
        warm = ids[: max(args.batch_sizes)]
        for precision in args.precisions:
            amp = precision == "amp"
            for batch in args.batch_sizes:
                run_once(net, device, tmp / "images", warm, batch_size=batch, amp=amp,
                         workers=args.workers, out_dir=tmp)  # warm-up: cudnn, allocator
                wall, stages, inst = run_once(net, device, tmp / "images", ids, batch_size=batch,
                                              amp=amp, workers=args.workers, out_dir=tmp)
                row = dict(device=device.type, weights=args.weights, precision=precision,
                           batch=batch, ips=len(ids) / wall, inst=inst, stages=stages,
                           n=len(ids))
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    note = (f"{args.n_images} images per row after a warm-up pass; model {args.model}, "
            f"score threshold 0.5, min/max size 800/1333, {args.workers} loader workers.")
    command = "python benchmarks/bench_maskrcnn.py " + " ".join(sys.argv[1:])
    write_section(args.out, command.strip(), device, rows, note)


if __name__ == "__main__":
    main()
