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
    amp_dtype="float16",
    channels_last=True,
    compile=False,
    canvas_step=128,
    workers="auto",
    writers="auto",
):
    """Instance segmentation of a list of RGB images with torchvision's Mask R-CNN.

    Images are grouped by canvas (see :mod:`segpipe.maskrcnn.inference`), so each image's
    result does not depend on the other images of the list or on ``batch_size``.

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
    amp_dtype : {"float16", "bfloat16"}
    channels_last, compile : bool
        NHWC layout and ``torch.compile`` for the backbone.
    canvas_step : int
        Padded canvas sides are multiples of this; 32 is torchvision's own padding.
    workers, writers : int or "auto"
        Decoding and writing processes of the shard runner
        (:func:`segpipe.maskrcnn.shard.run_maskrcnn_shard`); arrays in memory need neither,
        so they are accepted here only to take a method's settings as they are.

    Returns
    -------
    list of segpipe.maskrcnn.inference.Detections
        One per image: label image, boxes, class ids, scores, areas and mask runs, by
        falling score.
    """
    from segpipe.maskrcnn.inference import Predictor, predict_with_backoff, to_chw_tensor
    from segpipe.maskrcnn.model import resolve_device

    dev = resolve_device(device)
    net, _ = _cached_model(model, weights, seed, score_threshold, max_detections, min_size,
                           max_size, dev)
    predictor = Predictor(net, dev, mask_threshold=mask_threshold, amp=amp, amp_dtype=amp_dtype,
                          channels_last=channels_last, compile=compile, canvas_step=canvas_step)
    tensors = [to_chw_tensor(im) for im in images]
    by_canvas = {}
    for i, t in enumerate(tensors):
        by_canvas.setdefault(predictor.canvas_of(*t.shape[-2:]), []).append(i)

    def fail(index, err):
        raise err

    results = [None] * len(images)
    for members in by_canvas.values():
        found, _ = predict_with_backoff(predictor, [tensors[i] for i in members], batch_size,
                                        on_fail=fail)
        for i, result in zip(members, found):
            results[i] = result
    return results


__all__ = ["segment_maskrcnn"]
