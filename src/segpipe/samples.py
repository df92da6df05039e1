"""Sample images for a default run: scikit-image's bundled photographs, no network."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from segpipe.imageio import write_bytes_atomic

# (skimage.data function, file name). A mix of PNG and JPEG, grey and colour, so the
# default run exercises both decoders and both colour paths.
SAMPLES = (
    ("coins", "coins.png"),
    ("camera", "camera.png"),
    ("moon", "moon.png"),
    ("page", "page.png"),
    ("horse", "horse.png"),
    ("astronaut", "astronaut.jpg"),
    ("coffee", "coffee.jpg"),
    ("chelsea", "chelsea.jpg"),
    ("rocket", "rocket.jpg"),
    ("immunohistochemistry", "immunohistochemistry.jpg"),
)


def write_sample_images(out_dir: str | os.PathLike) -> list[Path]:
    """Write the sample images into ``out_dir``; return their paths."""
    import skimage.data

    out_dir = Path(out_dir)
    written = []
    for func, name in SAMPLES:
        image = getattr(skimage.data, func)()
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(Path(name).suffix, image)
        if not ok:
            raise OSError(f"could not encode sample {name}")
        write_bytes_atomic(out_dir / name, data.tobytes())
        written.append(out_dir / name)
    return written
