"""Memory and time of a method's COCO mask AP as the image count grows.

Writes generated masks (a foreground of many small objects, shifted one pixel from the
instance ground truth), the objects table the segment jobs would write, and runs
``segpipe.method_scores.write_method_coco_ap`` in a child process per size, recording the
peak resident memory (``ru_maxrss``) and the wall time. Memory should stay nearly flat as images
grow, but for a few bytes per object: each image's objects are encoded, matched and
dropped (the design of issue 10; the old scorer kept a full-image mask per object of every
image).

Writes its table to ``docs/benchmarks.md`` between the ``coco_ap`` markers.

    .venv/bin/python benchmarks/bench_coco_ap.py [--images 100 1600 6400] [--objects 400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _bench import ROOT, markdown_table, now, revision, write_section

CHILD = """
import json, resource, sys, time
from pathlib import Path
from segpipe.ground_truth import GroundTruth
from segpipe.method_scores import write_method_coco_ap
root = Path(sys.argv[1])
t0 = time.perf_counter()
write_method_coco_ap(sorted(root.glob("metrics/*.parquet")), [], root / "ap.json",
                     ground_truth=GroundTruth(root / "truth", kind="instances"),
                     meaning="foreground", object_paths=sorted(root.glob("objects/*.parquet")))
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "scores": json.loads((root / "ap.json").read_text())}))
"""


def make_run(root, n_images, n_objects, side, shard_size=250):
    """Masks, truth, metrics and objects tables of one method over ``n_images`` images."""
    from segpipe.evaluation import objects_of
    from segpipe.imageio import write_png
    from segpipe.measure import measure_objects, objects_table
    from segpipe.table import empty_row, rows_to_table, write_table_atomic

    per_row = int(np.ceil(np.sqrt(n_objects)))
    step = side // per_row
    truth = np.zeros((side, side), np.uint16)
    for i in range(n_objects):
        r, c = divmod(i, per_row)
        truth[r * step + 1 : r * step + step - 2, c * step + 1 : c * step + step - 2] = i + 1
    pred = np.roll(truth > 0, 1, axis=1).astype(np.uint8)
    grey = (pred * 180 + 30).astype(np.uint8)
    for sub in ("truth", "masks", "metrics", "objects"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    objects = measure_objects(objects_of(pred, "foreground"), grey, image_id="", method="m",
                              shape=False)
    for shard_start in range(0, n_images, shard_size):
        shard = f"{shard_start // shard_size:06d}"
        rows, parts = [], []
        for k in range(shard_start, min(n_images, shard_start + shard_size)):
            image_id = f"img{k:07d}.png"
            write_png(root / "truth" / image_id, truth)
            mask_path = str(root / "masks" / image_id)
            write_png(mask_path, pred)
            row = empty_row(image_id=image_id, method="m", kind="threshold", shard=shard,
                            params="{}")
            row.update(status="ok", mask_path=mask_path)
            rows.append(row)
            parts.append({**objects, "image_id": [image_id] * len(objects["label"])})
        write_table_atomic(rows_to_table(rows), root / "metrics" / f"{shard}.parquet")
        write_table_atomic(objects_table(parts), root / "objects" / f"{shard}.parquet")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[100, 1600, 6400])
    p.add_argument("--objects", type=int, default=400, help="objects per image")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    args = p.parse_args(argv)
    rows = []
    for n in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            make_run(Path(tmp), n, args.objects, args.side)
            made = time.perf_counter() - t0
            proc = subprocess.run([sys.executable, "-c", CHILD, tmp], capture_output=True,
                                  text=True, check=True,
                                  env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin"})
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{n} images: made in {made:.1f} s, {result}", flush=True)
            rows.append([f"{n:,}", f"{n * args.objects:,}", f"{result['wall_s']:.1f}",
                         f"{1000 * result['wall_s'] / n:.1f}", f"{result['peak_mb']:.0f}",
                         f"{result['scores']['coco_ap50']:.3f}"])
    body = "\n".join([
        "## COCO mask AP of a method: memory and time by image count",
        "",
        (f"Command: `.venv/bin/python benchmarks/bench_coco_ap.py --images "
         f"{' '.join(map(str, args.images))} --objects {args.objects}`  "),
        f"Date: {now()}; revision {revision()}; 2-core development machine, no GPU.  ",
        (f"Each image: {args.side}x{args.side}, {args.objects} square objects in the truth, "
         "the method's foreground shifted by one pixel (every object matched up to IoU 0.8), "
         "read back from PNG and Parquet as the score_coco_ap job does. Peak memory is the "
         "child process's, interpreter and libraries included."),
        "",
        markdown_table(["images", "objects", "wall s", "ms per image", "peak MB", "AP50"], rows),
        "",
        ("Masks are held one image at a time and tables one shard at a time; what grows with "
         "the run is the ranking AP needs: 14 bytes per object kept while images are added, "
         "and at the end, while all objects are ranked, about 85 bytes per object in this "
         "table ((395 - 181) MB for 2.52 million more objects). The old scorer held a "
         "full-image mask per object (issue 10 measured 27 GB for 300 DSB images of k-means "
         "components). Time grows linearly: decoding two PNGs and matching one image's "
         "objects per image."),
    ])
    write_section(args.out, "coco_ap", body)
    print(body)


if __name__ == "__main__":
    main()
