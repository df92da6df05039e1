"""What every segmentation method returns, and how methods are registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Segmentation:
    """One image's segmentation.

    Attributes
    ----------
    labels : (M, N) ndarray of uint8 or uint16
        0 is background; other values are the method's labels.
    thresholds : tuple of float
        Intensity thresholds the method used, on the 0..1 scale (empty if none).
    edge_map : (M, N) ndarray of uint16, optional
        Edge strength for the edge methods, scaled so that 65535 is the kernel's
        largest possible response.
    """

    labels: np.ndarray
    thresholds: tuple = ()
    edge_map: np.ndarray | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: one ``kind`` of the config.

    Attributes
    ----------
    kind : str
        The config's ``kind`` value.
    segment : callable
        ``segment(image, **settings) -> Segmentation`` on one decoded image (or, for a
        batched method, on a list of images).
    colour : {"grey", "rgb"}
        How the image is decoded for this method (see :mod:`segpipe.imageio`).
    check : callable, optional
        ``check(name, settings)`` raises ``ConfigError`` for settings the JSON schema
        cannot express (for example an unsorted threshold list); called before any job.
    batched : bool
        ``segment`` takes a list of images and the method has its own rule (Mask R-CNN's,
        the GPU rule) instead of the per-image loop of ``segment_shard``.
    bytes_per_pixel : float
        Peak memory of segmenting one image, per pixel, decoded image included, measured
        on 8-bit images and doubled for 16-bit ones; a job's memory request is this times
        ``max_image_pixels`` (``workflow/rules/common.smk``).
    """

    kind: str
    segment: Callable[..., Segmentation]
    colour: str = "grey"
    check: Callable[[str, dict], None] | None = field(default=None)
    batched: bool = False
    bytes_per_pixel: float = 48.0
