"""Time segpipe's per-object measurements against scikit-image's regionprops_table.

`segpipe.measure.measure_objects` gives regionprops_table's values to the bit (its tests
compare raw bytes); until 2026-11-28 it called regionprops_table itself. This script times
both on the connected components of Otsu-thresholded images, one process, one thread:
generated 1024x1024 photographs (many specks per image) and, when the data set is there,
the DSB 2018 nuclei images (few, larger objects). It also checks that the columns agree.

    .venv/bin/python benchmarks/bench_objects.py          # about 2 minutes
    .venv/bin/python benchmarks/bench_objects.py --quick  # smoke test, to benchmarks/_work

The table goes into docs/benchmarks.md between `<!-- objects:start -->` and
`<!-- objects:end -->`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_command  # its generated photographs

from _bench import markdown_table, now, revision, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks/_work/objects"
PROPERTIES = ["label", "area", "centroid", "bbox", "eccentricity", "solidity", "perimeter",
              "intensity_mean", "intensity_max"]


def components(path):
    """The grey image of ``path`` and the 8-connected components of its Otsu foreground."""
    from segpipe.imageio import read_image
    from segpipe.methods import get_method

    grey = read_image(path, mode="grey")
    labels = get_method("threshold").segment(grey).labels
    _, objects = cv2.connectedComponents(labels, connectivity=8, ltype=cv2.CV_32S)
    return grey, objects


def time_set(paths):
    """Seconds per image of both, objects per image, and whether every column agreed."""
    from skimage.measure import regionprops_table

    from segpipe.measure import measure_objects

    ours = theirs = 0.0
    n_objects, same = 0, True
    for path in paths:
        grey, objects = components(path)
        scores = np.zeros(int(objects.max()))  # scores are not what is timed here
        start = time.perf_counter()
        columns = measure_objects(objects, grey, image_id="x", method="m", scores=scores)
        ours += time.perf_counter() - start
        start = time.perf_counter()
        table = regionprops_table(objects, intensity_image=grey, properties=PROPERTIES)
        theirs += time.perf_counter() - start
        n_objects += len(table["label"])
        if columns is not None:
            same &= bool(np.array_equal(columns["eccentricity"], table["eccentricity"])
                         and np.array_equal(columns["solidity"], table["solidity"])
                         and np.array_equal(columns["perimeter"], table["perimeter"])
                         and np.array_equal(columns["centroid_y"], table["centroid-0"]))
    n = len(paths)
    return theirs / n, ours / n, n_objects / n, same


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018-dev")
    p.add_argument("--photos", type=int, default=100)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="10 photographs, to benchmarks/_work")
    args = p.parse_args(argv)
    if args.quick:
        args.photos, args.out = 10, WORK / "benchmarks-quick.md"
    cv2.setNumThreads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    photos = bench_command.make_photos(WORK / f"photos{args.photos}", args.photos)
    sets = [(f"{args.photos} photographs, 1024x1024 JPEG", sorted(photos.glob("*.jpg")))]
    if (args.data / "images").is_dir():
        sets.append(("60 DSB 2018 nuclei images", sorted((args.data / "images").glob("*.png"))))
    started, rows = now(), []
    components(sets[0][1][0])  # imports and first calls, outside the timing
    for label, paths in sets:
        theirs, ours, per_image, same = time_set(paths)
        rows.append([label, f"{per_image:.0f}", f"{1000 * theirs:.1f}", f"{1000 * ours:.1f}",
                     f"{theirs / ours:.1f}x", "yes" if same else "**no**"])
        print(f"  {label}: regionprops_table {1000 * theirs:.1f} ms, measure_objects "
              f"{1000 * ours:.1f} ms per image", flush=True)
    body = f"""## Per-object measurements (benchmarks/bench_objects.py)

Run `.venv/bin/python benchmarks/bench_objects.py` ({started}, revision {revision()}), one
process, one thread, on the 8-connected components of each image's Otsu foreground: area,
centroid, box, eccentricity, solidity, perimeter, mean and max intensity, against
scikit-image's `regionprops_table` (which `measure_objects` called until 2026-11-28, and
whose values it reproduces to the bit). Contrast scores are not timed here.

{markdown_table(["images", "objects per image", "regionprops_table (ms / image)", "measure_objects (ms / image)", "faster", "same values"], rows)}
"""
    write_section(args.out, "objects", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
