"""A synthetic fluorescence-nuclei image of any size, written tile by tile, with its truth.

Writes ``OUT/nuclei.tif`` (uint8 grey) and ``OUT/truth/nuclei.tif`` (uint32 instance
labels), both tiled (512 x 512), zlib-compressed BigTIFFs, and prints the object count.
Neither image is ever whole in memory: tifffile takes an iterator of tiles, and each tile
is drawn on its own, so a 18,440 x 18,440 pair (3.4e8 pixels, about 180,000 nuclei) takes
tens of megabytes.

    .venv/bin/python benchmarks/make_large_nuclei.py --height 18440 --width 18440 --out DIR

The nuclei sit on a jittered grid of 40-pixel cells. Whether a cell holds a nucleus (85%
do), and its shape, place and texture, come from a hash of the seed and the cell's row and
column, so any tile can draw every nucleus that reaches it without knowing the others (and
the same seed puts the same nuclei in the same cells at any image size). Each nucleus is an
ellipse with semi-axes of 8 to 14 pixels at a random orientation, placed wholly inside its
cell: nuclei never overlap, and those of neighbouring cells touch now and then. The
intensity is a textured plateau (110 to 190, modulated by +-12 to 20%) on a dim, unevenly
lit background (about 25), blurred by a Gaussian of 1 pixel, as the optics would, then
given the camera's noise (Gaussian, 5 grey levels). The truth labels nuclei 1..N in the
raster order of their cells: unique across the image.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

TILE = 512
# Cell side, share of occupied cells, semi-axis range: one nucleus per 1,880 pixels on
# average, about 180,000 on 18,440 x 18,440.
CELL = 40
OCCUPIED = 0.85
RADII = (8.0, 14.0)
BACKGROUND = 25.0
BLUR_SIGMA = 1.0
# Pixels drawn beyond a tile on each side so that its blur equals the whole image's:
# OpenCV's kernel for sigma 1 is 9 wide (radius 4).
BLUR_RADIUS = 4
NOISE_SIGMA = 5.0

# The per-cell quantities drawn from the hash, one stream each.
_STREAMS = ("occupied", "a", "b", "theta", "y", "x", "brightness", "amplitude",
            "freq_u", "freq_v", "phase_u", "phase_v")


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread 64-bit hash of each element (wrapping)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def cell_uniforms(seed: int, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    """Uniform numbers in [0, 1) for each cell of ``rows`` x ``cols`` (1-D index arrays),
    one array of shape ``(len(rows), len(cols))`` per name of :data:`_STREAMS`.

    A function of the seed and the cell's indices only, not of which tile asks.
    """
    with np.errstate(over="ignore"):
        key = _mix(_mix(np.uint64(seed) + rows.astype(np.uint64)[:, None])
                   ^ (cols.astype(np.uint64)[None, :] * np.uint64(0xD1B54A32D192ED03)))
        return {name: (_mix(key ^ np.uint64(i + 1)) >> np.uint64(11)).astype(np.float64)
                * 2.0**-53 for i, name in enumerate(_STREAMS)}


class NucleiField:
    """The nuclei of an image of ``height`` x ``width`` pixels: any region drawn on demand.

    Parameters
    ----------
    height, width : int
        The image's size in pixels.
    seed : int
        Chooses the nuclei; the same seed gives the same nucleus in the same cell at any
        image size.
    """

    def __init__(self, height: int, width: int, *, seed: int = 0, offset: int = 0) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be >= 1, got {height} x {width}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        if not 0 <= offset < CELL:
            raise ValueError(f"offset must be in [0, {CELL}), got {offset}")
        self.height, self.width, self.seed, self.offset = height, width, seed, offset
        # Only whole cells hold nuclei, so every nucleus lies wholly inside the image.
        self.cells = ((height - offset) // CELL, (width - offset) // CELL)
        # Labels: the rank of each occupied cell in raster order. The one table of the
        # whole grid (4 bytes a cell, 2.5 bytes per 1,000 pixels), so that a tile can
        # number its nuclei without counting those before it.
        occupied = np.zeros(self.cells, bool)
        for r0 in range(0, self.cells[0], 256):
            rows = np.arange(r0, min(r0 + 256, self.cells[0]))
            occupied[rows] = self._draw(rows, np.arange(self.cells[1]))["occupied"]
        self.labels = np.where(occupied, np.cumsum(occupied, dtype=np.uint64)
                               .reshape(self.cells), 0).astype(np.uint32)
        self.count = int(np.count_nonzero(occupied))

    def _draw(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """The nuclei of the cells ``rows`` x ``cols``: shape, centre (image coordinates),
        brightness and texture."""
        u = cell_uniforms(self.seed, rows, cols)
        a = RADII[0] + (RADII[1] - RADII[0]) * u["a"]
        b = RADII[0] + (RADII[1] - RADII[0]) * u["b"]
        theta = math.pi * u["theta"]
        cos, sin = np.cos(theta), np.sin(theta)
        # Half extents of the rotated ellipse along y and x: the centre is placed so that
        # the ellipse stays inside its cell's pixels.
        half_y = np.sqrt((a * sin) ** 2 + (b * cos) ** 2)
        half_x = np.sqrt((a * cos) ** 2 + (b * sin) ** 2)
        y = self.offset + rows[:, None] * CELL + half_y + u["y"] * (CELL - 1 - 2 * half_y)
        x = self.offset + cols[None, :] * CELL + half_x + u["x"] * (CELL - 1 - 2 * half_x)
        return {"occupied": u["occupied"] < OCCUPIED, "a": a, "b": b, "cos": cos,
                "sin": sin, "y": y, "x": x, "brightness": 110 + 80 * u["brightness"],
                "amplitude": 0.12 + 0.08 * u["amplitude"],
                "freq_u": 0.35 + 0.5 * u["freq_u"], "freq_v": 0.35 + 0.5 * u["freq_v"],
                "phase_u": 2 * math.pi * u["phase_u"], "phase_v": 2 * math.pi * u["phase_v"]}

    def _region(self, rows: slice, cols: slice) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                          np.ndarray, np.ndarray]:
        """For each pixel of the region (which may reach beyond the image): whether it is
        inside its cell's nucleus, that nucleus' quantities per pixel, and the pixel's
        offset from the centre along the nucleus' axes (u, v)."""
        ys = np.arange(rows.start, rows.stop)
        xs = np.arange(cols.start, cols.stop)
        cy, cx = (ys - self.offset) // CELL, (xs - self.offset) // CELL
        # A pixel can only be in its own cell's nucleus: nuclei stay inside their cells.
        rows_in = np.arange(max(cy[0], 0), min(cy[-1], self.cells[0] - 1) + 1)
        cols_in = np.arange(max(cx[0], 0), min(cx[-1], self.cells[1] - 1) + 1)
        shape = (ys.size, xs.size)
        if rows_in.size == 0 or cols_in.size == 0:
            return np.zeros(shape, bool), {}, np.zeros(shape), np.zeros(shape)
        cells = self._draw(rows_in, cols_in)
        iy = np.clip(cy - rows_in[0], 0, rows_in.size - 1)[:, None]
        ix = np.clip(cx - cols_in[0], 0, cols_in.size - 1)[None, :]
        at = {k: v[iy, ix] for k, v in cells.items()}
        dy = ys[:, None] - at["y"]
        dx = xs[None, :] - at["x"]
        u = dx * at["cos"] + dy * at["sin"]
        v = dy * at["cos"] - dx * at["sin"]
        inside = ((u / at["a"]) ** 2 + (v / at["b"]) ** 2 <= 1.0) & at["occupied"]
        # Pixels of cells beyond the grid (the image's last partial cells, or the blur's
        # margin outside the image) were clipped onto a real cell above: not inside.
        inside &= ((cy >= 0) & (cy < self.cells[0]))[:, None]
        inside &= ((cx >= 0) & (cx < self.cells[1]))[None, :]
        return inside, at, u, v

    def truth(self, rows: slice, cols: slice) -> np.ndarray:
        """The uint32 instance labels of a region inside the image."""
        inside, _, _, _ = self._region(rows, cols)
        out = np.zeros(inside.shape, np.uint32)
        if inside.any():
            cy = ((np.arange(rows.start, rows.stop) - self.offset) // CELL)[:, None]
            cx = ((np.arange(cols.start, cols.stop) - self.offset) // CELL)[None, :]
            cy, cx = np.broadcast_arrays(cy, cx)
            out[inside] = self.labels[cy[inside], cx[inside]]
        return out

    def image(self, rows: slice, cols: slice, *, noise_key: tuple[int, ...]) -> np.ndarray:
        """The uint8 image of a region inside the image.

        The blurred signal is the same whichever region is asked (it is drawn
        :data:`BLUR_RADIUS` pixels wider, then cropped); the noise is drawn from
        ``noise_key`` (with the seed), so regions that overlap get different noise.
        """
        import cv2

        m = BLUR_RADIUS
        grown_rows = slice(rows.start - m, rows.stop + m)
        grown_cols = slice(cols.start - m, cols.stop + m)
        inside, at, u, v = self._region(grown_rows, grown_cols)
        ys = np.arange(grown_rows.start, grown_rows.stop)[:, None]
        xs = np.arange(grown_cols.start, grown_cols.stop)[None, :]
        # Uneven illumination: +-6 grey levels over a few thousand pixels.
        signal = (BACKGROUND + 3.0 * np.sin(ys / 1500.0) + 3.0 * np.cos(xs / 2300.0)
                  ).astype(np.float32)
        signal = np.broadcast_to(signal, inside.shape).copy()
        if inside.any():
            texture = 1.0 + at["amplitude"] * np.sin(at["freq_u"] * u + at["phase_u"]) \
                * np.cos(at["freq_v"] * v + at["phase_v"])
            signal[inside] = (at["brightness"] * texture)[inside]
        signal = cv2.GaussianBlur(signal, (2 * m + 1, 2 * m + 1), BLUR_SIGMA,
                                  borderType=cv2.BORDER_REPLICATE)[m:-m, m:-m]
        rng = np.random.default_rng([self.seed, *noise_key])
        signal += rng.normal(0.0, NOISE_SIGMA, signal.shape).astype(np.float32)
        return np.clip(np.rint(signal), 0, 255).astype(np.uint8)

    def tile_regions(self) -> list[tuple[int, int, slice, slice]]:
        """The TIFF tiles in file order: (tile row, tile column, rows, columns)."""
        return [(r, c, slice(y, min(y + TILE, self.height)), slice(x, min(x + TILE, self.width)))
                for r, y in enumerate(range(0, self.height, TILE))
                for c, x in enumerate(range(0, self.width, TILE))]


def _padded(block: np.ndarray) -> np.ndarray:
    """A tile at the image's right or bottom edge, zero-padded to the full tile."""
    if block.shape == (TILE, TILE):
        return block
    out = np.zeros((TILE, TILE), block.dtype)
    out[: block.shape[0], : block.shape[1]] = block
    return out


def write(field: NucleiField, out: Path) -> tuple[Path, Path]:
    """Write ``out/nuclei.tif`` and ``out/truth/nuclei.tif`` tile by tile; their paths."""
    import tifffile

    image_path, truth_path = out / "nuclei.tif", out / "truth" / "nuclei.tif"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    shape = (field.height, field.width)
    options = {"shape": shape, "tile": (TILE, TILE), "compression": "zlib", "bigtiff": True,
               "photometric": "minisblack"}
    tifffile.imwrite(image_path, (_padded(field.image(rows, cols, noise_key=(r, c)))
                                  for r, c, rows, cols in field.tile_regions()),
                     dtype=np.uint8, **options)
    tifffile.imwrite(truth_path, (_padded(field.truth(rows, cols))
                                  for _, _, rows, cols in field.tile_regions()),
                     dtype=np.uint32, **options)
    return image_path, truth_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, required=True, help="pixels")
    p.add_argument("--width", type=int, required=True, help="pixels")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for nuclei.tif and truth/nuclei.tif")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offset", type=int, default=0,
                   help=f"pixels the grid of {CELL}-pixel cells starts at (0..{CELL - 1}): "
                        "cells at 0 end on the core lines of tiles 2048/128 (1920 = 48 cells), "
                        "so no nucleus crosses them; 20 centres a row of cells on each line")
    args = p.parse_args(argv)
    try:
        field = NucleiField(args.height, args.width, seed=args.seed, offset=args.offset)
    except ValueError as err:
        p.error(str(err))
    image_path, truth_path = write(field, args.out)
    print(f"{field.count} nuclei in {args.height} x {args.width} pixels: {image_path}, "
          f"{truth_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
