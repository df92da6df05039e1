"""Mask R-CNN (torchvision) as a segpipe method: batched, GPU-ready instance segmentation.

:func:`load_maskrcnn` gives the model the batch runner (:mod:`segpipe.batch_runner`)
drives; :func:`segment_maskrcnn` runs the same model on arrays in memory, and
:func:`maskrcnn_tiled` on one image in tiles at its own scale (:mod:`segpipe.maskrcnn.tiled`).

This module imports no torch at import time: the workflow reads the method registry on
every start, and importing torchvision costs seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from segpipe.layout import WEIGHTS_DIR

if TYPE_CHECKING:
    import numpy as np
    import torch

    from segpipe.maskrcnn.inference import Detections, Predictor
    from segpipe.maskrcnn.tiled import StitchedDetections
    from segpipe.tiles import TileSource, Tiling

# Batches in the runner's device stage at once on a GPU (see MaskRCNN.concurrent_batches).
ACCELERATOR_BATCHES = 3


class MaskRCNN:
    """A loaded Mask R-CNN, ready for batches of same-canvas images.

    The interface every batch kind's model offers the batch runner: ``canvas_of``,
    ``predict``, ``class_names``, ``stage_s`` and ``concurrent_batches``. A kind that is
    tiled (its ``MethodSpec.tiled`` is set) also takes ``native`` in both: tiles go to the
    network at their own scale.

    Parameters
    ----------
    predictor : segpipe.maskrcnn.inference.Predictor
    class_names : list of str
        The name of each class id.
    native : bool
        Every image goes to the network at its own scale, not only tiles (a model
        trained at native scale, :mod:`segpipe.training`).
    """

    def __init__(self, predictor: Predictor, class_names: list[str], *,
                 native: bool = False) -> None:
        self.predictor = predictor
        self.class_names = class_names
        self.native = native

    @property
    def concurrent_batches(self) -> int:
        """Batches the runner may have in :meth:`predict` at once: three on an
        accelerator (one computes while the host prepares the next and finishes the last),
        one on the CPU."""
        return 1 if self.predictor.device.type == "cpu" else ACCELERATOR_BATCHES

    @property
    def stage_s(self) -> dict[str, float]:
        """Seconds per stage, summed: prepare, forward, postprocess, copy."""
        return self.predictor.stage_s

    def canvas_of(self, height: int, width: int, *, native: bool = False) -> tuple[int, ...]:
        """The padded canvas an image of ``height x width`` is batched on: resized by
        ``min_size``/``max_size``, or at its own size when ``native`` (a tile)."""
        return self.predictor.canvas_of(height, width, native=native or self.native)

    def predict(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        *,
        on_fail: Callable[[int, RuntimeError], Detections | None],
        native: Sequence[bool] | None = None,
    ) -> tuple[list[Detections | None], int]:
        """Detections for (3, M, N) integer tensors of one canvas, in chunks of
        ``batch_size`` halved on out-of-memory; an image that fails alone goes to
        ``on_fail(position, error)``. ``native`` says, per tensor, whether it goes to the
        network at its own scale (a tile) instead of resized; None: every one is resized.
        Returns the detections and the batch size that fitted."""
        from segpipe.maskrcnn.inference import predict_with_backoff

        flags = [False] * len(tensors) if native is None else list(native)
        flags = [own or self.native for own in flags]

        def predict(chunk: Sequence[tuple[torch.Tensor, bool]]) -> list[Detections]:
            return self.predictor([t for t, _ in chunk], native=[own for _, own in chunk])

        return predict_with_backoff(predict, list(zip(tensors, flags, strict=True)), batch_size,
                                    on_fail=on_fail)

    def segment(self, images: Sequence[np.ndarray], *, batch_size: int = 8) -> list[Detections]:
        """Detections for a list of (M, N, 3) arrays, in their order.

        Images are grouped by canvas, so each image's result depends neither on the other
        images of the list nor on ``batch_size``: bit for bit on the CPU, up to the last
        digits of scores and boxes on a GPU (docs/design.md).
        """
        from segpipe.maskrcnn.inference import to_chw_tensor

        return self._by_canvas([to_chw_tensor(im) for im in images], native=False,
                               batch_size=batch_size)

    def segment_tiled(self, image: np.ndarray | TileSource, tiling: Tiling, *,
                      batch_size: int = 8) -> StitchedDetections:
        """Detections of one (M, N, 3) image, or a :class:`segpipe.tiles.TileSource`,
        cut into ``tiling``'s tiles, each at its own scale, stitched by the ownership rule
        (:mod:`segpipe.maskrcnn.tiled`).

        The tiles are grouped by canvas as :meth:`segment` groups images, so the result
        does not depend on ``batch_size`` (bit for bit on the CPU).
        """
        import numpy as np

        from segpipe.maskrcnn.inference import to_chw_tensor
        from segpipe.maskrcnn.tiled import DetectionStitcher
        from segpipe.tiles import ArraySource, read_tile

        source = ArraySource(image) if isinstance(image, np.ndarray) else image
        grid = tiling.tiles_of(source.shape)
        found = self._by_canvas([to_chw_tensor(read_tile(source, tile)) for tile in grid],
                                native=True, batch_size=batch_size)
        stitcher = DetectionStitcher(source.shape, grid)
        for tile, detections in zip(grid, found, strict=True):
            stitcher.add(tile, detections)
        return stitcher.result()

    def _by_canvas(self, tensors: list[torch.Tensor], *, native: bool,
                   batch_size: int) -> list[Detections]:
        """Each tensor's detections, predicted in batches of one canvas each."""
        by_canvas = {}
        for i, t in enumerate(tensors):
            by_canvas.setdefault(self.canvas_of(*t.shape[-2:], native=native), []).append(i)

        def fail(position: int, err: RuntimeError) -> None:
            raise err

        results = [None] * len(tensors)
        for members in by_canvas.values():
            found, _ = self.predict([tensors[i] for i in members], batch_size, on_fail=fail,
                                    native=[native] * len(members))
            for i, result in zip(members, found):
                results[i] = result
        return results


def load_maskrcnn(
    *,
    model: str,
    weights: str | Mapping[str, str],
    seed: int,
    score_threshold: float,
    mask_threshold: float,
    max_detections: int,
    min_size: int,
    max_size: int,
    device: str,
    amp: bool,
    amp_dtype: str,
    channels_last: bool,
    compile: bool,
    canvas_step: int,
    weights_dir: str | os.PathLike = WEIGHTS_DIR,
    models_dir: str | os.PathLike | None = None,
) -> MaskRCNN:
    """Build torchvision's Mask R-CNN with its weights, on ``device``, ready to predict.

    Parameters: those of :func:`segment_maskrcnn` (whose defaults are the schema's), all
    given, ``weights_dir``, where named weights are read from (never downloaded here),
    and ``models_dir``, where ``{trained: NAME}`` models are (``results/models``).

    Raises
    ------
    segpipe.errors.WeightsMissingError
        If named weights could not be fetched: the message says which file to put where.
    """
    import torch

    from segpipe.errors import WeightsMissingError
    from segpipe.maskrcnn.inference import Predictor
    from segpipe.maskrcnn.model import build_model, resolve_device
    from segpipe.maskrcnn.weights import missing_weights_message, read_status, resolve_weights

    source = resolve_weights(model, weights, weights_dir=weights_dir, models_dir=models_dir)
    status = read_status(source.status_path) if source.kind == "named" else None
    if status is not None and not status["ok"]:
        raise WeightsMissingError(missing_weights_message(status))
    dev = resolve_device(device)
    net, names, native = build_model(model=model, weights=weights, seed=seed,
                                     score_threshold=score_threshold,
                                     max_detections=max_detections, min_size=min_size,
                                     max_size=max_size, device=dev, weights_dir=weights_dir,
                                     models_dir=models_dir)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # a handful of canvas shapes: tune each once
    predictor = Predictor(net, dev, mask_threshold=mask_threshold, amp=amp, amp_dtype=amp_dtype,
                          channels_last=channels_last, compile=compile, canvas_step=canvas_step)
    return MaskRCNN(predictor, names, native=native)


def segment_maskrcnn(
    images: Sequence[np.ndarray],
    *,
    model: str = "maskrcnn_resnet50_fpn_v2",
    weights: str | Mapping[str, str] = "DEFAULT",
    seed: int = 0,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_detections: int = 100,
    min_size: int = 800,
    max_size: int = 1333,
    batch_size: int = 8,
    device: str = "auto",
    amp: bool = True,
    amp_dtype: str = "float16",
    channels_last: bool = True,
    compile: bool = False,
    canvas_step: int = 128,
    workers: int | str = "auto",
    writers: int | str = "auto",
) -> list[Detections]:
    """Instance segmentation of a list of RGB images with torchvision's Mask R-CNN.

    The arrays-in-memory face of the model the batch runner drives (:func:`load_maskrcnn`,
    :class:`MaskRCNN`); images are grouped by canvas (see
    :mod:`segpipe.maskrcnn.inference`), so each image's result does not depend on the
    other images of the list or on ``batch_size`` (bit for bit on the CPU, up to the last
    digits of scores and boxes on a GPU: docs/design.md).

    Parameters
    ----------
    images : list of (M, N, 3) ndarray of uint8 or uint16
    model : {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"}
    weights : str or dict
        ``DEFAULT`` or another torchvision weights name (read from ``resources/weights``),
        a path to a checkpoint (a state dict, or a ``model.pt`` segpipe trained, which
        brings its own network, classes and scale: ``model``, ``min_size`` and
        ``max_size`` are then not used), ``{"trained": NAME}`` (``results/models/NAME/
        model.pt``), or ``none`` for random weights seeded by ``seed``.
    seed : int
        Seeds the random initialisation of ``weights: none``.
    score_threshold, mask_threshold : float
        Detections below the score are dropped; mask probabilities above the mask
        threshold are the instance's pixels.
    max_detections, min_size, max_size : int
        torchvision's ``box_detections_per_img`` and resize bounds.
    batch_size : int
        Images per forward pass on a GPU (halved on out-of-memory); the CPU takes a batch
        one image at a time, so that an image's numbers do not depend on its neighbours.
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
        Decoding and writing processes of the batch runner
        (:func:`segpipe.batch_runner.run_batches`); arrays in memory need neither, so
        they are accepted here only to take a method's settings as they are.

    Returns
    -------
    list of segpipe.maskrcnn.inference.Detections
        One per image: label image, boxes, class ids, scores, areas and mask runs, by
        falling score.
    """
    net = load_maskrcnn(model=model, weights=weights, seed=seed, score_threshold=score_threshold,
                        mask_threshold=mask_threshold, max_detections=max_detections,
                        min_size=min_size, max_size=max_size, device=device, amp=amp,
                        amp_dtype=amp_dtype, channels_last=channels_last, compile=compile,
                        canvas_step=canvas_step)
    return net.segment(images, batch_size=batch_size)


def maskrcnn_tiled(
    source: np.ndarray | TileSource,
    *,
    tiling: Tiling,
    threads: int = 1,
    model: str = "maskrcnn_resnet50_fpn_v2",
    weights: str | Mapping[str, str] = "DEFAULT",
    seed: int = 0,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_detections: int = 100,
    min_size: int = 800,
    max_size: int = 1333,
    batch_size: int = 8,
    device: str = "auto",
    amp: bool = True,
    amp_dtype: str = "float16",
    channels_last: bool = True,
    compile: bool = False,
    canvas_step: int = 128,
    workers: int | str = "auto",
    writers: int | str = "auto",
) -> StitchedDetections:
    """:func:`segment_maskrcnn` on one image in tiles, each at its own scale, its instances
    stitched (``MethodSpec.tiled``, the arrays-in-memory face of what the batch runner
    does with a tiled image).

    Each tile's read region goes to the network without the ``min_size``/``max_size``
    resize; ``max_detections`` applies per tile. Instances are kept once by the ownership
    rule of :mod:`segpipe.stitch`; one that no tile sees whole (wider than the overlap) is
    kept as its pieces inside the tiles' cores, counted in ``cut_objects``
    (:mod:`segpipe.maskrcnn.tiled`).

    Parameters
    ----------
    source : (M, N, 3) ndarray or TileSource
    tiling : Tiling
        Tile size and overlap.
    threads : int
        Taken for the registry's signature; the forward pass uses torch's threads.
    model, weights, seed, score_threshold, mask_threshold, max_detections, min_size, \
max_size, batch_size, device, amp, amp_dtype, channels_last, compile, canvas_step, workers, \
writers
        As for :func:`segment_maskrcnn`; ``min_size`` and ``max_size`` still bound the
        images that are not tiled, never a tile.

    Returns
    -------
    segpipe.maskrcnn.tiled.StitchedDetections
        The image's detections (labels 1..N by falling score, boxes in image
        coordinates), its number of tiles and of cut objects.
    """
    net = load_maskrcnn(model=model, weights=weights, seed=seed, score_threshold=score_threshold,
                        mask_threshold=mask_threshold, max_detections=max_detections,
                        min_size=min_size, max_size=max_size, device=device, amp=amp,
                        amp_dtype=amp_dtype, channels_last=channels_last, compile=compile,
                        canvas_step=canvas_step)
    return net.segment_tiled(source, tiling, batch_size=batch_size)


__all__ = ["MaskRCNN", "load_maskrcnn", "maskrcnn_tiled", "segment_maskrcnn"]
