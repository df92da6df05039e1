"""Mask R-CNN (torchvision) as a segpipe method: batched, GPU-ready instance segmentation.

This module imports no torch at import time: the workflow reads the method registry on
every start, and importing torchvision costs seconds.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=2)
def _cached_model(model, weights, seed, score_threshold, max_detections, min_size, max_size, device):
    from segpipe.maskrcnn.model import build_model

    return build_model(
        model=model, weights=weights, seed=seed, score_threshold=score_threshold,
        max_detections=max_detections, min_size=min_size, max_size=max_size, device=device,
    )


def segment_maskrcnn(
    images,
    *,
    model="maskrcnn_resnet50_fpn_v2",
    weights="DEFAULT",
    seed=0,
    score_threshold=0.5,
    mask_threshold=0.5,
    max_detections=100,
    min_size=800,
    max_size=1333,
    batch_size=8,
    device="auto",
    amp=True,
):
    """Instance segmentation of a list of RGB images with torchvision's Mask R-CNN.

    Parameters
    ----------
    images : list of (M, N, 3) ndarray of uint8 or uint16
    model : {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"}
    weights : str
        ``DEFAULT`` or another torchvision weights name (read from ``resources/weights``),
        a path to a checkpoint (a state dict), or ``none`` for random weights seeded by
        ``seed``.
    seed : int
        Seeds the random initialisation of ``weights: none``.
    score_threshold, mask_threshold : float
        Detections below the score are dropped; mask probabilities above the mask
        threshold are the instance's pixels.
    max_detections, min_size, max_size : int
        torchvision's ``box_detections_per_img`` and resize bounds.
    batch_size : int
        Images per forward pass (halved on GPU out-of-memory).
    device : str
        ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``, ...
    amp : bool
        Mixed precision (autocast) on CUDA; ignored on the CPU.

    Returns
    -------
    list of segpipe.maskrcnn.inference.Instances
        One per image: boxes, class ids, scores and full masks, by falling score.
    """
    from segpipe.maskrcnn.inference import (
        predict,
        predict_with_backoff,
        to_chw_tensor,
        to_model_input,
    )
    from segpipe.maskrcnn.model import resolve_device

    dev = resolve_device(device)
    net, _ = _cached_model(model, weights, seed, score_threshold, max_detections, min_size,
                           max_size, dev)
    tensors = [to_model_input(to_chw_tensor(im), dev) for im in images]

    def run(chunk):
        return predict(net, chunk, mask_threshold=mask_threshold, amp=amp)

    def fail(index, err):
        raise err

    results, _ = predict_with_backoff(run, tensors, batch_size, on_fail=fail)
    return results


__all__ = ["segment_maskrcnn"]
