"""Training benchmarks (issue 21): step throughput, the synthetic-ellipse check, DSB.

Three parts, each writing its table into docs/benchmarks.md:

``throughput``
    Training steps (forward, backward, optimiser) per second on random crops of
    ``--crop`` pixels, in images per second, with peak memory: CUDA's allocator peak on
    a GPU, the process's max RSS on the CPU. The data come from the seeded ellipse
    generator, decoded and augmented in the main process before the clock starts, so
    the figure is the network's. Example on a GPU::

        python benchmarks/bench_train.py throughput --device cuda --crop 512 --batch 8

``ellipses``
    The issue's acceptance run through the workflow: 60 training images of 160x160
    (benchmarks/make_ellipses.py; a seeded 20% of them validate), then 24 unseen images
    segmented and scored in the same `segpipe run`, by the trained model and by an
    untrained one (random weights) and Otsu. Reports the wall time of the run and of the
    training job, the methods' AP50, and the validation AP per epoch.

``dsb``
    The 60 DSB 2018 development images (``--dsb DIR`` with images/ and masks/): 45
    train (a seeded 20% of them validate), 15 are held out and scored against
    watershed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _bench import ROOT, machine, markdown_table, now, revision, write_section

DOCS = ROOT / "docs" / "benchmarks.md"
WORK = ROOT / "benchmarks" / "_work" / "train"
# The acceptance settings.
ACCEPTANCE = {"base": "none", "backbone": "resnet18", "epochs": 30, "batch_size": 4,
              "rois_per_image": 128, "proposals_per_image": 300, "device": "cpu"}


def throughput(args: argparse.Namespace) -> None:
    import resource

    import torch
    from make_ellipses import ellipse_image

    from segpipe.maskrcnn.model import SMALL_CHANNELS, build_network
    from segpipe.training.augment import augment, crop_rng, targets_of
    from segpipe.training.settings import default_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    arch = {"model": args.model or default_model(args.backbone), "backbone": args.backbone,
            "num_classes": 2, "pretrained_layout": False, "min_size": None, "max_size": None}
    if args.channels is not None:
        arch["channels"] = args.channels
    net = build_network(arch, rois_per_image=args.rois, proposals_per_image=args.proposals)
    net.to(device).train()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    rng = np.random.default_rng(0)
    batches = []
    options = {"flip": True, "rotate90": True, "scale": 0.0, "intensity": 0.2}
    for b in range(args.distinct):
        xs, targets = [], []
        for i in range(args.batch):
            image, labels = ellipse_image(rng, args.crop)
            x, cut = augment(np.dstack([image] * 3), labels.astype(np.int32),
                             crop_rng(0, b, i), crop_size=args.crop, settings=options)
            t = targets_of(cut, np.ones(int(cut.max()) + 1, np.int64))
            xs.append(torch.from_numpy(x).to(device))
            targets.append({k: torch.from_numpy(v).to(device) for k, v in t.items()})
        batches.append((xs, targets))

    def step(xs, targets):
        with torch.autocast(device_type=device.type, dtype=torch.float16,
                            enabled=scaler.is_enabled()):
            loss = sum(net(xs, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for k in range(args.warmup):
        step(*batches[k % len(batches)])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for k in range(args.iterations):
        step(*batches[k % len(batches)])
    sync()
    seconds = time.perf_counter() - start
    rate = args.iterations * args.batch / seconds
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB (CUDA)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB (RSS)"
    width = args.channels or (256 if args.backbone == "resnet50" else SMALL_CHANNELS)
    row = [arch["backbone"], arch["model"], width, args.crop, args.batch,
           "on" if scaler.is_enabled() else "off", args.rois, args.proposals,
           f"{rate:.1f}", f"{seconds / args.iterations * 1000:.0f}", peak,
           "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]), now(), revision()]
    print(json.dumps(row))
    # Each command keeps its own row (keyed by its settings); the table shows them all.
    kind = args.device.split(":")[0]
    store = WORK / f"throughput-{kind}.json"
    rows = json.loads(store.read_text()) if store.exists() else {}
    rows[json.dumps(row[:8])] = row
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(rows, indent=1))
    header = ["backbone", "model", "channels", "crop", "batch", "AMP", "rois", "proposals",
              "images/s", "ms/step", "peak memory", "command", "date", "code"]
    body = (f"## Training steps per second, {kind} (benchmarks/bench_train.py throughput)\n\n"
            f"- Machine: {machine(device)}\n"
            f"- Each row: one command (in the row), {args.iterations} steps timed after "
            f"{args.warmup} warm-up steps (as the command says), random weights, crops of "
            "synthetic ellipses (about 3 to 12 objects per 160 px); forward, backward and "
            "SGD step, data already on the device. *channels*: the FPN and heads' width.\n\n"
            + markdown_table(header, [[*r[:11], f"`{r[11]}`", *r[12:]]
                                      for r in rows.values()]))
    write_section(DOCS, f"train-throughput-{kind}", body)


def _run(work: Path, config: dict, images: Path, cores: int) -> tuple[Path, float]:
    """`segpipe run` of ``images`` with ``config`` into ``work/out``: the folder and the
    wall time."""
    import yaml

    (work / "config.yaml").write_text(yaml.safe_dump(config))
    out = work / "out"
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "segpipe.cli", "run", str(images),
                            "--config", str(work / "config.yaml"), "--out", str(out),
                            "-j", str(cores)],
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if code:
        raise SystemExit(f"segpipe run failed ({code}); see {out / 'logs'}")
    return out, time.perf_counter() - start


def _train_job_seconds(out: Path, name: str) -> float:
    bench = out / "logs" / "train_maskrcnn" / f"{name}.benchmark.tsv"
    lines = bench.read_text().splitlines()
    return float(lines[1].split("\t")[0])


def _method_rows(out: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "results" / "summary" / "methods.parquet")
    return {r["method"]: r for r in table.to_pylist()}


def _history(out: Path, name: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "results" / "models" / name / "history.parquet").to_pylist()


def _fmt(value: float | None) -> str:
    import math

    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def ellipses(args: argparse.Namespace) -> None:
    from make_ellipses import write_set

    work = WORK / "ellipses"
    shutil.rmtree(work, ignore_errors=True)
    write_set(work / "data", train=60, test=24, size=160, seed=args.seed)
    data = work / "data"
    config = {
        "ground_truth_dir": str(data / "test" / "masks"),
        "primary_metric": "coco_ap50",
        "train": {"ellipses": {"input_dir": str(data / "train" / "images"),
                               "ground_truth_dir": str(data / "train" / "masks"),
                               **ACCEPTANCE}},
        "methods": {
            "trained": {"kind": "maskrcnn", "weights": {"trained": "ellipses"},
                        "device": "cpu"},
            "untrained": {"kind": "maskrcnn", "weights": "none", "device": "cpu",
                          "min_size": 160, "max_size": 160},
            "otsu": {"kind": "threshold", "method": "otsu"},
        },
    }
    out, wall = _run(work, config, data / "test" / "images", args.cores)
    rows = _method_rows(out)
    history = _history(out, "ellipses")
    card = json.loads((out / "results" / "models" / "ellipses" / "model.json").read_text())
    table = markdown_table(
        ["method", "AP50", "AP", "AP75", "object F1 @0.5"],
        [[m, _fmt(rows[m]["coco_ap50"]), _fmt(rows[m]["coco_ap"]), _fmt(rows[m]["coco_ap75"]),
          _fmt(rows[m].get("object_f1_50_mean"))] for m in ("trained", "untrained", "otsu")])
    curve = markdown_table(
        ["epoch", "loss", "val loss", "val AP", "val AP50", "s"],
        [[r["epoch"], f"{r['loss']:.3f}", f"{r['val_loss']:.3f}", f"{r['val_ap']:.3f}",
          f"{r['val_ap50']:.3f}", f"{r['seconds']:.1f}"] for r in history
         if r["epoch"] in (1, 2, 3, 5, 10, 15, 20, 25, 30) or r["epoch"] == card["best"]["epoch"]])
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
    body = (
        "## Training on synthetic ellipses, then scoring unseen images (benchmarks/bench_train.py ellipses)\n\n"
        f"- Command: `{command}` (alone on the machine)\n- Date: {now()}; code: {revision()}\n"
        f"- Machine: {machine()}\n"
        f"- One `segpipe run -j {args.cores}`: train `{json.dumps(ACCEPTANCE)}` on 60 images of "
        f"160x160 ({card['counts']['train']} train, {card['counts']['val']} validation), then segment "
        "24 unseen images with the trained model, an untrained one (random weights, "
        "min/max size 160) and Otsu, and score them.\n"
        f"- Wall time of the whole run: **{wall / 60:.1f} min**; the training job: "
        f"**{_train_job_seconds(out, 'ellipses') / 60:.1f} min**. Best epoch "
        f"{card['best']['epoch']} (val AP {card['best']['val_ap']:.3f}).\n\n"
        + table + "\n\nValidation per epoch (history.parquet):\n\n" + curve)
    write_section(DOCS, "train-ellipses", body)
    print(body)


def dsb(args: argparse.Namespace) -> None:

    from segpipe.training.data import list_image_ids

    source = Path(args.dsb)
    work = WORK / ("dsb-" + "-".join(map(str, args.anchors)))
    shutil.rmtree(work, ignore_errors=True)
    ids = list_image_ids(source / "images", include=None, exclude=[])
    held = set(ids[::4])  # every fourth image, by name: 15 of 60
    for split in ("train", "test"):
        for sub in ("images", "masks"):
            (work / split / sub).mkdir(parents=True)
    for rel in ids:
        split = "test" if rel in held else "train"
        mask = next((source / "masks").glob(Path(rel).stem + ".*"))
        os.symlink(source / "images" / rel, work / split / "images" / rel)
        os.symlink(mask, work / split / "masks" / mask.name)
    model = {"input_dir": str(work / "train" / "images"),
             "ground_truth_dir": str(work / "train" / "masks"),
             "base": "none", "backbone": args.backbone, "epochs": args.epochs,
             "batch_size": 4, "crop_size": args.crop, "rois_per_image": 128,
             "proposals_per_image": 300, "device": args.device,
             "anchor_sizes": args.anchors}
    config = {"ground_truth_dir": str(work / "test" / "masks"), "primary_metric": "coco_ap50",
              "train": {"dsb": model},
              "methods": {"trained": {"kind": "maskrcnn", "weights": {"trained": "dsb"},
                                      "device": args.device},
                          "watershed": {"kind": "watershed"}}}
    out, wall = _run(work, config, work / "test" / "images", args.cores)
    rows = _method_rows(out)
    card = json.loads((out / "results" / "models" / "dsb" / "model.json").read_text())
    table = markdown_table(
        ["method", "AP50", "AP", "object F1 @0.5", "object F1 mean"],
        [[m, _fmt(rows[m]["coco_ap50"]), _fmt(rows[m]["coco_ap"]),
          _fmt(rows[m].get("object_f1_50_mean")), _fmt(rows[m].get("object_f1_mean_mean"))]
         for m in ("trained", "watershed")])
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
    body = (
        f"## DSB 2018: a model trained on 45 development images against watershed, anchors {args.anchors} (benchmarks/bench_train.py dsb)\n\n"
        f"- Command: `{command}` (alone on the machine)\n- Date: {now()}; code: {revision()}\n"
        f"- Machine: {machine()}\n"
        f"- Base `none` (no COCO weights can be fetched here), backbone {args.backbone}, "
        f"{args.epochs} epochs, crops of {args.crop} px, batch 4, rois 128, proposals 300, "
        f"anchor sizes {args.anchors}; "
        f"{card['counts']['train']} train and {card['counts']['val']} validation images; "
        "every fourth image by name (15) held out, segmented and scored.\n"
        f"- Wall time: **{wall / 60:.1f} min**, training job "
        f"**{_train_job_seconds(out, 'dsb') / 60:.1f} min**; best epoch "
        f"{card['best']['epoch']} (val AP {card['best']['val_ap']:.3f}).\n\n" + table)
    write_section(DOCS, "train-dsb-anchors-" + "-".join(map(str, args.anchors)), body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    t = parts.add_parser("throughput")
    t.add_argument("--device", default="cuda")
    t.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet18", "resnet34"])
    t.add_argument("--model", default=None)
    t.add_argument("--channels", type=int, default=None,
                   help="FPN and head width of resnet18/34 (default: segpipe's, 128)")
    t.add_argument("--crop", type=int, default=512)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--rois", type=int, default=512)
    t.add_argument("--proposals", type=int, default=2000)
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--iterations", type=int, default=30)
    t.add_argument("--warmup", type=int, default=5)
    t.add_argument("--distinct", type=int, default=4, help="distinct batches cycled")
    t.set_defaults(func=throughput)
    e = parts.add_parser("ellipses")
    e.add_argument("--cores", type=int, default=2)
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=ellipses)
    d = parts.add_parser("dsb")
    d.add_argument("--dsb", default=str(ROOT.parent / "shared" / "data" / "dsb2018-dev"))
    d.add_argument("--cores", type=int, default=2)
    d.add_argument("--device", default="cpu")
    d.add_argument("--backbone", default="resnet18")
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--crop", type=int, default=256)
    d.add_argument("--anchors", type=int, nargs=5, default=[32, 64, 128, 256, 512])
    d.set_defaults(func=dsb)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    args.func(args)


if __name__ == "__main__":
    main()
