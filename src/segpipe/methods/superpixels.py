"""Superpixels: SLIC and Felzenszwalb's graph-based segmentation (scikit-image)."""

from __future__ import annotations

import numpy as np

from segpipe.imageio import intensity_max, label_dtype
from segpipe.methods.base import Segmentation

ALGORITHMS = ("slic", "felzenszwalb")


def segment_superpixels(rgb: np.ndarray, *, algorithm: str = "slic", n_segments: int = 250,
                        compactness: float = 10.0, scale: float = 100.0, sigma: float = 0.8,
                        min_size: int = 50) -> Segmentation:
    """Partition the image into superpixels: compact regions of similar colour.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8 or uint16
        A grey image arrives as three equal channels, which gives SLIC on the grey values.
    algorithm : {"slic", "felzenszwalb"}
        ``slic``: k-means in colour (CIELAB) and position, ``n_segments`` regions of about
        equal size, ``compactness`` trading colour for shape
        (``skimage.segmentation.slic``). ``felzenszwalb``: merges regions of a pixel graph
        while the difference between them is small relative to ``scale``; region count
        follows the image (``skimage.segmentation.felzenszwalb``).
    n_segments, compactness : int, float
        SLIC's settings.
    scale, min_size : float, int
        Felzenszwalb's settings (``min_size`` in pixels).
    sigma : float
        Gaussian smoothing before segmenting, both algorithms.

    Returns
    -------
    Segmentation
        ``labels``: regions 1..K covering every pixel (no background).

    Examples
    --------
    >>> rgb = np.zeros((20, 20, 3), np.uint8); rgb[:, 10:] = 255
    >>> labels = segment_superpixels(rgb, algorithm="felzenszwalb", sigma=0, min_size=5).labels
    >>> int(labels.min()), int(labels.max())
    (1, 2)
    """
    from skimage.segmentation import felzenszwalb, slic

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    image = rgb.astype(np.float32) * np.float32(1.0 / intensity_max(rgb.dtype))
    if algorithm == "slic":
        labels = slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma,
                      channel_axis=-1, start_label=1)
    else:
        labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size,
                              channel_axis=-1) + 1
    return Segmentation(labels=labels.astype(label_dtype(int(labels.max()))))
