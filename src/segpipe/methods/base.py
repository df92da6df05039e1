"""What every segmentation method returns, and how methods are registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segmentation:
    """One image's segmentation.

    Attributes
    ----------
    labels : (M, N) ndarray of uint8 or uint16, or ScratchLabels
        0 is background; other values are the method's labels. A tiled method's
        (``MethodSpec.tiled``) are on disk (:class:`segpipe.scratch.ScratchLabels`), and
        are finished block by block (:mod:`segpipe.tiled_finish`).
    thresholds : tuple of float
        Intensity thresholds the method used, on the 0..1 scale (empty if none).
    edge_map : (M, N) ndarray of uint16, or ScratchLabels, optional
        Edge strength for the edge methods, scaled so that 65535 is the kernel's
        largest possible response.
    foreground : {"bright", "dark"}, optional
        The polarity used, for methods with a ``foreground`` setting (``auto`` chooses
        it per image); recorded in the row's ``foreground`` column.
    tiles : int, optional
        The number of tiles, when the image was segmented in tiles.
    cut_objects : int, optional
        Stitched tiled runs: objects cut at a tile line because they were wider than the
        overlap (0 when none; None when not tiled or when the method is exact).
    """

    labels: np.ndarray
    thresholds: tuple = ()
    edge_map: np.ndarray | None = None
    foreground: str | None = None
    # Tiled runs only (MethodSpec.tiled): the tiles the image was cut into, and the
    # objects the stitching had to cut at a tile line (wider than the overlap).
    tiles: int | None = None
    cut_objects: int | None = None


# What a method's non-zero labels mean; scoring, objects and the report follow it.
#   foreground: 1 is object, 0 background; the objects are the 8-connected components.
#   classes:    ordered bands or clusters (0 included); no objects, no foreground.
#   regions:    a partition of the image into regions; no objects, no foreground.
#   instances:  each non-zero label is one object.
LABEL_MEANINGS = ("foreground", "classes", "regions", "instances")
# Where a method runs: "image" in the per-image runner (segpipe.image_runner, one CPU core
# per job), "batch" in the batch runner (segpipe.batch_runner), the device rule's.
RUNNERS = ("image", "batch")


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: everything the workflow needs to know about one ``kind``.

    Attributes
    ----------
    kind : str
        The config's ``kind`` value; it must also have a block in the config schema.
    segment : callable
        ``segment(image, **settings) -> Segmentation`` on one decoded image; for a batch
        kind, ``segment(images, **settings)`` on a list of arrays in memory (the Python
        face of the same model as ``load``).
    labels : {"foreground", "classes", "regions", "instances"}
        What the labels mean (:data:`LABEL_MEANINGS`). Decides which metrics apply
        (foreground metrics for foreground and instances; object F1, COCO AP and the
        per-object table on the method's objects), never the kind's name.
    colour : {"grey", "rgb"}
        How the image is decoded for this method (see :mod:`segpipe.imageio`); 16-bit
        samples are kept in both.
    check : callable, optional
        ``check(name, settings)`` raises ``ConfigError`` for settings the JSON schema
        cannot express (for example an unsorted threshold list); called before any job.
    runner : {"image", "batch"}
        ``image``: the per-image runner calls ``segment`` on each image, one core per job.
        ``batch``: the batch runner, in the device rule, drives the model ``load`` gives.
    load : callable, optional
        Batch kinds only: ``load(**settings, weights_dir=..., models_dir=...)`` (the settings less the
        runner's own, ``batch_size``, ``workers``, ``writers``) gives a model with
        ``canvas_of(height, width)``, ``predict(tensors, batch_size, on_fail=...)``,
        ``class_names``, ``stage_s`` and, optionally, ``concurrent_batches`` (see
        :class:`segpipe.maskrcnn.MaskRCNN`).
    weights : callable, optional
        ``weights(settings, models_dir=...) -> segpipe.maskrcnn.weights.WeightsSource``: the model file
        the kind's jobs read, so that the workflow fetches named weights once before any
        job and re-runs the jobs when the file changes.
    edge_maps : bool
        The method returns an ``edge_map`` that is written beside its masks.
    bytes_per_pixel : float
        Peak memory of segmenting one image, per pixel, decoded image included, measured
        on 8-bit images and doubled for 16-bit ones; a job's memory request is this times
        ``max_image_pixels`` (``workflow/rules/common.smk``).
    tiled : callable, optional
        ``tiled(source, *, tiling, threads, **settings) -> Segmentation``: the same method
        on an image read tile by tile (:mod:`segpipe.tiles`); ``source`` is a
        :class:`segpipe.tiles.TileSource`, ``tiling`` a :class:`segpipe.tiles.Tiling`. Kinds
        without one are segmented whole, whatever ``tiles`` says.
    summary : str
        One line for ``segpipe methods`` and the README.
    schema : dict, optional
        For a kind registered from outside the package: the JSON-schema ``properties`` of
        its settings (``kind`` excluded), added to the config schema when it is loaded
        (:func:`segpipe.config.load_schema`). Built-in kinds have their block in
        ``workflow/schemas/config.schema.yaml`` instead.
    """

    kind: str
    segment: Callable[..., Segmentation | list]
    labels: str
    colour: str = "grey"
    check: Callable[[str, dict], None] | None = field(default=None)
    runner: str = "image"
    load: Callable[..., object] | None = field(default=None)
    weights: Callable[[dict], object] | None = field(default=None)
    edge_maps: bool = False
    bytes_per_pixel: float = 48.0
    summary: str = ""
    schema: dict | None = field(default=None, compare=False, hash=False)
    tiled: Callable[..., Segmentation] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MEANINGS:
            raise ValueError(f"{self.kind}: labels must be one of {LABEL_MEANINGS}, got {self.labels!r}")
        if self.runner not in RUNNERS:
            raise ValueError(f"{self.kind}: runner must be one of {RUNNERS}, got {self.runner!r}")
        if (self.runner == "batch") != (self.load is not None):
            raise ValueError(f"{self.kind}: a batch kind needs a load function, and only a batch kind")
        if self.colour not in ("grey", "rgb"):
            raise ValueError(f"{self.kind}: colour must be 'grey' or 'rgb', got {self.colour!r}")

    @property
    def has_objects(self) -> bool:
        """Whether the labels define objects (for object F1, COCO AP, object tables)."""
        return self.labels in ("foreground", "instances")
