"""Tiled against whole on one large image: the exact kinds' masks must be identical, the
stitched kinds' objects must agree (object F1 at IoU 0.5 between the two results).

    .venv/bin/python benchmarks/check_tiled_vs_whole.py --height 6144 --width 5120 \
        --tile 1024 --overlap 128

Makes the image with make_large_nuclei.py (under benchmarks/_work/), segments it whole and
tiled along a job's path (segpipe.sources.open_image, then the kind's segment or tiled
function) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KINDS = {
    "threshold": {"method": "otsu"},
    "multi_threshold": {"classes": 3},
    "edges": {},
    "kmeans": {"k": 2},
    "watershed": {},
    "region_growing": {},
}


def main(argv: list[str] | None = None) -> int:
    from segpipe.config import load_schema, method_defaults
    from segpipe.evaluation import object_f1
    from segpipe.methods import get_method
    from segpipe.sources import open_image
    from segpipe.tiles import Tiling

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=6144)
    parser.add_argument("--width", type=int, default=5120)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    args = parser.parse_args(argv)
    folder = ROOT / "benchmarks/_work/tiles" / f"{args.height}x{args.width}"
    image_path = folder / "nuclei.tif"
    if not image_path.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks/make_large_nuclei.py"),
                        "--height", str(args.height), "--width", str(args.width),
                        "--out", str(folder)], check=True)
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    tiling = Tiling(size=args.tile, overlap=args.overlap)
    rows = []
    for kind, settings in KINDS.items():
        spec = get_method(kind)
        options = {**method_defaults(schema, kind), **settings}
        common = {"mode": spec.colour, "reading": None, "bytes_per_pixel": spec.bytes_per_pixel,
                  "memory_mb": None, "max_pixels": None, "max_tiled_pixels": 10**10}
        t0 = time.perf_counter()
        whole = spec.segment(open_image(image_path, tiles=None, notes=[], info={}, **common).image,
                             **options)
        t1 = time.perf_counter()
        opened = open_image(image_path, tiles=tiling, notes=[], info={}, **common)
        tiled = spec.tiled(opened.source, tiling=opened.tiling, threads=1, **options)
        t2 = time.perf_counter()
        tiled_labels = np.asarray(tiled.labels)  # on disk (segpipe.scratch): read it whole
        identical = bool(np.array_equal(whole.labels, tiled_labels)
                         and whole.labels.dtype == tiled_labels.dtype)
        f1 = "-"
        if spec.labels == "instances":
            f1 = f"{object_f1(tiled_labels, whole.labels)['object_f1_50']:.4f}"
        rows.append(f"| {kind} | {identical} | {f1} | {tiled.tiles} | "
                    f"{tiled.cut_objects if tiled.cut_objects is not None else '-'} | "
                    f"{t1 - t0:.1f} | {t2 - t1:.1f} |")
        print(rows[-1], flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{args.height} x {args.width}, tiles {args.tile} overlap {args.overlap}, {stamp}\n")
    print("| kind | masks identical | object F1 (tiled vs whole) | tiles | cut objects | "
          "whole s | tiled s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
