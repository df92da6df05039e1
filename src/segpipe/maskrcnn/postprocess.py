"""The array work after Mask R-CNN's forward pass, batched, on the model's device.

torchvision's ``paste_masks_in_image`` resizes each instance's 28x28 mask to its box and
pastes it into a zeroed full-size image, one instance at a time: a few small kernels and
a full-image allocation per object. Here every instance of a batch is pasted in one batched
operation, inside its box only:

- bilinear resizing (``align_corners=False``, as ``F.interpolate``) is separable, so the
  resized crop of each instance is ``Ry @ mask @ Rx.T``, with ``Ry``/``Rx`` the 1-D
  interpolation weights of its box rows and columns: one batched matrix product for all
  instances, padded to the largest crop of a chunk;
- chunks bound memory: instances are sorted by crop size and cut so that no chunk holds
  more than ``budget`` crop pixels;
- from the thresholded crops, still on the device: the instance label image of every image
  (1..N by falling score; the higher score wins shared pixels) by a scatter-min, each
  instance's area, and the boundaries of its COCO runs (``segpipe.rle``), so that only the
  label images, a few numbers per instance and the run boundaries cross to the host, in one
  copy per batch, never the N full-size masks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Crop pixels per chunk: 2**24 float32 crops and their int64 indices are about 200 MB.
DEFAULT_BUDGET = 2**24
_NO_LABEL = torch.iinfo(torch.int32).max


def expanded_boxes(boxes: torch.Tensor, mask_size: int, padding: int = 1) -> torch.Tensor:
    """torchvision's ``expand_boxes`` for the 1-pixel padded mask, as integer boxes.

    The conversion truncates toward zero, as torchvision's ``.to(torch.int64)`` does.
    """
    scale = float(mask_size + 2 * padding) / mask_size
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1).to(torch.int64)


def _interpolation_weights(offset: torch.Tensor, length: torch.Tensor, valid: torch.Tensor,
                           n_out: int, n_in: int) -> torch.Tensor:
    """(n, n_out, n_in) weights of 1-D bilinear resizing from ``n_in`` to ``length`` samples.

    Row ``r`` of instance ``i`` is output sample ``offset[i] + r`` of the resized mask, as
    PyTorch's ``upsample_bilinear2d`` computes it (``align_corners=False``: source index
    ``max((dst + 0.5) * n_in / length - 0.5, 0)``, neighbours clamped at the last sample).
    Rows at or past ``valid[i]`` are zero.
    """
    device = offset.device
    steps = torch.arange(n_out, device=device)
    dst = (offset[:, None] + steps[None, :]).to(torch.float32)
    scale = n_in / length.to(torch.float32)
    src = ((dst + 0.5) * scale[:, None] - 0.5).clamp_(min=0)
    # Rows past ``valid`` get zero weight; clamping only keeps their indices in range.
    low = src.to(torch.int64).clamp_(max=n_in - 1)
    frac = src - low
    high = torch.where(low < n_in - 1, low + 1, low)
    keep = (steps[None, :] < valid[:, None]).to(torch.float32)
    weights = torch.zeros(len(offset), n_out, n_in, device=device)
    weights.scatter_add_(2, low[..., None], ((1 - frac) * keep)[..., None])
    weights.scatter_add_(2, high[..., None], (frac * keep)[..., None])
    return weights


@dataclass
class PastedBatch:
    """Post-processed instances of a batch, on the device that computed them.

    Attributes
    ----------
    labels : (P + 1,) int32 tensor
        Every image's label image, flattened and concatenated (``offsets``), 0 = background;
        the last element is scratch.
    offsets : list of int
        Where each image's labels start in ``labels``.
    areas : (N,) int64 tensor
        Pixels of each instance's full mask.
    run_instance, run_position : (K,) int64 tensors
        COCO run boundaries (see :mod:`segpipe.rle`): ``run_position`` in the image of
        instance ``run_instance``. Each instance's boundaries are contiguous and ascending
        (:func:`runs_by_instance` splits them).
    """

    labels: torch.Tensor
    offsets: list
    areas: torch.Tensor
    run_instance: torch.Tensor
    run_position: torch.Tensor


def paste_batch(masks: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor,
                rank: torch.Tensor, image_sizes: Sequence[tuple[int, ...]], *, threshold: float,
                budget: int = DEFAULT_BUDGET, summarise: str = "auto") -> PastedBatch:
    """Paste, threshold and summarise the instances of a batch of images.

    Parameters
    ----------
    masks : (N, M, M) float tensor
        Mask probabilities from the ROI heads, for the instances of all images.
    boxes : (N, 4) float tensor
        x0, y0, x1, y1 in the pixels of each instance's original image.
    image_index : (N,) int64 tensor
        The image each instance belongs to.
    rank : (N,) int64 tensor
        The instance's place in its image by falling score (0 = best); its label is rank + 1.
    image_sizes : list of (int, int)
        (height, width) of each original image.
    threshold : float
        Probabilities above it are the instance's pixels.
    budget : int
        Most crop pixels handled at once.
    summarise : {"auto", "batched", "per_instance"}
        How label images and runs are made from the pasted crops: ``batched`` (one
        scatter and one ``nonzero`` per chunk: few, large kernels, for GPUs) or
        ``per_instance`` (a NumPy loop over each instance's crop: several times faster on
        a CPU, where large temporaries cost memory bandwidth). ``auto`` picks ``batched``
        on CUDA. Both give identical results.

    Returns
    -------
    PastedBatch
    """
    if summarise == "auto":
        summarise = "batched" if masks.device.type == "cuda" else "per_instance"
    if summarise not in ("batched", "per_instance"):
        raise ValueError(f"summarise must be auto, batched or per_instance, got {summarise!r}")
    if summarise == "per_instance" and masks.device.type != "cpu":
        raise ValueError("summarise='per_instance' works on CPU tensors only")
    device = masks.device
    sizes = torch.tensor(image_sizes, dtype=torch.int64, device=device).reshape(-1, 2)
    areas_px = sizes[:, 0] * sizes[:, 1]
    offsets = torch.cumsum(areas_px, 0) - areas_px
    total = int(areas_px.sum())
    labels = torch.full((total + 1,), _NO_LABEL, dtype=torch.int32, device=device)
    n = len(masks)
    areas = torch.zeros(n, dtype=torch.int64, device=device)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return PastedBatch(labels.zero_(), offsets.tolist(), areas, empty, empty)

    m = masks.shape[-1]
    padded = F.pad(masks.to(torch.float32), (1, 1, 1, 1))
    box = expanded_boxes(boxes.to(torch.float32), m)
    height, width = sizes[image_index, 0], sizes[image_index, 1]
    box_h = (box[:, 3] - box[:, 1] + 1).clamp(min=1)
    box_w = (box[:, 2] - box[:, 0] + 1).clamp(min=1)
    y0, x0 = box[:, 1].clamp(min=0), box[:, 0].clamp(min=0)
    crop_h = (torch.minimum(box[:, 3] + 1, height) - y0).clamp(min=0)
    crop_w = (torch.minimum(box[:, 2] + 1, width) - x0).clamp(min=0)

    # One host sync per batch: chunk sizes decide tensor shapes.
    crop_hw = torch.stack([crop_h, crop_w], 1).cpu().numpy()
    run_instance, run_position = [], []
    if summarise == "per_instance":
        # Once per batch, not per chunk: the per-instance numbers as NumPy arrays.
        per_instance = [t.numpy() for t in (offsets, image_index, rank, y0, x0, crop_h, crop_w,
                                            height, width)]
    for chunk in _chunks(crop_hw, budget):
        idx = torch.as_tensor(chunk, device=device)
        ch, cw = int(crop_hw[chunk, 0].max()), int(crop_hw[chunk, 1].max())
        if ch == 0 or cw == 0:
            continue
        ry = _interpolation_weights(y0[idx] - box[idx, 1], box_h[idx], crop_h[idx], ch, m + 2)
        rx = _interpolation_weights(x0[idx] - box[idx, 0], box_w[idx], crop_w[idx], cw, m + 2)
        crops = torch.bmm(torch.bmm(ry, padded[idx]), rx.transpose(1, 2)) > threshold

        if summarise == "per_instance":
            found = _summarise_on_host(crops.numpy(), chunk, labels.numpy(), *per_instance)
            areas[idx] = torch.as_tensor(found[0], device=device)
            run_instance.append(torch.as_tensor(found[1], device=device))
            run_position.append(torch.as_tensor(found[2], device=device))
            continue
        n_chunk = len(chunk)
        areas[idx] = crops.view(n_chunk, -1).sum(dim=1)

        # Label images: each pixel keeps the smallest rank that covers it. Background
        # pixels of a crop are sent to the scratch element: a dense scatter is cheaper
        # than selecting the foreground first.
        rows = y0[idx, None] + torch.arange(ch, device=device)[None, :]
        cols = x0[idx, None] + torch.arange(cw, device=device)[None, :]
        row_start = offsets[image_index[idx]][:, None] + rows * width[idx, None]
        flat = torch.where(crops, row_start[:, :, None] + cols[:, None, :], total)
        values = rank[idx].to(torch.int32)[:, None, None].expand(n_chunk, ch, cw)
        labels.scatter_reduce_(0, flat.view(-1), values.reshape(-1), reduce="amin")

        # Run boundaries: where a column of the crop changes value, read top to bottom,
        # with a 0 above and below each column. ``nonzero`` returns them instance by
        # instance, columns left to right: ascending positions, no sort needed.
        columns = torch.zeros((n_chunk, cw, ch + 2), dtype=torch.bool, device=device)
        columns[:, :, 1:-1] = crops.transpose(1, 2)
        local, col, row = torch.nonzero(columns[:, :, 1:] != columns[:, :, :-1], as_tuple=True)
        start = x0[idx] * height[idx] + y0[idx]
        run_instance.append(idx[local])
        run_position.append(start[local] + col * height[idx][local] + row)

    labels = torch.where(labels == _NO_LABEL, 0, labels + 1)
    labels[-1] = 0  # the scratch element
    return PastedBatch(
        labels=labels, offsets=offsets.tolist(), areas=areas,
        run_instance=torch.cat(run_instance) if run_instance else areas[:0],
        run_position=torch.cat(run_position) if run_position else areas[:0],
    )


def _summarise_on_host(crops: np.ndarray, chunk: list[int], labels: np.ndarray,
                       offsets: np.ndarray, image_index: np.ndarray, rank: np.ndarray,
                       y0: np.ndarray, x0: np.ndarray, crop_h: np.ndarray, crop_w: np.ndarray,
                       height: np.ndarray,
                       width: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-instance path of :func:`paste_batch` for one chunk, in NumPy.

    ``labels`` (a view of the label tensor) is updated in place with a minimum, so the
    order instances are visited in does not matter.
    """
    from segpipe.rle import crop_boundaries

    areas, run_instance, run_position = [], [], []
    for local, i in enumerate(chunk):
        crop = crops[local, : crop_h[i], : crop_w[i]]
        h, w = crop.shape
        start = offsets[image_index[i]]
        image = labels[start : start + height[i] * width[i]].reshape(height[i], width[i])
        region = image[y0[i] : y0[i] + h, x0[i] : x0[i] + w]
        np.minimum(region, np.where(crop, np.int32(rank[i]), np.int32(_NO_LABEL)), out=region)
        areas.append(np.count_nonzero(crop))
        runs = crop_boundaries(crop, top=y0[i], left=x0[i], height=height[i])
        run_instance.append(np.full(len(runs), i, np.int64))
        run_position.append(runs)
    return np.array(areas, np.int64), np.concatenate(run_instance), np.concatenate(run_position)


def _chunks(crop_hw: np.ndarray, budget: int, *, max_waste: float = 2.0,
            min_chunk: int = 8) -> Iterator[list[int]]:
    """Instance indices in chunks of similar crop size.

    Sorted by crop area, a chunk is cut where its padded size would pass ``budget``, or
    ``max_waste`` times its instances' own pixels once it holds ``min_chunk`` instances
    (padding is work too; very small chunks cost kernel launches).
    """
    area = crop_hw[:, 0].astype(np.int64) * crop_hw[:, 1]
    chunk, max_h, max_w, own = [], 0, 0, 0
    for i in np.argsort(area, kind="stable"):
        h, w = max(max_h, crop_hw[i, 0]), max(max_w, crop_hw[i, 1])
        padded = (len(chunk) + 1) * int(h) * int(w)
        if chunk and (padded > budget or (len(chunk) >= min_chunk and padded > max_waste * (own + area[i]))):
            yield chunk
            chunk, h, w, own = [], crop_hw[i, 0], crop_hw[i, 1], 0
        chunk.append(int(i))
        max_h, max_w, own = h, w, own + int(area[i])
    if chunk:
        yield chunk


def runs_by_instance(run_instance: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``n`` instances' boundaries lie in :class:`PastedBatch`'s run arrays.

    Parameters
    ----------
    run_instance : (K,) ndarray of int64
    n : int

    Returns
    -------
    start, end : (n,) ndarray of int64
        Instance i's boundaries are ``run_position[start[i]:end[i]]`` (empty for an empty mask).

    >>> runs_by_instance(np.array([2, 2, 0, 0, 0, 0]), 3)
    (array([2, 0, 0]), array([6, 0, 2]))
    """
    start, end = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if len(run_instance):
        first = np.flatnonzero(np.r_[True, run_instance[1:] != run_instance[:-1]])
        start[run_instance[first]] = first
        end[run_instance[first]] = np.r_[first[1:], len(run_instance)]
    return start, end
