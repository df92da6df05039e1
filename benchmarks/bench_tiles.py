"""Seconds and peak memory per megapixel of every per-image kind, tiled and whole, as images grow.

Each kind segments a square synthetic nuclei image (``make_large_nuclei.py``: a tiled,
zlib-compressed BigTIFF, about one nucleus per 1,880 pixels) of each size, once tiled
(``tiles: {size: 2048, overlap: 128}``) and once whole (``tiles: null``), along the path a
segment job takes: ``segpipe.sources.open_image``, then ``spec.tiled(source, tiling=...,
threads=1, **settings)`` or ``spec.segment(image, **settings)``, then the mask written to a ``.tif``
(``segpipe.imageio.write_labels``, or block by block from disk for a tiled run:
``segpipe.tiled_finish.write_mask``); one thread, after the job's warm-up call.
Each measurement runs in a process of its own; its peak memory is that process's maximum
resident set (``ru_maxrss``, read by a small launcher that waits for it), the interpreter
and libraries included.

A whole run is skipped, with the reason, when the kind's ``MethodSpec.bytes_per_pixel``
times the pixels, plus 0.5 GB for the interpreter, is over 80% of the machine's memory
(``--memory-gb``); a kind without ``MethodSpec.tiled`` yet is reported as not tiled.
Whole images over ``max_image_pixels``' default (2.5e8) are read with the limit lifted.

Writes its table to ``docs/benchmarks.md``, in the ``## Tiles`` section between the
``tiles`` markers (appended when absent). The images are made once, under
``benchmarks/_work/tiles``.

    .venv/bin/python benchmarks/bench_tiles.py                     # 16, 64, 340 MP
    .venv/bin/python benchmarks/bench_tiles.py --sizes 16 --kinds threshold watershed
    .venv/bin/python benchmarks/bench_tiles.py --quick             # smoke test, to benchmarks/_work
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from _bench import ROOT, cpu_seconds, machine, markdown_table, now, revision, write_section

WORK = ROOT / "benchmarks/_work"
KINDS = ("threshold", "multi_threshold", "edges", "kmeans", "watershed", "region_growing",
         "superpixels")
# Settings beyond the schema's defaults.
SETTINGS = {
    "threshold": {"method": "otsu"},
    "multi_threshold": {"classes": 3},
    "edges": {"operator": "sobel"},
    "kmeans": {"k": 2},
    # 5,000 superpixels: enough for 340 MP tiled at 2048 (tiled SLIC needs 4 a core).
    "superpixels": {"algorithm": "slic", "n_segments": 5000},
}
SIZES_MP = (16.0, 64.0, 340.0)
TILES = {"size": 2048, "overlap": 128}
QUICK_SIZES_MP = (0.25, 1.0)
QUICK_TILES = {"size": 256, "overlap": 32}
# What a process holds before any image (the interpreter, NumPy, OpenCV, scikit-image...),
# as segpipe.sources.open_image assumes, and the share of the machine's memory a whole
# run may be predicted to take: the rest is for the system and whatever else runs.
INTERPRETER_GB = 0.5
MEMORY_SHARE = 0.8

# Runs the measurement (its arguments) and prints its exit status and peak memory. Linux
# counts the memory of the process that started a program in the program's ru_maxrss
# (exec keeps the old address space's high-water mark): started from this script, which
# holds the images' generator and torch's libraries, each child would report this
# script's peak. A small launcher between them keeps that to a few megabytes.
LAUNCHER = """
import json, resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
print(json.dumps({"rc": rc, "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

CHILD = """
import json, resource, sys, tempfile, time
import cv2
import numpy as np
from threadpoolctl import threadpool_limits
from segpipe.image_runner import warm_up
from segpipe.imageio import write_labels
from segpipe.methods import get_method
from segpipe.sources import open_image
from segpipe.tiled_finish import BLOCK, write_mask
from segpipe.tiles import DEFAULT_MAX_TILED_PIXELS, Tiling, tile_grid

args = json.loads(sys.argv[1])
spec, settings = get_method(args["kind"]), args["settings"]
# As a segment job: one thread, and the method's imports and set-up before any image.
cv2.setNumThreads(1)
threadpool_limits(1)
warm_up(spec, settings)
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tiles = Tiling(**args["tiles"]) if args["tiles"] else None
t0 = time.perf_counter()
opened = open_image(args["image"], mode=spec.colour, reading=None, tiles=tiles,
                    bytes_per_pixel=spec.bytes_per_pixel, memory_mb=None, max_pixels=None,
                    max_tiled_pixels=DEFAULT_MAX_TILED_PIXELS, notes=[], info={})
t1 = time.perf_counter()
if opened.tiling is None:
    seg = spec.segment(opened.image, **settings)
else:
    seg = spec.tiled(opened.source, tiling=opened.tiling, threads=1, **settings)
t2 = time.perf_counter()
with tempfile.TemporaryDirectory(dir=args["tmp"]) as tmp:
    if opened.tiling is None:
        write_labels(tmp + "/labels.tif", seg.labels)
        max_label = int(seg.labels.max())
    else:  # labels on disk (segpipe.scratch), written and read block by block
        write_mask(tmp + "/labels.tif", seg.labels)
        max_label = max(int(block.max()) for _, block in
                        seg.labels.blocks(tile_grid(seg.labels.shape, core=BLOCK)))
t3 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "segment_s": t2 - t1, "write_s": t3 - t2,
                  "tiled": opened.tiling is not None, "tiles": seg.tiles,
                  "cut_objects": seg.cut_objects, "max_label": max_label,
                  "base_gb": base_kb * 1024 / 1e9}))
"""


def side_of(megapixels):
    """The side of the square image of at least ``megapixels`` (340 MP: 18,440)."""
    return math.ceil(math.sqrt(megapixels * 1e6))


def nuclei_image(side, work):
    """The ``side`` x ``side`` image of make_large_nuclei (seed 0), made once."""
    import tifffile
    from make_large_nuclei import NucleiField, write

    folder = work / f"{side}"
    image = folder / "nuclei.tif"
    if image.exists() and (folder / "truth/nuclei.tif").exists():
        with tifffile.TiffFile(image) as tif:
            if tif.series[0].shape == (side, side):
                return image
    field = NucleiField(side, side, seed=0)
    print(f"making {image} ({side} x {side}, {field.count} nuclei)", flush=True)
    write(field, folder)
    return image


def machine_memory_gb():
    """The machine's memory (``MemTotal``), in GB; None where /proc/meminfo is missing."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 1e9
    return None


def settings_of(kind):
    """The kind's settings: the schema's defaults and :data:`SETTINGS`, less the
    workflow's own keys."""
    from segpipe.config import load_schema, method_defaults

    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    settings = {**method_defaults(schema, kind), **SETTINGS.get(kind, {})}
    return {k: v for k, v in settings.items() if k not in ("kind", "tiles")}


def measure(kind, image, tiles, settings):
    """Run one measurement in a child process: its JSON result (with ``others_cores``,
    the cores other processes kept busy meanwhile, None where unknown), its peak resident
    memory in GB, and a one-line error (None when it succeeded)."""
    job = {"kind": kind, "image": str(image), "tiles": tiles, "settings": settings,
           "tmp": str(WORK)}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    before, t0 = cpu_seconds(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", CHILD,
                           json.dumps(job)], capture_output=True, text=True, env=env,
                          check=False)
    after, wall = cpu_seconds(), time.perf_counter() - t0
    others = None
    if before["machine"] is not None:
        others = max(0.0, (after["machine"] - before["machine"])
                     - (after["children"] - before["children"])
                     - (after["own"] - before["own"])) / wall
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None, None, f"launcher failed: {done.stderr.strip()[-300:]}"
    launched = json.loads(lines[-1])
    peak_gb = launched["maxrss_kb"] * 1024 / 1e9
    if launched["rc"] != 0:
        errors = done.stderr.strip().splitlines()
        why = (f"killed by signal {-launched['rc']}" if launched["rc"] < 0
               else errors[-1] if errors else f"exit status {launched['rc']}")
        return None, peak_gb, why
    return {**json.loads(lines[-2]), "others_cores": others}, peak_gb, None


def row_of(kind, mode, megapixels, result=None, peak_gb=None, note=""):
    """One table row; a row without a result says only why (``note``)."""
    mp = f"{megapixels:.1f}" if megapixels >= 10 else f"{megapixels:.2f}"
    if result is None:
        return [kind, mode, mp, *["-"] * (len(HEADER) - 4), note]
    seconds = result["read_s"] + result["segment_s"] + result["write_s"]
    if mode == "tiled" and not result["tiled"]:
        note = "; ".join(filter(None, [note, "one tile: segmented whole"]))
    cut = result["cut_objects"]
    others = result["others_cores"]
    return [kind, mode, mp, str(result["tiles"]) if result["tiled"] else "-",
            f"{result['read_s']:.2f}", f"{result['segment_s']:.2f}", f"{result['write_s']:.2f}",
            f"{seconds:.2f}", f"{seconds / megapixels:.3f}", f"{peak_gb:.2f}",
            f"{peak_gb / megapixels:.4f}", f"{result['base_gb']:.2f}", f"{result['max_label']:,}",
            "-" if cut is None else f"{cut:,}", "-" if others is None else f"{others:.2f}",
            note]


HEADER = ["kind", "mode", "MP", "tiles", "read s", "segment s", "write s", "seconds", "s/MP",
          "peak GB", "GB/MP", "base GB", "max label", "cut objects", "others' cores", "note"]


def run(args, done):
    """Every measurement the options ask for: the table's rows, printed as they come and
    handed to ``done`` after each size (a long run's table is kept as it goes)."""
    from segpipe.imageio import DEFAULT_MAX_PIXELS
    from segpipe.methods import get_method

    rows = []
    for mp_asked in args.sizes:
        side = side_of(mp_asked)
        megapixels = side * side / 1e6
        image = nuclei_image(side, WORK / "tiles")
        for kind in args.kinds:
            spec = get_method(kind)
            settings = settings_of(kind)
            for mode in ("tiled", "whole"):
                note, result, peak = "", None, None
                predicted = spec.bytes_per_pixel * megapixels / 1e3 + INTERPRETER_GB
                if mode == "tiled" and spec.tiled is None:
                    note = "not tiled yet (MethodSpec.tiled is None)"
                elif mode == "whole" and args.memory_gb and \
                        predicted > MEMORY_SHARE * args.memory_gb:
                    note = (f"skipped: predicted {predicted:.1f} GB ({spec.bytes_per_pixel:g} "
                            f"B/px) > {MEMORY_SHARE:.0%} of {args.memory_gb:.1f} GB")
                else:
                    tiles = args.tiles if mode == "tiled" else None
                    result, peak, why = measure(kind, image, tiles, settings)
                    note = f"failed: {why}" if why else ""
                    if mode == "whole" and why is None and side * side > DEFAULT_MAX_PIXELS:
                        note = (f"over max_image_pixels ({DEFAULT_MAX_PIXELS:,}): read with "
                                "the limit lifted")
                rows.append(row_of(kind, mode, megapixels, result, peak, note))
                print(" | ".join(rows[-1]), flush=True)
        done(rows)
    return rows


def section(args, rows, command, machine_line):
    tiles = f"{{size: {args.tiles['size']}, overlap: {args.tiles['overlap']}}}"
    quick = ("\n*A `--quick` smoke test: tiny images and tiles, for checking the script; "
             "not a measurement.*\n" if args.quick else "")
    title = "Tiles: seconds and peak memory per megapixel, tiled and whole"
    return f"""## {title} (benchmarks/bench_tiles.py)
{quick}
- Command: `.venv/bin/python {command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine_line}; memory {args.memory_gb or 0:.1f} GB.
- Images: `benchmarks/make_large_nuclei.py`, square, seed 0: tiled (512 x 512)
  zlib-compressed BigTIFFs of about one nucleus per 1,880 pixels (180,591 at 18,440^2).
- Each row is one process, along a segment job's path with one thread: `open_image`, the
  method (`spec.tiled(source, tiling=..., threads=1)` at `tiles: {tiles}`, or
  `spec.segment` on the whole image at `tiles: null`), and the mask written to a `.tif`
  (whole, or block by block from the scratch file a tiled run leaves its labels in).
  *seconds* is read + segment + write (after the job's warm-up call); *peak GB* is the
  process's maximum resident memory, interpreter and libraries included (*base GB*: the
  same after the imports and the warm-up, before the image).
- Settings: schema defaults, threshold otsu, multi_threshold 3 classes, edges sobel,
  kmeans k=2, superpixels slic with 5,000 superpixels. *max label*: the labels' largest value (the object count
  for instances); *cut objects*: objects the stitching had to cut at a tile line;
  *others' cores*: the cores other processes kept busy meanwhile (0 on a quiet machine).
- A whole run is skipped when `bytes_per_pixel` x pixels + {INTERPRETER_GB} GB would be over
  {MEMORY_SHARE:.0%} of the machine's memory.

{markdown_table(HEADER, rows)}
"""


def write_tiles_section(path, body):
    """Put ``body`` in ``path``'s tiles section: between its markers, else in place of a
    ``## Tiles`` heading's section written without them, else appended at the end."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    if "<!-- tiles:start -->" not in text:
        lines = text.splitlines(keepends=True)
        heading = next((i for i, line in enumerate(lines) if line.startswith("## Tiles")), None)
        if heading is not None:
            end = next((i for i in range(heading + 1, len(lines))
                        if lines[i].startswith(("## ", "<!-- "))), len(lines))
            path.write_text("".join(lines[:heading])
                            + "<!-- tiles:start -->\n<!-- tiles:end -->\n"
                            + ("\n" if end < len(lines) else "") + "".join(lines[end:]))
    write_section(path, "tiles", body)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", metavar="MP",
                   help=f"megapixels of the square images (default {' '.join(map(str, SIZES_MP))})")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--tile-size", type=int, help=f"default {TILES['size']}")
    p.add_argument("--overlap", type=int, help=f"default {TILES['overlap']}")
    p.add_argument("--memory-gb", type=float, default=machine_memory_gb(),
                   help="the machine's memory, for skipping whole runs (default: MemTotal)")
    p.add_argument("--out", type=Path,
                   help="default docs/benchmarks.md; with --quick "
                   "benchmarks/_work/benchmarks-quick.md")
    p.add_argument("--quick", action="store_true",
                   help=f"{' and '.join(map(str, QUICK_SIZES_MP))} MP images, "
                   f"{QUICK_TILES['size']}-px tiles (overlap {QUICK_TILES['overlap']})")
    args = p.parse_args(argv)
    if args.sizes is not None and min(args.sizes) <= 0:
        p.error(f"sizes must be positive megapixels, got {args.sizes}")
    tiles = QUICK_TILES if args.quick else TILES
    args.tiles = {"size": args.tile_size or tiles["size"],
                  "overlap": tiles["overlap"] if args.overlap is None else args.overlap}
    if not 0 <= args.tiles["overlap"] < args.tiles["size"]:
        p.error(f"need 0 <= overlap < tile size, got {args.tiles}")
    args.sizes = args.sizes or (QUICK_SIZES_MP if args.quick else SIZES_MP)
    args.out = args.out or (WORK / "benchmarks-quick.md" if args.quick
                            else ROOT / "docs/benchmarks.md")
    return args


def main(argv=None):
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    command = "benchmarks/bench_tiles.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine_line = machine()
    run(args, lambda rows: write_tiles_section(args.out, section(args, rows, command,
                                                                 machine_line)))
    print(f"written to {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
