"""Building torchvision's Mask R-CNN from the method's settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from segpipe.layout import WEIGHTS_DIR
from segpipe.maskrcnn.weights import WeightsSource, resolve_weights

if TYPE_CHECKING:
    from torchvision.models.detection import MaskRCNN

log = logging.getLogger(__name__)

# The COCO layout of torchvision's detection heads: 91 outputs, index = COCO category id.
COCO_NUM_CLASSES = 91


def builder(model: str) -> Callable[..., MaskRCNN]:
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    return {
        "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
        "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
    }[model]


def wants_cuda(device: str) -> bool:
    """Whether the ``device`` setting means CUDA, without initialising CUDA."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; the choice is logged.

    Raises
    ------
    RuntimeError
        If CUDA is asked for and there is none.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was asked for but CUDA is not available")
        log.info("Mask R-CNN runs on %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        log.info("Mask R-CNN runs on the CPU (no CUDA device asked for or found)")
    return device


def build_model(
    *, model: str, weights: str, seed: int, score_threshold: float, max_detections: int,
    min_size: int, max_size: int, device: torch.device | str,
    weights_dir: str | os.PathLike = WEIGHTS_DIR,
) -> tuple[MaskRCNN, list[str]]:
    """A Mask R-CNN in eval mode on ``device``, with weights from a local file or random.

    Never downloads: named weights are read from ``weights_dir`` (the fetch rule puts
    them there), and the backbone is never fetched separately.

    Returns
    -------
    model : torchvision.models.detection.MaskRCNN
    class_names : list of str
        Name of each class index (COCO names for COCO-layout heads, else ``class_<i>``).

    Raises
    ------
    FileNotFoundError
        If the weights file is not there.
    """
    source = resolve_weights(model, weights, weights_dir=weights_dir)
    kwargs = {
        "weights": None,
        "weights_backbone": None,
        "box_score_thresh": score_threshold,
        "box_detections_per_img": max_detections,
        "min_size": min_size,
        "max_size": max_size,
    }
    if source.kind == "none":
        torch.manual_seed(seed)
        net = builder(model)(num_classes=COCO_NUM_CLASSES, **kwargs)
    else:
        state = torch.load(source.path, map_location="cpu", weights_only=True)
        num_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
        net = builder(model)(num_classes=num_classes, **kwargs)
        net.load_state_dict(state)
    net.eval().to(device)
    return net, class_names(source, net.roi_heads.box_predictor.cls_score.out_features)


def class_names(source: WeightsSource, num_classes: int) -> list[str]:
    """COCO names for torchvision's COCO weights and COCO-layout checkpoints; else
    ``class_<i>`` (random weights have no meaning to name)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    if source.kind != "none" and num_classes == COCO_NUM_CLASSES:
        return list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])
    return [f"class_{i}" for i in range(num_classes)]
