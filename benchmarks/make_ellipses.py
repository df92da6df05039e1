"""Write a synthetic instance-segmentation set: bright ellipses on a textured background.

Each image has a background of smooth noise at two scales (texture and uneven lighting)
and 3 to 12 non-overlapping ellipses of varied size, contrast and orientation, each
with its own speckle; its mask is a 16-bit PNG of instance labels.

    python benchmarks/make_ellipses.py --out DIR [--train 60 --test 24 --size 160 --seed 0]

writes DIR/train/images/*.png, DIR/train/masks/*.png, DIR/test/images/*.png and
DIR/test/masks/*.png (the same stems).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def ellipse_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size) uint8 image and its uint16 instance labels."""
    from scipy import ndimage as ndi
    from skimage.draw import ellipse

    texture = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), 2) * 25
    lighting = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), size / 12) * 60
    image = texture + lighting + 60
    labels = np.zeros((size, size), np.uint16)
    wanted = int(rng.integers(3, 13))
    placed = 0
    for _ in range(wanted * 4):
        if placed == wanted:
            break
        major, minor = rng.uniform(5, 22), rng.uniform(4, 14)
        row, col = rng.uniform(10, size - 10, 2)
        rr, cc = ellipse(row, col, major, minor, shape=labels.shape,
                         rotation=rng.uniform(0, np.pi))
        if len(rr) < 20 or labels[rr, cc].any():
            continue
        placed += 1
        labels[rr, cc] = placed
        image[rr, cc] += rng.uniform(40, 120) + rng.normal(0, 8, len(rr))
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_set(out: Path, *, train: int, test: int, size: int, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, labels = ellipse_image(rng, size)
            cv2.imwrite(str(out / split / "images" / f"e{i:04d}.png"), image)
            cv2.imwrite(str(out / split / "masks" / f"e{i:04d}.png"), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=24)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_set(args.out, train=args.train, test=args.test, size=args.size, seed=args.seed)


if __name__ == "__main__":
    main()
