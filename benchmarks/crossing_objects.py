"""How a tiled run treats the objects that cross its tile lines (issue 20, docs/tiles.md).

For every ground-truth object, whether its bounding box crosses a line between two tiles'
cores of the tiling, and what the predicted mask made of it:

- found whole: one predicted object matches it with IoU > 0.5;
- split: two or more predicted objects each hold at least 10% of its pixels (what cutting
  an object at a tile line leaves).

Usage (after the run of benchmarks/tiles_large.yaml)::

    .venv/bin/python benchmarks/crossing_objects.py \\
        --truth benchmarks/_work/tiles/18440/truth/nuclei.tif \\
        --pred benchmarks/_work/tiles/run2/results/masks/ws/000000/000000-nuclei.tif \\
        --size 2048 --overlap 128

Both masks are read whole: this is a check, not a job.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import find_objects

from segpipe.evaluation import objects_of
from segpipe.imageio import read_label_image
from segpipe.tiles import Tiling

SPLIT_SHARE = 0.1


def crossing(truth: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Per truth label (index = label), whether its box crosses a core line."""
    core = tiling.core
    out = np.zeros(int(truth.max()) + 1, bool)
    for label, box in enumerate(find_objects(truth), start=1):
        if box is None:
            continue
        rows, cols = box
        out[label] = (rows.start // core != (rows.stop - 1) // core
                      or cols.start // core != (cols.stop - 1) // core)
    return out


def outcomes(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per truth label: present, found whole (IoU > 0.5 with one prediction), split."""
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    n_t, n_p = int(t.max()) + 1, int(p.max()) + 1
    t_size = np.bincount(t, minlength=n_t)
    p_size = np.bincount(p, minlength=n_p)
    on = (t > 0) & (p > 0)
    pairs, overlap = np.unique(t[on] * n_p + p[on], return_counts=True)
    ti, pi = np.divmod(pairs, n_p)
    iou = overlap / (t_size[ti] + p_size[pi] - overlap)
    whole = np.zeros(n_t, bool)
    whole[ti[iou > 0.5]] = True
    big_parts = np.bincount(ti[overlap >= SPLIT_SHARE * t_size[ti]], minlength=n_t)
    present = t_size > 0
    present[0] = False
    return present, whole, big_parts >= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", required=True)
    parser.add_argument("--pred", required=True)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--foreground", action="store_true",
                        help="the mask is a foreground (threshold kinds): its objects are "
                             "its 8-connected components, as segpipe scores them")
    args = parser.parse_args()
    truth = read_label_image(args.truth)
    pred = read_label_image(args.pred)
    if args.foreground:
        pred = objects_of(pred, "foreground")
    crosses = crossing(truth, Tiling(args.size, args.overlap))
    present, whole, split = outcomes(truth, pred)
    print("| truth objects | count | found whole | split |")
    print("|---|---:|---:|---:|")
    for name, chosen in (("crossing a tile line", present & crosses),
                         ("inside one tile", present & ~crosses),
                         ("all", present)):
        n = int(chosen.sum())
        if n:
            print(f"| {name} | {n} | {whole[chosen].sum() / n:.2%} "
                  f"| {split[chosen].sum() / n:.2%} |")
        else:
            print(f"| {name} | 0 | - | - |")


if __name__ == "__main__":
    main()
