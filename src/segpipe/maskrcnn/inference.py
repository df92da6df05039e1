"""Batched Mask R-CNN inference: forward passes, out-of-memory back-off, instances."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class Instances:
    """One image's detections, sorted by falling score, on the CPU.

    Attributes
    ----------
    boxes : (N, 4) ndarray of float32, x0, y0, x1, y1 in pixels
    class_ids : (N,) ndarray of int64
    scores : (N,) ndarray of float32
    masks : (N, M, K) ndarray of bool, each instance's full mask at ``mask_threshold``
    """

    boxes: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self):
        return len(self.scores)

    def label_image(self):
        """Instance labels 1..N by falling score; where masks overlap, the higher score wins.

        Returns
        -------
        (M, K) ndarray of uint16, 0 = background
        """
        labels = np.zeros(self.masks.shape[1:], dtype=np.uint16)
        # Paint from the lowest score up, so higher scores overwrite shared pixels.
        for index in range(len(self) - 1, -1, -1):
            labels[self.masks[index]] = index + 1
        return labels


def to_chw_tensor(image):
    """An (M, K, 3) uint8/uint16 array as a (3, M, K) tensor of the same integer type."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_model_input(image, device):
    """A (C, M, K) uint8/uint16 tensor (as decoded) to the float 0..1 tensor the model takes.

    The integer tensor crosses to the device first (a quarter of the bytes of float32).
    """
    top = 65535.0 if image.dtype == torch.uint16 else 255.0
    return image.to(device, non_blocking=True).float().div_(top)


def predict(model, images, *, mask_threshold, amp):
    """Run the model on a list of float images already on its device.

    Images of equal size go through one forward pass together. Images of different sizes
    go in separate passes: torchvision pads a batch to its largest image, and that padding
    would otherwise change the results near the borders, so results would depend on which
    images shared a batch.

    Returns
    -------
    list of Instances, in the order of ``images``
    """
    device = images[0].device
    order = sorted(range(len(images)), key=lambda i: tuple(images[i].shape))
    results = [None] * len(images)
    for _, group in groupby(order, key=lambda i: tuple(images[i].shape)):
        group = list(group)
        with torch.inference_mode(), torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            outputs = model([images[i] for i in group])
        on_device = [
            (o["boxes"].float(), o["labels"], o["scores"].float(), o["masks"][:, 0] > mask_threshold)
            for o in outputs
        ]
        # One copy to the host per forward pass, after thresholding the masks on the device
        # (bool masks are a quarter of the float probabilities).
        for i, parts in zip(group, _to_cpu(on_device)):
            boxes, labels, scores, masks = (p.numpy() for p in parts)
            results[i] = Instances(boxes=boxes, class_ids=labels, scores=scores, masks=masks)
    return results


def _to_cpu(nested):
    moved = [[t.to("cpu", non_blocking=True) for t in item] for item in nested]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return moved


def is_out_of_memory(err):
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def predict_with_backoff(predict_fn, images, batch_size, *, on_fail):
    """Predict ``images`` in chunks of ``batch_size``, halving it on out-of-memory.

    The chunk that ran out of memory is retried at the smaller size, so no image is
    dropped for that; an image that does not fit even alone is passed to ``on_fail``.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(list of images) -> list of results``.
    images : list
    batch_size : int
    on_fail : callable
        ``on_fail(index, error) -> result`` for an image that fails at batch size 1.

    Returns
    -------
    results : list, one per image
    batch_size : int
        The size that worked, for the next call.
    """
    results = []
    start = 0
    while start < len(images):
        chunk = images[start : start + batch_size]
        try:
            results.extend(predict_fn(chunk))
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if batch_size == 1:
                log.error("image %d does not fit in GPU memory even alone", start)
                results.append(on_fail(start, err))
            else:
                batch_size = max(1, batch_size // 2)
                log.warning("out of GPU memory: retrying with batch size %d", batch_size)
                continue
        start += len(chunk)
    return results, batch_size
