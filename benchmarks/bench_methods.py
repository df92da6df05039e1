"""Seconds per image of every per-image kind as images grow: how each method's cost scales.

Each kind (schema defaults; ``multi_threshold`` with 3 classes, ``kmeans`` with k=5)
segments a generated nuclei-like image: bright discs of radius 6 to 14 pixels, some
touching, one per 40x40 pixels, on a dark, noisy, uneven background, smoothed, 8-bit, at
each size. The method call alone is timed (no decoding, writing or scoring), best of
``--repeats``, in this process with one thread (as a segment job runs).

Writes its table to ``docs/benchmarks.md`` between the ``methods`` markers.

    .venv/bin/python benchmarks/bench_methods.py [--sides 512 1024 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from _bench import ROOT, markdown_table, now, revision, write_section

SETTINGS = {"multi_threshold": {"classes": 3}, "kmeans": {"k": 5}}


def nuclei_image(side, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    image = 30 + 20 * np.sin(xx / side * 3) + rng.normal(0, 6, (side, side))
    for _ in range(side * side // 1600):
        cy, cx = rng.integers(0, side, 2)
        r = rng.integers(6, 15)
        y0, y1, x0, x1 = max(0, cy - r), min(side, cy + r + 1), max(0, cx - r), min(side, cx + r + 1)
        disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        image[y0:y1, x0:x1][disc] = rng.normal(170, 20)
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (0, 0), 1.0)


def main(argv=None):
    import cv2
    from threadpoolctl import threadpool_limits

    from segpipe.config import load_schema, method_defaults
    from segpipe.methods import REGISTRY

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    threadpool_limits(1)
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    kinds = [k for k, spec in REGISTRY.items() if spec.runner == "image"]
    images = {side: nuclei_image(side) for side in args.sides}
    rows = []
    for kind in kinds:
        spec = REGISTRY[kind]
        settings = {k: v for k, v in {**method_defaults(schema, kind), **SETTINGS.get(kind, {})}.items()
                    if k != "kind"}
        row = [kind, spec.labels]
        warm = images[args.sides[0]]
        # Imports and first-call set-up happen once per job, not per image: not timed.
        _time(spec.segment, warm if spec.colour == "grey" else np.dstack([warm] * 3), settings)
        for side in args.sides:
            image = images[side] if spec.colour == "grey" else np.dstack([images[side]] * 3)
            best = min(_time(spec.segment, image, settings) for _ in range(args.repeats))
            row.append(f"{1000 * best:.1f}")
        per_mp = [float(v) / (s * s / 1e6) for v, s in zip(row[2:], args.sides)]
        row.append(f"{per_mp[-1] / per_mp[0]:.2f}")
        rows.append(row)
        print(row, flush=True)
    header = ["kind", "labels", *(f"{s}x{s} ms" for s in args.sides),
              f"s/MP at {args.sides[-1]} / at {args.sides[0]}"]
    command = "benchmarks/bench_methods.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_section(args.out, "methods", f"""## Seconds per image of every per-image kind, by image size (benchmarks/bench_methods.py)

- Command: `.venv/bin/python {command.strip()}`
- Date: {now()}; code: {revision()}; the 2-core development machine, one thread.
- A generated nuclei-like 8-bit image (discs of radius 6-14 px, one per 40x40 px, some
  touching, on an uneven noisy background), the method call alone (after one untimed call: imports), best of {args.repeats};
  schema defaults (multi_threshold 3 classes, kmeans k=5).
- The last column is the cost per megapixel at the largest size over that at the smallest:
  1.0 is linear in the pixel count.

{markdown_table(header, rows)}
""")
    print(f"written to {args.out}")


def _time(segment, image, settings):
    t0 = time.perf_counter()
    segment(image, **settings)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
