"""Images processed in tiles: the grid, where a tile's pixels come from, when to tile.

A method that runs tiled (``MethodSpec.tiled``) never sees the whole image: it asks a
:class:`TileSource` for the pixels of one tile at a time, so its working memory follows the
tile size, not the image size.

The grid (:func:`tile_grid`) cuts the image into *cores* that partition it: every pixel
belongs to exactly one core. Each tile *reads* its core grown by a ``margin`` on every
side (clipped at the image border): the one-pixel halo of a 3x3 kernel, or, for methods
that are only stitched (watershed, region growing, superpixels, Mask R-CNN), half the
``overlap`` between neighbouring tiles, so that an object near a core's border is seen
whole by at least one tile. Results are kept for the core only.

Config (``tiles``, at the top level and per method)::

    tiles: null                       # whole images, as before tiling existed
    tiles: {size: 2048, overlap: 128} # every image larger than one tile
    tiles: auto                       # only images too large to process whole

``size`` is the side of the region a tile reads (core + margins), ``overlap`` the width
two neighbouring tiles share.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

Result = TypeVar("Result")

# What ``tiles: auto`` uses when an image must be tiled.
AUTO_SIZE = 2048
AUTO_OVERLAP = 128
# The most pixels one tiled image may have (``max_tiled_pixels``' default): 10^9, a
# 31,600 x 31,600 scan. Memory follows the tile whatever the image; this bounds one job's
# time (watershed: about 12 minutes on one core; docs/tiles.md)
# and its scratch files (up to 8 bytes a pixel of TMPDIR).
DEFAULT_MAX_TILED_PIXELS = 1_000_000_000


@dataclass(frozen=True)
class Tiling:
    """How to cut images into tiles: read regions of ``size`` pixels a side, neighbours
    sharing ``overlap`` pixels.

    Examples
    --------
    >>> Tiling(size=2048, overlap=128).core
    1920
    """

    size: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"tile size must be >= 1, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"tile overlap must be >= 0 and < size ({self.size}), "
                             f"got {self.overlap}")

    @property
    def core(self) -> int:
        """The side of a tile's core: ``size - overlap``."""
        return self.size - self.overlap

    @property
    def margin(self) -> int:
        """How far a tile reads beyond its core on each side: half the overlap (the lower
        half, so that ``core + 2 * margin <= size``)."""
        return self.overlap // 2

    def tiles_of(self, shape: tuple[int, ...]) -> list[Tile]:
        """The grid of an image of ``shape`` (``(M, N)`` or ``(M, N, C)``)."""
        return tile_grid(shape[:2], core=self.core, margin=self.margin)

    def needed(self, shape: tuple[int, ...]) -> bool:
        """Whether an image of ``shape`` spans more than one tile."""
        return shape[0] > self.size or shape[1] > self.size


def parse_tiling(setting: object) -> Tiling | str | None:
    """The config's ``tiles`` value as a :class:`Tiling`, ``"auto"`` or None.

    >>> parse_tiling({"size": 512, "overlap": 32}), parse_tiling("auto"), parse_tiling(None)
    (Tiling(size=512, overlap=32), 'auto', None)
    """
    if setting is None or setting == "auto":
        return setting
    if isinstance(setting, Mapping):
        return Tiling(size=int(setting["size"]), overlap=int(setting.get("overlap", 0)))
    raise ValueError(f"tiles must be null, 'auto' or {{size, overlap}}, got {setting!r}")


def choose_tiling(setting: Tiling | str | None, shape: tuple[int, ...], *,
                  bytes_per_pixel: float, memory_bytes: float | None) -> Tiling | None:
    """The tiling an image of ``shape`` gets, or None to process it whole.

    ``auto`` tiles (with :data:`AUTO_SIZE` and :data:`AUTO_OVERLAP`) only an image whose
    whole-image processing, ``bytes_per_pixel`` times its pixels, would not fit in
    ``memory_bytes`` (the job's memory); images that fit are processed whole, exactly as
    with ``tiles: null``. A fixed tiling applies to every image larger than one tile.

    >>> auto = choose_tiling("auto", (20000, 16000), bytes_per_pixel=72, memory_bytes=4e9)
    >>> auto, choose_tiling("auto", (512, 512), bytes_per_pixel=72, memory_bytes=4e9)
    (Tiling(size=2048, overlap=128), None)
    """
    if setting is None:
        return None
    if setting == "auto":
        pixels = math.prod(shape[:2])
        if memory_bytes is None or pixels * bytes_per_pixel <= memory_bytes:
            return None
        setting = Tiling(size=AUTO_SIZE, overlap=AUTO_OVERLAP)
    assert isinstance(setting, Tiling)
    return setting if setting.needed(shape) else None


# Bytes a pixel of a whole decoding of an image that cannot be read in parts (PNG, JPEG,
# strip TIFF: RGB, 8 bits a sample), and of a ground-truth mask read whole (uint32): a
# tiled job may still hold these, bounded by max_image_pixels.
WHOLE_DECODE_BYTES = 3
WHOLE_TRUTH_BYTES = 4
# The finishing passes' blocks (segpipe.tiled_finish.BLOCK, 1024 a side) in flight: a few
# label, truth and object arrays of 4 bytes each, per thread, and the TIFF writer's band.
FINISH_BYTES_PER_THREAD = 200e6


def tiled_job_bytes(tiling: Tiling, *, bytes_per_pixel: float, threads: int,
                    whole_pixels: int, truth: bool) -> float:
    """The memory a job that tiles its images needs beyond the interpreter, by design:
    what the rules' ``mem_mb`` asks for under a fixed ``tiles`` setting.

    It follows the tile size and the threads, never the image's size: two tiles per
    thread in flight (:func:`map_tiles`) at the kind's ``bytes_per_pixel``, the finishing
    passes' blocks, and an image in a format that must be decoded whole (and its
    ground-truth mask, when it is no tiled TIFF), bounded by ``whole_pixels``
    (``max_image_pixels``).

    >>> round(tiled_job_bytes(Tiling(2048, 128), bytes_per_pixel=72, threads=1,
    ...                       whole_pixels=250_000_000, truth=False) / 1e9, 2)
    1.55
    """
    in_flight = 2 * threads * tiling.size ** 2 * bytes_per_pixel
    whole = whole_pixels * (WHOLE_DECODE_BYTES + (WHOLE_TRUTH_BYTES if truth else 0))
    return in_flight + threads * FINISH_BYTES_PER_THREAD + whole


@dataclass(frozen=True)
class Tile:
    """One tile of a grid, in image coordinates.

    Attributes
    ----------
    index : int
        Its position in the grid's raster order.
    row, col : int
        Its row and column in the grid.
    core : (slice, slice)
        The pixels it is responsible for; the cores of a grid partition the image.
    read : (slice, slice)
        The pixels it reads: the core and its margins, clipped to the image.
    """

    index: int
    row: int
    col: int
    core: tuple[slice, slice]
    read: tuple[slice, slice]

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core, in the coordinates of the read region: ``block[tile.inner]``."""
        return tuple(slice(c.start - r.start, c.stop - r.start)
                     for c, r in zip(self.core, self.read, strict=True))

    @property
    def origin(self) -> tuple[int, int]:
        """The image coordinates of the read region's first pixel."""
        return self.read[0].start, self.read[1].start


def tile_grid(shape: tuple[int, int], *, core: int, margin: int = 0) -> list[Tile]:
    """Cut an image of ``shape`` into cores of ``core`` pixels a side (the last row and
    column of cores are narrower), each read with ``margin`` pixels around it.

    Examples
    --------
    >>> [(t.core, t.read) for t in tile_grid((5, 3), core=3, margin=1)]  # doctest: +NORMALIZE_WHITESPACE
    [((slice(0, 3, None), slice(0, 3, None)), (slice(0, 4, None), slice(0, 3, None))),
     ((slice(3, 5, None), slice(0, 3, None)), (slice(2, 5, None), slice(0, 3, None)))]
    """
    if core < 1 or margin < 0:
        raise ValueError(f"need core >= 1 and margin >= 0, got {core}, {margin}")
    height, width = shape
    tiles = []
    for r, y in enumerate(range(0, height, core)):
        for c, x in enumerate(range(0, width, core)):
            y1, x1 = min(y + core, height), min(x + core, width)
            tiles.append(Tile(
                index=len(tiles), row=r, col=c,
                core=(slice(y, y1), slice(x, x1)),
                read=(slice(max(0, y - margin), min(height, y1 + margin)),
                      slice(max(0, x - margin), min(width, x1 + margin))),
            ))
    return tiles


class TileSource(Protocol):
    """Where a tiled method reads pixels: any region of one decoded image.

    ``read`` returns what :func:`segpipe.imageio.read_image` would have decoded for those
    pixels (grey ``(h, w)`` or RGB ``(h, w, 3)``, uint8 or uint16), so a tiled method sees
    the same samples as a whole-image one.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, rows: slice, cols: slice) -> np.ndarray: ...


class ArraySource:
    """A :class:`TileSource` over an image already in memory (formats that cannot be read
    in parts: PNG, JPEG, untiled TIFF...)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.shape = image.shape
        self.dtype = image.dtype

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        return self.image[rows, cols]


def read_tile(source: TileSource, tile: Tile) -> np.ndarray:
    """The pixels of ``tile``'s read region."""
    return source.read(*tile.read)


def tiled_settings(config: Mapping[str, Any], method: Mapping[str, Any]) -> object:
    """A method's ``tiles`` setting: its own if it has one, else the config's."""
    return method["tiles"] if "tiles" in method else config.get("tiles")


def map_tiles(function: Callable[[Tile], Result], tiles: Sequence[Tile], *,
              threads: int = 1) -> Iterator[Result]:
    """``function(tile)`` for every tile, yielded in the grid's order, run on ``threads``
    threads.

    At most two tiles per thread are in flight, so a caller that reduces the results as
    they come (sums histograms, say) holds only those, however many tiles the image has.
    The order of the results, and so anything computed from them, does not depend on
    ``threads``.

    >>> from segpipe.tiles import tile_grid
    >>> list(map_tiles(lambda t: t.index, tile_grid((4, 4), core=2), threads=2))
    [0, 1, 2, 3]
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads == 1 or len(tiles) < 2:
        yield from map(function, tiles)
        return
    workers = min(threads, len(tiles))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Executor.map would submit every tile at once and keep each result until its
        # turn: with workers ahead of the caller, results for the whole image.
        pending: deque[Future[Result]] = deque()
        for tile in tiles:
            pending.append(pool.submit(function, tile))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
