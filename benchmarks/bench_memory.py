"""Peak memory per pixel of each per-image method: where ``bytes_per_pixel`` comes from.

Each kind segments one generated, smoothed 8-bit image (``--side`` pixels square, grey or
RGB as the method decodes it) in a child process, then writes its label PNG; the peak
resident memory (``ru_maxrss``) beyond what the process held with the image decoded,
divided by the pixel count, is the method's working memory per pixel. The registry's
``bytes_per_pixel`` (``segpipe/methods/__init__.py``) adds the image itself and doubles
for 16-bit samples; the rules' ``mem_mb`` multiply it by ``max_image_pixels``.

Writes its table to ``docs/benchmarks.md`` between the ``memory`` markers.

    .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _bench import ROOT, machine, markdown_table, now, revision, write_section

# Settings beyond the schema's defaults; every kind of the per-image runner is measured.
SETTINGS = {
    "multi_threshold": {"classes": 3},
    "kmeans": {"k": 5},
}

CHILD = """
import resource, sys, tempfile
import cv2, numpy as np
from segpipe.imageio import write_png
from segpipe.methods import get_method
kind, side, settings = sys.argv[1], int(sys.argv[2]), eval(sys.argv[3])
spec = get_method(kind)
shape = (side, side) if spec.colour == "grey" else (side, side, 3)
image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, shape, np.uint8), (0, 0), 3)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seg = spec.segment(image, **settings)
with tempfile.TemporaryDirectory() as tmp:
    write_png(tmp + "/labels.png", seg.labels)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024 / side**2, image.nbytes / side**2)
"""


def measure(kind, side):
    from segpipe.config import load_schema, method_defaults

    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    settings = {**method_defaults(schema, kind), **SETTINGS.get(kind, {})}
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(side), repr(settings)],
                         capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")})
    working, image = map(float, out.stdout.split())
    return working, image


def main(argv=None):
    from segpipe.methods import REGISTRY

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=3000)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    args = p.parse_args(argv)
    rows = []
    for kind in [k for k, spec in REGISTRY.items() if spec.runner == "image"]:
        working, image = measure(kind, args.side)
        rows.append([kind, f"{image:.0f}", f"{working:.1f}", str(REGISTRY[kind].bytes_per_pixel)])
        print(rows[-1], flush=True)
    command = "benchmarks/bench_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_section(args.out, "memory", f"""## Memory per pixel of the per-image methods (benchmarks/bench_memory.py)

- Command: `.venv/bin/python {command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine()}.
- One {args.side}x{args.side} 8-bit image per method, segmented and written in a child
  process: its decoded size per pixel, the peak memory beyond it per pixel (`ru_maxrss`),
  and the registry's `bytes_per_pixel` (image included, doubled for 16-bit samples), from
  which each rule's `mem_mb` follows (`max_image_pixels` x bytes per pixel).

{markdown_table(["kind", "image B/px", "working B/px", "bytes_per_pixel"], rows)}
""")
    print(f"written to {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
