"""Batched Mask R-CNN inference: canvases per size bucket, forward passes, device post-processing.

torchvision's model pads a batch to its largest image, so an image's result would depend on
which images share its batch, and every new batch shape makes cuDNN tune again. Here each
image is resized exactly as torchvision does, then padded to a fixed canvas of its size
bucket (both sides rounded up to ``canvas_step``): an image gets the same canvas whatever it
is batched with, a folder of photos of many sizes needs only a handful of canvas shapes, and
images of one bucket fill whole batches. With ``canvas_step: 32`` the canvas is exactly
torchvision's own padding of a single image.

A tile of a large image (``native``, :mod:`segpipe.maskrcnn.tiled`) skips the resize: it
goes to the network at its own scale, padded to the canvas of its own size, so small
objects of a large scan keep their pixels. Whole images and tiles of one canvas can share
a batch; each is resized or not on its own.

After the ROI heads, boxes go back to the original image size and the masks are pasted,
thresholded and summarised for the whole batch at once on the device
(:mod:`segpipe.maskrcnn.postprocess`); one copy per batch brings the results to the host.

On the CPU a batch goes through all of this one image at a time
(:attr:`Predictor.one_at_a_time`): the same canvas is not enough there, since the CPU's
convolution kernels round differently for another batch size.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from segpipe.imageio import label_dtype
from segpipe.maskrcnn.postprocess import paste_batch, runs_by_instance

if TYPE_CHECKING:
    import torchvision

log = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Detections:
    """One image's detections, sorted by falling score, on the host.

    Attributes
    ----------
    labels : (M, K) ndarray of uint8 or uint16
        Instance label image: label i + 1 is detection i; where masks overlap, the higher
        score wins; 0 = background.
    boxes : (N, 4) ndarray of float32, x0, y0, x1, y1 in pixels
    class_ids : (N,) ndarray of int64
    scores : (N,) ndarray of float32
    areas : (N,) ndarray of int64
        Pixels of each detection's full mask (overlaps included).
    runs : list of (2k,) ndarray of int64
        Each detection's COCO run boundaries (see :mod:`segpipe.rle`).
    """

    labels: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
    runs: list = field(repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    def rles(self) -> list[dict[str, Any]]:
        """COCO compressed RLE of each detection's full mask."""
        from segpipe import rle

        height, width = self.labels.shape
        return rle.compress([rle.counts_from_boundaries(r, height, width) for r in self.runs],
                            height, width)

    def masks(self) -> np.ndarray:
        """(N, M, K) bool: each detection's full mask (decoded from its RLE)."""
        from segpipe import rle

        if not len(self):
            return np.zeros((0, *self.labels.shape), bool)
        return np.stack([rle.decode(r) for r in self.rles()])


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """An (M, K, 3) uint8/uint16 array as a (3, M, K) tensor of the same integer type."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class Predictor:
    """Runs a torchvision Mask R-CNN on batches of same-canvas images.

    Parameters
    ----------
    net : torchvision.models.detection.MaskRCNN
        In eval mode, on ``device``.
    device : torch.device
    mask_threshold : float
    amp : bool
        Autocast on CUDA (ignored on the CPU).
    amp_dtype : {"float16", "bfloat16"}
    channels_last : bool
        NHWC memory layout for the backbone on CUDA (faster convolutions on tensor cores).
    compile : bool
        ``torch.compile`` the backbone (slow first batches, one compile per canvas shape).
    canvas_step : int
        Canvas sides are multiples of this (a multiple of 32).
    """

    def __init__(self, net: torchvision.models.detection.MaskRCNN, device: torch.device, *,
                 mask_threshold: float, amp: bool = True, amp_dtype: str = "float16",
                 channels_last: bool = False, compile: bool = False,
                 canvas_step: int = 128) -> None:
        transform = net.transform
        if canvas_step % transform.size_divisible:
            raise ValueError(
                f"canvas_step must be a multiple of {transform.size_divisible}, got {canvas_step}"
            )
        self.net = net
        self.device = device
        self.mask_threshold = mask_threshold
        self.autocast = {"device_type": device.type, "dtype": AMP_DTYPES[amp_dtype],
                             "enabled": amp and device.type == "cuda"}
        # NHWC helps tensor-core convolutions; on the CPU it is not worth a layout change.
        self.channels_last = channels_last and device.type == "cuda"
        self.canvas_step = canvas_step
        self.min_size = transform.min_size[-1]
        self.max_size = transform.max_size
        self.mean = torch.tensor(transform.image_mean, device=device)[:, None, None]
        self.std = torch.tensor(transform.image_std, device=device)[:, None, None]
        self.backbone = net.backbone
        # Seconds per stage, summed over calls: prepare (upload, resize, canvas), forward,
        # postprocess (paste, label images, runs) and copy (to the host, waiting included).
        # On CUDA they are measured with events on the stream, i.e. GPU time.
        self.stage_s = dict.fromkeys(("prepare", "forward", "postprocess", "copy"), 0.0)
        # The batch runner calls from more than one thread (segpipe.batch_runner).
        self._totals_lock = threading.Lock()
        if self.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone = torch.compile(self.backbone, dynamic=False)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The size torchvision's transform resizes an image of ``height x width`` to.

        >>> p = Predictor.__new__(Predictor); p.min_size, p.max_size = 800, 1333
        >>> p.resized_size(480, 640), p.resized_size(100, 1000)
        ((800, 1066), (133, 1333))
        """
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        return int(height * scale), int(width * scale)

    def canvas_of(self, height: int, width: int, *, native: bool = False) -> tuple[int, ...]:
        """The padded canvas (its bucket) of an image of ``height x width``: resized as
        the model's transform resizes it, or, ``native`` (a tile), at its own size.

        >>> p = Predictor.__new__(Predictor); p.min_size, p.max_size, p.canvas_step = 800, 1333, 128
        >>> p.canvas_of(480, 640), p.canvas_of(480, 640, native=True)
        ((896, 1152), (512, 640))
        """
        step = self.canvas_step
        size = (height, width) if native else self.resized_size(height, width)
        return tuple(math.ceil(s / step) * step for s in size)

    @property
    def one_at_a_time(self) -> bool:
        """Whether a batch goes through the network and the paste one image at a time.

        True on the CPU. There some convolutions (the backbone's and the RPN's, on small
        feature maps) split their sums by the whole input's shape, so an image batched
        with others got other scores (by up to ~1e-5) and boxes (by up to ~1e-3 px) than
        alone; one image per pass makes its numbers a function of the image, its canvas
        and the job's threads only. Batching buys the CPU little (a forward pass already
        takes every core); on a GPU it is the throughput, so batches stay whole there
        (docs/design.md says what that costs).
        """
        return self.device.type == "cpu"

    def __call__(self, images: Sequence[torch.Tensor], *,
                 native: Sequence[bool] | None = None) -> list[Detections]:
        """Detections for a list of (3, M, K) integer tensors that share one canvas.

        Parameters
        ----------
        images : list of (3, M, K) tensor
        native : list of bool, optional
            Per image, whether it goes to the network at its own scale (a tile) instead of
            resized by ``min_size``/``max_size``; None: every image is resized.

        Returns
        -------
        list of Detections, in the order of ``images``; boxes, masks and label images in
        each image's own pixels either way
        """
        native = [False] * len(images) if native is None else [bool(n) for n in native]
        if len(native) != len(images):
            raise ValueError(f"native needs one flag per image: {len(native)} flags for "
                             f"{len(images)} images")
        if self.one_at_a_time and len(images) > 1:
            return [found for image, own in zip(images, native, strict=True)
                    for found in self._predict([image], [own])]
        return self._predict(images, native)

    def _predict(self, images: Sequence[torch.Tensor], native: Sequence[bool]) -> list[Detections]:
        clock = _StageClock(self.device)
        with torch.inference_mode():
            canvas, resized = self._canvas(images, native)
            clock.mark("prepare")
            outputs = self.forward(canvas, resized)
            clock.mark("forward")
            results = self._postprocess(outputs, resized, [tuple(im.shape[-2:]) for im in images],
                                        clock)
        with self._totals_lock:
            clock.add_to(self.stage_s)
        return results

    def forward(self, canvas: torch.Tensor,
                image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """The network's forward pass over one batch canvas, and nothing else.

        Preparing the canvas, pasting the masks and the copy to the host stay outside this
        method, so a stand-in network can replace it alone:
        ``benchmarks/bench_maskrcnn.py --stand-in`` does so to measure every other stage
        of the pipeline without a GPU.

        Parameters
        ----------
        canvas : (B, 3, H, W) float tensor, on the device
            Normalised, resized images, each at the top left of its slot.
        image_sizes : list of (int, int)
            (height, width) of each resized image inside the canvas.

        Returns
        -------
        list of dict
            Per image, torchvision's ROI-head outputs, by falling score: ``boxes``
            (N, 4) float, x0, y0, x1, y1 in the resized image's pixels; ``labels`` (N,)
            int64; ``scores`` (N,) float; ``masks`` (N, 1, 28, 28) float, probabilities
            in each box, before pasting.
        """
        from torchvision.models.detection.image_list import ImageList

        with torch.autocast(**self.autocast):
            features = self.backbone(canvas)
            proposals, _ = self.net.rpn(ImageList(canvas, image_sizes), features)
            outputs, _ = self.net.roi_heads(features, proposals, image_sizes)
        return outputs

    def _canvas(self, images: Sequence[torch.Tensor],
                native: Sequence[bool]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        # torchvision's own resize function (private, unchanged since torchvision 0.6), so
        # that images reach the backbone exactly as the model's transform would send them.
        from torchvision.models.detection.transform import _resize_image_and_masks

        canvases = {self.canvas_of(*im.shape[-2:], native=own)
                    for im, own in zip(images, native, strict=True)}
        if len(canvases) != 1:
            raise ValueError(f"images of one batch must share a canvas, got {sorted(canvases)}")
        (height, width), = canvases
        batch = torch.zeros((len(images), 3, height, width), device=self.device)
        resized = []
        for slot, image, own in zip(batch, images, native, strict=True):
            top = 65535.0 if image.dtype == torch.uint16 else 255.0
            # The integer tensor crosses to the device (a quarter of float32's bytes).
            x = image.to(self.device, non_blocking=True).float().div_(top)
            x = (x - self.mean) / self.std
            if not own:
                x, _ = _resize_image_and_masks(x, self.min_size, self.max_size)
            slot[:, : x.shape[1], : x.shape[2]].copy_(x)
            resized.append((int(x.shape[1]), int(x.shape[2])))
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch, resized

    def _postprocess(self, outputs: list[dict[str, torch.Tensor]],
                     resized: list[tuple[int, int]], original: list[tuple[int, ...]],
                     clock: _StageClock) -> list[Detections]:
        from torchvision.models.detection.transform import resize_boxes

        boxes = [resize_boxes(o["boxes"].float(), r, s) for o, r, s in zip(outputs, resized, original)]
        counts = [len(b) for b in boxes]
        masks = torch.cat([o["masks"][:, 0].float() for o in outputs])
        image_index = torch.repeat_interleave(
            torch.arange(len(outputs), device=self.device), torch.tensor(counts, device=self.device)
        )
        rank = torch.cat([torch.arange(n, device=self.device) for n in counts])
        pasted = paste_batch(masks, torch.cat(boxes), image_index, rank, original,
                             threshold=self.mask_threshold)
        clock.mark("postprocess")
        # One copy to the host per batch; the CPU waits once, for all of it.
        host = _to_host([
            pasted.labels, pasted.areas, pasted.run_instance, pasted.run_position,
            torch.cat(boxes), torch.cat([o["labels"] for o in outputs]),
            torch.cat([o["scores"].float() for o in outputs]),
        ])
        clock.mark("copy")
        labels, areas, run_instance, run_position, boxes, class_ids, scores = host
        run_start, run_end = runs_by_instance(run_instance, len(areas))
        results, first = [], 0
        for (height, width), offset, n in zip(original, pasted.offsets, counts):
            image_labels = labels[offset : offset + height * width].reshape(height, width)
            runs = [run_position[run_start[i] : run_end[i]] for i in range(first, first + n)]
            results.append(Detections(
                labels=image_labels.astype(label_dtype(n)),
                boxes=boxes[first : first + n], class_ids=class_ids[first : first + n],
                scores=scores[first : first + n], areas=areas[first : first + n], runs=runs,
            ))
            first += n
        return results


class _StageClock:
    """Marks the end of each stage: CUDA events on the device's stream, else the wall clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks = [("start", self._now())]

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, stage: str) -> None:
        self.marks.append((stage, self._now()))

    def add_to(self, totals: dict[str, float]) -> None:
        """Add each stage's seconds to ``totals`` (after the last mark has completed)."""
        if self.cuda:
            self.marks[-1][1].synchronize()
        for (_, before), (stage, after) in zip(self.marks, self.marks[1:]):
            seconds = before.elapsed_time(after) / 1000 if self.cuda else after - before
            totals[stage] = totals.get(stage, 0.0) + seconds


def _to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    moved = [t.to("cpu", non_blocking=True) for t in tensors]
    if any(t.is_cuda for t in tensors):
        torch.cuda.current_stream().synchronize()
    return [t.numpy() for t in moved]


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


_Image = TypeVar("_Image")
_Result = TypeVar("_Result")


def predict_with_backoff(
    predict_fn: Callable[[Sequence[_Image]], Iterable[_Result]],
    images: Sequence[_Image],
    batch_size: int,
    *,
    on_fail: Callable[[int, RuntimeError], _Result],
) -> tuple[list[_Result], int]:
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
