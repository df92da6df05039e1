"""Random crops and augmentations of a training image and its instance labels.

Every random choice comes from a generator seeded by (seed, epoch, image position)
(:func:`crop_rng`), never from a worker's state: the crops of an epoch are the same
whatever the number of DataLoader workers, and a resumed run draws what an uninterrupted
one would have drawn.

Order (each step optional by the settings): scale jitter and the random crop together
(the crop's region is cut from the image at the scale it will have, so a 10,000-pixel
scan costs a crop, not a resize of the whole), flips, a 90-degree rotation, then
brightness and contrast on the intensity scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# Instances cut by a crop to fewer pixels than this are dropped from the targets: a
# sliver of a few pixels teaches the mask head nothing and has a degenerate box.
MIN_INSTANCE_PIXELS = 4


def crop_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator of one training crop."""
    return np.random.default_rng([seed, epoch, position])


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
            crop_size: int | None, settings: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One random training view of an image.

    Parameters
    ----------
    image : (M, N, 3) ndarray of uint8 or uint16
    labels : (M, N) ndarray of int32
        Instance labels (0 background).
    rng : numpy.random.Generator
    crop_size : int or None
        Side of the square crop; an image smaller than it along a side keeps that side.
        None: the whole image.
    settings : dict
        The ``augment`` settings: ``flip``, ``rotate90``, ``scale``, ``intensity``.

    Returns
    -------
    image : (3, m, n) ndarray of float32 in 0..1
    labels : (m, n) ndarray of int32
    """
    import cv2

    height, width = labels.shape
    factor = 1.0
    if settings["scale"] > 0:
        low, high = math.log(1 - settings["scale"]), math.log(1 + settings["scale"])
        factor = math.exp(rng.uniform(low, high))
    # The region, in the image's pixels, that becomes the crop after scaling.
    if crop_size is None:
        rows, cols = height, width
    else:
        side = round(crop_size / factor)
        rows, cols = min(height, side), min(width, side)
    top = int(rng.integers(0, height - rows + 1))
    left = int(rng.integers(0, width - cols + 1))
    image = image[top:top + rows, left:left + cols]
    labels = labels[top:top + rows, left:left + cols]
    if factor != 1.0:
        size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    if settings["flip"]:
        if rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        if rng.random() < 0.5:
            image, labels = image[::-1], labels[::-1]
    if settings["rotate90"]:
        turns = int(rng.integers(0, 4))
        image, labels = np.rot90(image, turns), np.rot90(labels, turns)
    top_value = 65535.0 if image.dtype == np.uint16 else 255.0
    x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(top_value)
    if settings["intensity"] > 0:
        jitter = settings["intensity"]
        contrast = np.float32(rng.uniform(1 - jitter, 1 + jitter))
        brightness = np.float32(rng.uniform(-jitter / 2, jitter / 2))
        x = np.clip(x * contrast + brightness, 0, 1, out=x)
    return x, np.ascontiguousarray(labels)


def targets_of(labels: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    """torchvision's training targets from a crop's instance labels.

    Returns
    -------
    dict
        ``boxes`` (K, 4) float32 x0, y0, x1, y1 (pixel edges), ``labels`` (K,) int64
        class indices, ``masks`` (K, m, n) uint8; instances under
        :data:`MIN_INSTANCE_PIXELS` pixels are left out. K may be 0 (a negative example).
    """
    from scipy import ndimage as ndi

    boxes, kept, masks = [], [], []
    areas = np.bincount(labels.ravel(), minlength=len(classes))
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None or areas[label] < MIN_INSTANCE_PIXELS:
            continue
        rows, cols = box
        boxes.append((cols.start, rows.start, cols.stop, rows.stop))
        kept.append(classes[label])
        mask = np.zeros(labels.shape, dtype=np.uint8)
        mask[box] = labels[box] == label
        masks.append(mask)
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(kept, dtype=np.int64),
        "masks": (np.stack(masks) if masks else np.zeros((0, *labels.shape), np.uint8)),
    }
