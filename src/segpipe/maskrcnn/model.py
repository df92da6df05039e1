"""Building torchvision's Mask R-CNN from the method's settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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


# A checkpoint segpipe writes (model.pt of a trained model): the network's description,
# its class names and its weights, so that it loads by path with nothing else.
CHECKPOINT_FORMAT = "segpipe-maskrcnn/1"
# torchvision's resize bounds, where a network trained at native scale needs numbers.
DEFAULT_MIN_SIZE, DEFAULT_MAX_SIZE = 800, 1333


# Channels of the FPN and the heads on the small backbones (torchvision's are 256): half
# the width halves a CPU training step (docs/benchmarks.md, "Training steps per second")
# and is plenty for one or a few classes.
SMALL_CHANNELS = 128
SMALL_BACKBONES = ("resnet18", "resnet34")


def build_network(architecture: Mapping[str, Any], *, score_threshold: float = 0.05,
                  max_detections: int = 100, rois_per_image: int = 512,
                  proposals_per_image: int = 2000) -> MaskRCNN:
    """A Mask R-CNN with random weights, as ``architecture`` describes it.

    Parameters
    ----------
    architecture : dict
        ``model`` (the torchvision design: ``maskrcnn_resnet50_fpn`` or ``_v2``),
        ``backbone`` (``resnet50`` as torchvision builds it; ``resnet18``, ``resnet34``
        with an FPN and heads of :data:`SMALL_CHANNELS` channels), ``num_classes`` (the
        background included), ``pretrained_layout`` (True: built as torchvision builds
        the network it loads COCO weights into, with its frozen normalisation and
        layers; False: every layer trains, batch norm included, as torchvision builds a
        network without weights), ``min_size`` and ``max_size`` (None: native scale),
        and optionally ``anchor_sizes`` (one per FPN level; torchvision's by default).
    score_threshold, max_detections : float, int
        Inference: torchvision's ``box_score_thresh`` and ``box_detections_per_img``.
    rois_per_image, proposals_per_image : int
        Training: ``box_batch_size_per_image`` and ``rpn_post_nms_top_n_train``.
    """
    net = _network(architecture, score_threshold=score_threshold,
                   max_detections=max_detections, rois_per_image=rois_per_image,
                   proposals_per_image=proposals_per_image)
    set_anchor_sizes(net, architecture.get("anchor_sizes", DEFAULT_ANCHOR_SIZES))
    return pin_roi_scales(net)


def _network(architecture: Mapping[str, Any], *, score_threshold: float,
             max_detections: int, rois_per_image: int, proposals_per_image: int) -> MaskRCNN:
    from torch import nn
    from torchvision.models.detection import MaskRCNN as TorchMaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops.misc import FrozenBatchNorm2d

    model, backbone = architecture["model"], architecture["backbone"]
    pretrained = bool(architecture["pretrained_layout"])
    native = architecture["min_size"] is None
    kwargs = {
        "box_score_thresh": score_threshold,
        "box_detections_per_img": max_detections,
        "box_batch_size_per_image": rois_per_image,
        "rpn_post_nms_top_n_train": proposals_per_image,
        "min_size": DEFAULT_MIN_SIZE if native else architecture["min_size"],
        "max_size": DEFAULT_MAX_SIZE if native else architecture["max_size"] or DEFAULT_MAX_SIZE,
        # Native scale: training crops reach the network as they are (inference does
        # not use the transform's resize: segpipe.maskrcnn.inference resizes itself).
        "_skip_resize": native,
    }
    num_classes = architecture["num_classes"]
    if backbone == "resnet50":
        if model == "maskrcnn_resnet50_fpn_v2":
            # torchvision's own builder; without weights it makes every layer trainable,
            # so the layers its COCO fine-tuning freezes are frozen here.
            net = builder(model)(weights=None, weights_backbone=None,
                                 num_classes=num_classes, **kwargs)
            if pretrained:
                _freeze_body(net, trainable_layers=3)
            return net
        # As torchvision's v1 builder: frozen batch norm and 3 trainable layers under
        # COCO weights, else everything trains.
        body = resnet_fpn_backbone(
            backbone_name=backbone, weights=None,
            norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
            trainable_layers=3 if pretrained else 5)
        return TorchMaskRCNN(body, num_classes=num_classes, **kwargs)
    # "channels" is for benchmarks/bench_train.py (what the narrower width buys).
    width = architecture.get("channels", SMALL_CHANNELS)
    body = _small_fpn_backbone(backbone, width)
    heads = {"mask_head": MaskRCNNHeads(width, [width] * 4, 1),
             "box_predictor": FastRCNNPredictor(1024, num_classes),
             "mask_predictor": MaskRCNNPredictor(width, width, num_classes)}
    if model == "maskrcnn_resnet50_fpn_v2":
        heads |= {
            "rpn_head": RPNHead(width, 3, conv_depth=2),
            "box_head": FastRCNNConvFCHead((width, 7, 7), [width] * 4, [1024],
                                           norm_layer=nn.BatchNorm2d),
            "mask_head": MaskRCNNHeads(width, [width] * 4, 1, norm_layer=nn.BatchNorm2d),
        }
    return TorchMaskRCNN(body, num_classes=None, **heads, **kwargs)


def _small_fpn_backbone(backbone: str, channels: int) -> torch.nn.Module:
    """A ResNet-18/34 with torchvision's FPN over its four stages, ``channels`` wide,
    every layer trainable (there are no pretrained weights to keep)."""
    from torch import nn
    from torchvision.models import resnet18, resnet34
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    body = {"resnet18": resnet18, "resnet34": resnet34}[backbone](norm_layer=nn.BatchNorm2d)
    stages = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    return BackboneWithFPN(body, stages, [64, 128, 256, 512], channels,
                           extra_blocks=LastLevelMaxPool())


# The strides of the FPN levels the ROI heads pool from ('0'..'3'): 4, 8, 16, 32.
FPN_SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)


# torchvision's anchors: one size per FPN level, three aspect ratios each.
DEFAULT_ANCHOR_SIZES = (32, 64, 128, 256, 512)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)


def set_anchor_sizes(net: MaskRCNN, sizes: Sequence[int]) -> MaskRCNN:
    """Give the RPN anchors of ``sizes`` pixels (one per FPN level); the RPN head's
    outputs per location (three ratios) stay, so any design takes them."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if tuple(sizes) != DEFAULT_ANCHOR_SIZES:
        net.rpn.anchor_generator = AnchorGenerator(tuple((int(s),) for s in sizes),
                                                   (ANCHOR_RATIOS,) * len(sizes))
    return net


def pin_roi_scales(net: MaskRCNN) -> MaskRCNN:
    """Give the ROI poolers their levels' true scales.

    torchvision's ``MultiScaleRoIAlign`` infers each level's scale once, at its first
    call, from the feature map's size over the largest image's, rounded to a power of 2.
    A canvas padded to more than 1.41 times an image's side (a small image or tile at
    native scale on a 128-px canvas step: 160 px on 256) makes it infer half the true
    scale, and the first batch of a process decides for every later one: boxes then pool
    features from the wrong place. The scales are the backbone's strides, so they are set
    here, once. Where the inference was right (every resized image) nothing changes.
    """
    from torchvision.ops.poolers import initLevelMapper

    for pool in (net.roi_heads.box_roi_pool, net.roi_heads.mask_roi_pool):
        if len(pool.featmap_names) != len(FPN_SCALES):
            raise ValueError(f"expected {len(FPN_SCALES)} pooled FPN levels, got "
                             f"{pool.featmap_names}")
        pool.scales = list(FPN_SCALES)
        pool.map_levels = initLevelMapper(2, 5, canonical_scale=pool.canonical_scale,
                                          canonical_level=pool.canonical_level)
    return net


def _freeze_body(net: MaskRCNN, *, trainable_layers: int) -> None:
    """Freeze the ResNet body's first layers as torchvision's COCO fine-tuning does."""
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    for name, parameter in net.backbone.body.named_parameters():
        if all(not name.startswith(layer) for layer in trainable):
            parameter.requires_grad_(False)


def is_checkpoint(state: object) -> bool:
    """Whether a loaded file is a checkpoint segpipe wrote (not a bare state dict)."""
    return isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A segpipe checkpoint (``model.pt``), loaded on the CPU, tensors only (no pickled
    code runs).

    Raises
    ------
    ValueError
        If the file is not one segpipe wrote.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not is_checkpoint(state):
        raise ValueError(f"{path} is not a checkpoint segpipe wrote (no {CHECKPOINT_FORMAT!r})")
    return state


def build_model(
    *, model: str, weights: str, seed: int, score_threshold: float, max_detections: int,
    min_size: int, max_size: int, device: torch.device | str,
    weights_dir: str | os.PathLike = WEIGHTS_DIR, models_dir: str | os.PathLike | None = None,
) -> tuple[MaskRCNN, list[str], bool]:
    """A Mask R-CNN in eval mode on ``device``, with weights from a local file or random.

    Never downloads: named weights are read from ``weights_dir`` (the fetch rule puts
    them there), and the backbone is never fetched separately.

    A checkpoint segpipe wrote (a trained model's ``model.pt``, by path or
    ``{trained: NAME}`` under ``models_dir``) brings its own network, class names and
    scale: ``model``, ``min_size`` and ``max_size`` are then not used.

    Returns
    -------
    model : torchvision.models.detection.MaskRCNN
    class_names : list of str
        Name of each class index (COCO names for COCO-layout heads, a trained model's
        own, else ``class_<i>``).
    native : bool
        Whether images go to the network at their own scale (a model trained so).

    Raises
    ------
    FileNotFoundError
        If the weights file is not there.
    """
    source = resolve_weights(model, weights, weights_dir=weights_dir, models_dir=models_dir)
    if source.kind in ("path", "trained"):
        state = torch.load(source.path, map_location="cpu", weights_only=True)
        if is_checkpoint(state):
            arch = state["architecture"]
            net = build_network(arch, score_threshold=score_threshold,
                                max_detections=max_detections)
            net.load_state_dict(state["state_dict"])
            net.eval().to(device)
            return net, list(state["classes"]), arch["min_size"] is None
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
        num_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
        net = builder(model)(num_classes=num_classes, **kwargs)
        net.load_state_dict(state)
    pin_roi_scales(net)
    net.eval().to(device)
    return net, class_names(source, net.roi_heads.box_predictor.cls_score.out_features), False


def class_names(source: WeightsSource, num_classes: int) -> list[str]:
    """COCO names for torchvision's COCO weights and COCO-layout checkpoints; else
    ``class_<i>`` (random weights have no meaning to name)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    if source.kind != "none" and num_classes == COCO_NUM_CLASSES:
        return list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])
    return [f"class_{i}" for i in range(num_classes)]
