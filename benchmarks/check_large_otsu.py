"""The tiled Otsu mask of a workflow run against Otsu on the whole image (issue 20).

After the run of benchmarks/tiles_large.yaml::

    .venv/bin/python benchmarks/check_large_otsu.py \\
        --image benchmarks/_work/tiles/18440/nuclei.tif \\
        --mask benchmarks/_work/tiles/run2/results/masks/otsu/000000/000000-nuclei.tif

reads the image whole (with the pixel limit lifted: this is a check, not a job), runs the
whole-image function the workflow runs at ``tiles: null``
(``segpipe.methods.threshold.segment_threshold``, Otsu, the schema's defaults), and
compares its mask with the workflow's, pixel for pixel.
"""

from __future__ import annotations

import argparse

import numpy as np

from segpipe.imageio import read_image, read_label_image
from segpipe.methods.threshold import segment_threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--mask", required=True)
    parser.add_argument("--foreground", default="auto", help="the schema's default: auto")
    args = parser.parse_args()
    grey = read_image(args.image, mode="grey", max_pixels=None)
    whole = segment_threshold(grey, method="otsu", foreground=args.foreground)
    del grey
    tiled = read_label_image(args.mask)
    same = tiled.shape == whole.labels.shape and np.array_equal(tiled, whole.labels)
    differ = int(np.count_nonzero(tiled != whole.labels)) if not same else 0
    print(f"image {args.image}: {whole.labels.shape[1]} x {whole.labels.shape[0]}, "
          f"Otsu threshold {whole.thresholds[0]:.6f} ({whole.foreground})")
    print(f"tiled mask {args.mask}: identical to the whole image's: {same}"
          + ("" if same else f" ({differ} pixels differ)"))


if __name__ == "__main__":
    main()
