"""Opening an image for segmentation: whole, or as a :class:`segpipe.tiles.TileSource`.

A tiled TIFF (whole-slide scans, OME-TIFF pyramids) is read tile by tile through
tifffile's chunked store, and an OME-Zarr image (a ``.zarr`` folder) through zarr's, never
whole; any other file is decoded whole by :func:`segpipe.imageio.read_image` and then cut
into tiles in memory. Either way a tile's pixels are the ones the whole-image decoding
gives: the same plane, channel and projection (:func:`segpipe.planes.reduce_axes`,
applied per pixel), the same grey or RGB conversion, the same intensity scaling.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.errors import ImageReadError
from segpipe.imageio import ZarrImage, is_zarr_image, luma, open_zarr_image, read_image
from segpipe.planes import DEFAULT_READING, PLANE_MARK, Reading
from segpipe.tiles import AUTO_OVERLAP, AUTO_SIZE, ArraySource, TileSource, Tiling, choose_tiling

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass
class Opened:
    """An image ready to segment: ``image`` whole, or ``source`` with its ``tiling``."""

    image: np.ndarray | None = None
    source: TileSource | None = None
    tiling: Tiling | None = None


def image_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from the file's header, without decoding it; None if unknown."""
    from segpipe.imageio import open_zarr_image, probe_image

    path = Path(path)
    if is_zarr_image(path):
        try:
            return open_zarr_image(path).shape
        except ImageReadError:
            return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    if head[:4] in _TIFF_MAGIC:
        tiff = _tiff_series(path)
        if tiff is not None:
            return tiff.shape
    found = probe_image(head)
    return None if found is None else (found[1], found[0])


def _tiff_series(path: Path) -> _TiffSeries | None:
    """What a TIFF's first series is (one open of the file), or None if tifffile
    cannot read it."""
    import tifffile

    from segpipe.imageio import _ome_channel_names

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes.upper()
            shape = dict(zip(axes, series.shape, strict=True))
            return _TiffSeries(axes=axes, shape=(shape["Y"], shape["X"]),
                               tiled=bool(series.pages[0].is_tiled), dtype=series.dtype,
                               names=_ome_channel_names(tif))
    except Exception:  # noqa: BLE001 - tifffile raises many types; read_image diagnoses
        return None


@dataclass(frozen=True)
class _TiffSeries:
    axes: str
    shape: tuple[int, int]
    tiled: bool
    dtype: np.dtype
    names: tuple[str, ...]


def open_image(path: str | os.PathLike, *, mode: str, reading: Reading | None,
               tiles: Tiling | str | None, bytes_per_pixel: float,
               memory_mb: int | None, max_pixels: int | None, max_tiled_pixels: int,
               notes: list[str], info: dict[str, Any]) -> Opened:
    """Open ``path`` whole, as :func:`segpipe.imageio.read_image` does, or tiled.

    An image is tiled when ``tiles`` asks for it (:func:`segpipe.tiles.choose_tiling`):
    ``auto`` tiles an image larger than ``max_pixels`` or too large for the job's memory
    (``memory_mb``, less 500 MB for the interpreter, at ``bytes_per_pixel``); a fixed
    tiling every image larger than one tile. An image that is not tiled goes through
    exactly the whole-image path, so its result is the one ``tiles: null`` gives.

    ``max_pixels`` bounds every whole decoding: a tiled TIFF or an OME-Zarr image is read
    tile by tile up to ``max_tiled_pixels``, any other file is decoded whole, tiled or not,
    only up to ``max_pixels``.

    Raises
    ------
    ImageReadError
        As :func:`segpipe.imageio.read_image`, and for a tiled image of more than
        ``max_tiled_pixels`` pixels.
    """
    reading = reading or DEFAULT_READING
    tiling = None
    if tiles is not None:
        shape = image_shape(path)
        if shape is not None:
            budget = None if memory_mb is None else max(0, memory_mb - 500) * 1e6
            tiling = choose_tiling(tiles, shape, bytes_per_pixel=bytes_per_pixel,
                                   memory_bytes=budget)
            if tiles == "auto" and max_pixels is not None and math.prod(shape) > max_pixels:
                # Too large to read whole: tiled whatever the memory (one tile, if the
                # limit is below a tile's size).
                tiling = tiling or Tiling(size=AUTO_SIZE, overlap=AUTO_OVERLAP)
        if tiling is not None and math.prod(shape) > max_tiled_pixels:
            raise ImageReadError(
                path, f"image of {shape[1]} x {shape[0]} = {math.prod(shape):,} pixels is "
                f"larger than max_tiled_pixels ({int(max_tiled_pixels):,}); raise it in the "
                "config to segment it")
    if tiling is None:
        image = read_image(path, mode=mode, max_pixels=max_pixels, notes=notes,
                           reading=reading, info=info)
        return Opened(image=image)
    source = (chunked_tiff(path, mode=mode, reading=reading, notes=notes, info=info)
              or chunked_zarr(path, mode=mode, reading=reading, notes=notes, info=info))
    if source is None:
        # A format that cannot be read in parts is decoded whole: max_image_pixels bounds
        # that, tiled or not (a small compressed file can hold a huge image).
        image = read_image(path, mode=mode, max_pixels=max_pixels, notes=notes,
                           reading=reading, info=info)
        source = ArraySource(image)
    return Opened(source=source, tiling=tiling)


class TiffTileSource:
    """A :class:`segpipe.tiles.TileSource` over a tiled TIFF's first series, read through
    tifffile's chunked (zarr) store: a region decodes only the TIFF tiles it touches.

    Only images whose samples need no image-wide statistic to scale are read this way
    (8- and 16-bit samples with ``intensity_range: dtype``, or a fixed ``[lo, hi]``).
    """

    def __init__(self, path: Path, array: Any, axes: str, *, mode: str, reading: Reading,
                 shape: tuple[int, int], dtype: np.dtype, names: tuple[str, ...]) -> None:
        self.path = path
        self.array = array
        self.axes = axes
        self.mode = mode
        self.reading = reading
        self.names = names
        self.shape = shape + ((3,) if mode == "rgb" else ())
        self.dtype = dtype

    def read(self, rows: slice, cols: slice, notes: list[str] | None = None) -> np.ndarray:
        from segpipe.planes import reduce_axes

        index = tuple(rows if a == "Y" else cols if a == "X" else slice(None)
                      for a in self.axes)
        block = np.asarray(self.array[index])
        try:
            block = reduce_axes(block, self.axes, self.reading, channel_names=self.names,
                                notes=notes)
        except ValueError as err:
            raise ImageReadError(self.path, str(err)) from err
        if block.dtype == np.bool_:
            block = block.view(np.uint8) * np.uint8(255)
        return _in_mode(block, self.mode, self.reading)


def _in_mode(block: np.ndarray, mode: str, reading: Reading) -> np.ndarray:
    """A region of one plane as :func:`segpipe.imageio.read_image` ends a decoding: grey or
    RGB, then scaled by a rule that needs no image-wide statistic."""
    from segpipe.planes import normalise

    if mode == "grey" and block.ndim == 3:
        block = luma(block)
    elif mode == "rgb" and block.ndim == 2:
        block = np.repeat(block[..., None], 3, axis=2)
    block, _, _ = normalise(block, reading.intensity_range)
    return block


def _scaled_in_parts(dtype: np.dtype, reading: Reading) -> bool:
    """Whether samples of ``dtype`` scale without an image-wide statistic: 8- and 16-bit
    samples under ``intensity_range: dtype``, any under a fixed ``[lo, hi]``."""
    rule = reading.intensity_range
    return isinstance(rule, list | tuple) or (rule == "dtype" and dtype in (np.uint8, np.uint16))


def _scaled_dtype(dtype: np.dtype) -> np.dtype:
    """The sample type :func:`segpipe.planes.normalise` gives samples of ``dtype``."""
    return np.dtype(np.uint8 if dtype == np.uint8 else np.uint16)


def _record_range(dtype: np.dtype, reading: Reading, info: dict[str, Any]) -> None:
    """Put in ``info`` the intensity range a whole read records, for a source whose
    samples scale in parts (:func:`_scaled_in_parts`) to ``dtype``."""
    rule = reading.intensity_range
    fixed = isinstance(rule, list | tuple)
    info.update(intensity_lo=float(rule[0]) if fixed else 0.0,
                intensity_hi=float(rule[1]) if fixed else float(np.iinfo(dtype).max))


def chunked_tiff(path: str | os.PathLike, *, mode: str, reading: Reading,
                 notes: list[str], info: dict[str, Any]) -> TiffTileSource | None:
    """A tile source over a tiled TIFF, or None when the file is not one, or when its
    samples need an image-wide statistic to scale (then it is decoded whole)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return None
    except OSError:
        return None
    found = _tiff_series(path)
    if found is None or not found.tiled:
        return None
    try:
        import tifffile
        import zarr
    except ImportError:
        return None
    axes, shape, dtype, names = found.axes, found.shape, found.dtype, found.names
    if not _scaled_in_parts(dtype, reading):
        return None
    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    array = zarr.open(store, mode="r")
    source = TiffTileSource(path, array, axes, mode=mode, reading=reading, shape=shape,
                            dtype=_scaled_dtype(dtype), names=names)
    # The notes a whole read would give (channel used, projection): from a first small
    # region, which every setting treats as the whole image.
    source.read(slice(0, 1), slice(0, 1), notes=notes)
    _record_range(source.dtype, reading, info)
    return source


class ZarrTileSource:
    """A :class:`segpipe.tiles.TileSource` over an OME-Zarr image's level 0: a region reads
    only the chunks it touches, of the planes the reading keeps (one channel, one time
    point, one slice or the slices a projection needs).

    Made by :func:`chunked_zarr`, for samples that need no image-wide statistic to scale.
    """

    def __init__(self, image: ZarrImage, *, mode: str, reading: Reading,
                 dtype: np.dtype) -> None:
        self.image = image
        self.mode = mode
        self.reading = reading
        self.shape = image.shape + ((3,) if mode == "rgb" else ())
        self.dtype = dtype

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        from segpipe.imageio import read_zarr_region

        block = read_zarr_region(self.image, rows, cols, reading=self.reading)
        return _in_mode(block, self.mode, self.reading)


def chunked_zarr(path: str | os.PathLike, *, mode: str, reading: Reading,
                 notes: list[str], info: dict[str, Any]) -> ZarrTileSource | None:
    """A tile source over an OME-Zarr image, or None when ``path`` is no ``.zarr`` folder,
    or when its samples need an image-wide statistic to scale (then it is read whole).

    Raises
    ------
    ImageReadError
        If the folder is not an OME-Zarr image segpipe can read, or ``reading`` asks for
        a channel, slice or time point it does not have.
    """
    from segpipe.imageio import open_zarr_image, zarr_plane_notes

    if not is_zarr_image(path):
        return None
    image = open_zarr_image(path)
    found = zarr_plane_notes(image, reading)
    if not _scaled_in_parts(image.array.dtype, reading):
        return None
    notes.extend(found)
    source = ZarrTileSource(image, mode=mode, reading=reading,
                            dtype=_scaled_dtype(image.array.dtype))
    _record_range(source.dtype, reading, info)
    return source


def reduced_image(path: str | os.PathLike, max_side: int, *, mode: str = "rgb",
                  reading: Reading | None = None) -> np.ndarray:
    """An image subsampled by ``[::s, ::s]`` for display, ``s`` the largest power of two
    that keeps its longer side at least ``max_side``: a tiled TIFF or an OME-Zarr image is
    read through its chunked store (only the result is held whole), any other file decoded
    whole first.

    For the report of images too large to decode whole; the masks' matching reduction is
    :func:`segpipe.imageio.read_label_level`, so the two line up pixel for pixel.
    """
    from segpipe.imageio import _subsample_step

    reading = reading or DEFAULT_READING
    shape = image_shape(path)
    step = 1 if shape is None else _subsample_step(shape, max_side)
    source = (chunked_tiff(path, mode=mode, reading=reading, notes=[], info={})
              or chunked_zarr(path, mode=mode, reading=reading, notes=[], info={}))
    if source is not None:
        return source.read(slice(None, None, step), slice(None, None, step))
    image = read_image(path, mode=mode, max_pixels=None, reading=reading)
    return image[::step, ::step]


def plane_ids(rel: str, data_path: str | os.PathLike, reading: Reading) -> list[str]:
    """The image ids of one file: its path, or one id per plane with ``z`` / ``time``
    ``all`` (TIFFs and OME-Zarr images with more than one slice or time point; other
    files are one image)."""
    wanted = [a for a, s in (("t", reading.time), ("z", reading.z)) if s == "all"]
    if not wanted or not rel.lower().endswith((".tif", ".tiff", ".zarr")):
        return [rel]
    import itertools

    if rel.lower().endswith(".zarr"):
        try:
            sizes = open_zarr_image(data_path).sizes
        except ImageReadError:  # unreadable: one id, whose row will say why
            return [rel]
    else:
        sizes = _tiff_sizes(data_path, reading)
        if sizes is None:
            return [rel]
    counts = {a: sizes.get(a.upper(), 1) for a in wanted}
    if all(n == 1 for n in counts.values()):
        return [rel]
    axes = [a for a in wanted if counts[a] > 1]
    return [rel + PLANE_MARK + ",".join(f"{a}={k}" for a, k in zip(axes, combo))
            for combo in itertools.product(*(range(counts[a]) for a in axes))]


def _tiff_sizes(path: str | os.PathLike, reading: Reading) -> dict[str, int] | None:
    """A TIFF's axis lengths as :func:`segpipe.planes.reduce_axes` reads them, or None if
    unreadable."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes.upper()
            sizes = dict(zip(axes, series.shape))
    except Exception:  # noqa: BLE001 - tifffile raises many types for a bad file
        return None
    pages = [a for a in axes if a not in "YXSCZT"]
    if pages and "Z" not in sizes and reading.channel is None:
        sizes["Z"] = sizes[pages[0]]  # as reduce_axes reads them
    return sizes
