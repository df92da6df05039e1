"""Label images too large to hold whole: OME-Zarr labels and tiled BigTIFF, written tile by tile.

:func:`open_label_writer` takes a mask in blocks (the tiles of a tiled method) and never
holds it whole; :func:`write_zarr_labels` and :func:`write_tiled_tiff` write an array
through the same writers, so a mask written whole and one written in blocks are the same
files, byte for byte.

OME-Zarr (``mask_format: zarr``)
    One folder per mask, ``{index}-{name}.zarr``, in Zarr's version 2 format with OME-NGFF
    0.4 metadata: the version that napari (napari-ome-zarr), ome-zarr-py, Fiji (MoBIE)
    and Bio-Formats all read; NGFF 0.5 needs Zarr version 3, which several of them do not
    read yet. The zarr package writes the arrays; segpipe writes
    the NGFF attributes itself (no ome-zarr dependency)::

        000003-a.zarr/.zgroup                      the root group (holds no image: the
                                                   image stays in its own file)
        000003-a.zarr/labels/.zattrs               {"labels": ["mask"]}
        000003-a.zarr/labels/mask/.zattrs          "multiscales" and "image-label"
        000003-a.zarr/labels/mask/0/.zarray        level 0: the full-size mask
        000003-a.zarr/labels/mask/0/{row}/{col}    its chunks, NGFF's nested "/" keys
        000003-a.zarr/labels/mask/1/...            level 1: level 0 [::2, ::2], ...

    Samples are uint32 whatever the label count, so a writer that gets the labels in
    blocks (and cannot know the count up front) writes what the whole-array writer does.
    Chunks are 1024 x 1024 (4 MiB before compression, about 0.1 to 0.5 MiB after on
    masks): a 10^9-pixel mask is about a thousand files, not millions on a shared file
    system, a viewer fetches a screen's worth in a few chunks, and the pyramid's top level
    (at most 1024 pixels a side) is one chunk. zlib level 1 compresses them, the codec and
    level of the TIFF masks: every Zarr reader has it (Java's included), and unlike Blosc
    it starts no threads, which matters in segpipe's forked writer processes. Chunks that are all background are not stored (Zarr reads
    them as the fill value, 0).

    Level k is level 0 subsampled by ``[::2**k, ::2**k]``: labels are picked, never
    averaged (an average of two labels would be a third), so the dataset's NGFF scale
    ``[2**k, 2**k]`` with no translation maps each level's pixel to the level-0 pixel it
    is. Levels are added until the longer side is at most 1024 pixels.

Tiled BigTIFF (``mask_format: tiff``, images over :data:`TILED_TIFF_PIXELS`)
    256 x 256 tiles, zlib level 1, BigTIFF (64-bit offsets: a uint32 mask over 2^30
    pixels cannot be a classic TIFF). Smaller masks stay plain strip TIFFs, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from segpipe.errors import ImageReadError
from segpipe.imageio import commit_temporary, output_errors, temporary_path

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

NGFF_VERSION = "0.4"
# The label image's name inside the mask's ``labels`` group (what napari names the layer).
LABEL_NAME = "mask"
ZARR_CHUNK = 1024
# The pyramid stops at the first level whose longer side is at most this.
PYRAMID_TOP = 1024
TIFF_TILE = 256
# Masks with more pixels are written as tiled BigTIFF: 8192 x 8192, 256 MiB of uint32.
# Below, a plain TIFF is what every reader opens fastest (and today's masks keep their
# bytes); above, viewers and tile-by-tile readers need tiles to read a region without
# decoding whole rows of strips.
TILED_TIFF_PIXELS = 8192 * 8192
# zlib level 1 for both formats: label images are long runs; higher levels cost time
# and save little.
ZLIB_LEVEL = 1
LABEL_DTYPES = (np.uint8, np.uint16, np.uint32)


def mask_format_of(path: str | os.PathLike) -> str:
    """The mask format a path's suffix names: ``"zarr"``, ``"tiff"`` or ``"png"``.

    >>> [mask_format_of(p) for p in ("a.zarr", "b.TIF", "c.tiff", "d.png")]
    ['zarr', 'tiff', 'tiff', 'png']
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    return "png"


def open_label_writer(path: str | os.PathLike, shape: tuple[int, int],
                      dtype: DTypeLike = np.uint32, *, tile: int | None = None,
                      top_side: int = PYRAMID_TOP) -> LabelWriter:
    """A writer that takes a label image in blocks and never holds it whole.

    ``path``'s suffix chooses the format: ``.zarr`` for OME-Zarr labels, ``.tif`` or
    ``.tiff`` for a tiled BigTIFF. Use it as a context manager: the mask appears at
    ``path`` complete when the block ends, and not at all if it raises. Pixels no block
    covers are 0 (background).

    Parameters
    ----------
    path : str or os.PathLike
        The final mask (a folder for ``.zarr``).
    shape : (int, int)
        The whole mask's height and width.
    dtype : {uint8, uint16, uint32}
        The TIFF's sample type; blocks must cast to it without loss. OME-Zarr masks are
        uint32 whatever it is.
    tile : int, optional
        The side of the stored chunks (OME-Zarr, default 1024) or tiles (TIFF, default
        256, a multiple of 16).
    top_side : int
        OME-Zarr: pyramid levels are added until the longer side is at most this.

    Returns
    -------
    LabelWriter
        ``write(rows, cols, block)`` puts a block at ``[rows, cols]``. OME-Zarr takes
        blocks in any order and writes their chunks as they come (a chunk that two blocks
        share is read back and completed); its pyramid is made at the end, from level 0
        read back one chunk at a time. The TIFF writer must write its tiles in raster
        order: it keeps the rows not yet written out, so blocks must come in raster
        order of rows (a row of tiles, left to right or in any order, then the next):
        it holds about one block height by the mask's width.

    Raises
    ------
    ValueError
        If the suffix is not ``.zarr``, ``.tif`` or ``.tiff``, or the shape, type or
        tile is not one the format can hold.
    OutputError
        If the mask cannot be written; the message names ``path``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open_label_writer(f"{folder}/m.zarr", (3, 4), tile=2) as writer:
    ...     writer.write(slice(0, 2), slice(0, 4), np.ones((2, 4), np.uint32))
    >>> read_zarr_labels(f"{folder}/m.zarr")
    array([[1, 1, 1, 1],
           [1, 1, 1, 1],
           [0, 0, 0, 0]], dtype=uint32)
    """
    shape = _check_shape(shape)
    kind = mask_format_of(path)
    if kind == "zarr":
        return ZarrLabelWriter(path, shape, chunk=tile or ZARR_CHUNK, top_side=top_side)
    if kind == "tiff":
        return TiffLabelWriter(path, shape, dtype, tile=tile or TIFF_TILE)
    raise ValueError(f"no tile-by-tile writer for {Path(path).suffix!r} masks: use .zarr, "
                     f".tif or .tiff (got {os.fspath(path)})")


def write_zarr_labels(path: str | os.PathLike, array: np.ndarray, *, chunk: int = ZARR_CHUNK,
                      top_side: int = PYRAMID_TOP) -> None:
    """Write a label image as OME-Zarr labels (the module's layout), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.zarr`` folder to make; one that exists is replaced.
    array : (M, N) ndarray of uint8, uint16 or uint32
    chunk : int
        The side of the stored chunks.
    top_side : int
        Pyramid levels are added until the longer side is at most this.

    Raises
    ------
    OutputError
        If the folder cannot be written; the message names ``path``.
    ValueError
        If ``array`` is not a 2-D label image.
    """
    _check_array(array)
    with ZarrLabelWriter(path, array.shape, chunk=chunk, top_side=top_side) as writer:
        writer.write(slice(None), slice(None), array)


def write_tiled_tiff(path: str | os.PathLike, array: np.ndarray, *,
                     tile: int = TIFF_TILE) -> None:
    """Write a label image as a tiled, zlib-compressed BigTIFF, atomically.

    Raises
    ------
    OutputError
        If the file cannot be written; the message names ``path``.
    ValueError
        If ``array`` is not a 2-D uint8, uint16 or uint32 array, or ``tile`` is not a
        positive multiple of 16.
    """
    _check_array(array)
    with TiffLabelWriter(path, array.shape, array.dtype, tile=tile) as writer:
        writer.write(slice(None), slice(None), array)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"need a 2-D mask shape of at least 1 x 1 pixels, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _check_array(array: np.ndarray) -> None:
    if array.dtype not in LABEL_DTYPES or array.ndim != 2:
        raise ValueError(f"need a 2-D uint8, uint16 or uint32 array, got {array.ndim}-D "
                         f"{array.dtype}")


def _span(index: slice, size: int, axis: str) -> tuple[int, int]:
    start, stop, step = index.indices(size)
    if step != 1 or stop <= start:
        raise ValueError(f"{axis} must be a non-empty slice with step 1 inside 0..{size}, "
                         f"got {index}")
    return start, stop


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder (or file) a failed or replaced write left, quietly: the failure that
    stopped the write is the one to report, not this."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


class LabelWriter:
    """A mask written in blocks through a temporary path beside ``path`` (the file, or
    folder, appears whole at the end or not at all). A context manager; see
    :func:`open_label_writer`."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]) -> None:
        self.path = Path(path)
        self.shape = _check_shape(shape)
        self.tmp = temporary_path(self.path)
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if err is None:
            self.close()
        else:
            self.abort()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """An OSError becomes an :class:`OutputError` naming ``path``; any failure removes
        the temporary file or folder."""
        with output_errors(self.path, temporary=self.tmp):
            try:
                yield
            except BaseException:
                # First, so that output_errors finds no temporary file left to remove.
                self.abort()
                raise

    def write(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        """Put ``block`` at ``[rows, cols]`` of the mask.

        Raises
        ------
        ValueError
            If the slices leave the mask or have a step, or ``block`` does not fit them or
            holds values of another type than unsigned integers up to 32 bits.
        OutputError
            If writing fails; the temporary output is removed.
        """
        if self.closed:
            raise ValueError(f"{self.path}: the writer is closed")
        r0, r1 = _span(rows, self.shape[0], "rows")
        c0, c1 = _span(cols, self.shape[1], "cols")
        block = np.asarray(block)
        if block.shape != (r1 - r0, c1 - c0):
            raise ValueError(f"block of shape {block.shape} does not fit rows {r0}..{r1} and "
                             f"cols {c0}..{c1} ({r1 - r0} x {c1 - c0})")
        if block.dtype not in LABEL_DTYPES:
            raise ValueError(f"need a uint8, uint16 or uint32 block, got {block.dtype}")
        self._check(r0, r1, block)
        with self.errors():
            self._put(r0, r1, c0, c1, block)

    def close(self) -> None:
        """Finish the mask and give it its final name."""
        if self.closed:
            return
        with self.errors():
            self._finish()
        self.closed = True

    def abort(self) -> None:
        """Drop the temporary output; nothing appears at ``path``."""
        if not self.closed:
            self.closed = True
            self._stop()
            remove_tree(self.tmp)

    def _check(self, r0: int, r1: int, block: np.ndarray) -> None:
        """Refuse a block the format cannot take here (before anything is written)."""

    def _put(self, r0: int, r1: int, c0: int, c1: int, block: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        """Release what an unfinished write holds (threads, open files)."""


class ZarrLabelWriter(LabelWriter):
    """OME-Zarr labels written chunk by chunk; the pyramid is made at :meth:`close`.

    Memory: the blocks given, plus the few chunks Zarr reads back to complete one that
    two blocks share, and at the end one output chunk and the four it comes from.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], *,
                 chunk: int = ZARR_CHUNK, top_side: int = PYRAMID_TOP) -> None:
        super().__init__(path, shape)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if top_side < 1:
            raise ValueError(f"top_side must be >= 1, got {top_side}")
        self.chunk = int(chunk)
        self.top_side = int(top_side)
        with self.errors():
            remove_tree(self.tmp)  # a killed run's leftover
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.group = self._create_groups()
            self.levels = [self._create_level(0, self.shape)]

    def _create_groups(self) -> Any:
        import zarr

        store, self.stop_store = stoppable_store(self.tmp)
        root = zarr.open_group(store, mode="w", zarr_format=2)
        labels = root.create_group("labels")
        labels.attrs.put({"labels": [LABEL_NAME]})
        return labels.create_group(LABEL_NAME)

    def _create_level(self, level: int, shape: tuple[int, int]) -> Any:
        return self.group.create_array(
            str(level), shape=shape, chunks=(self.chunk, self.chunk), dtype=np.uint32,
            compressors={"id": "zlib", "level": ZLIB_LEVEL}, fill_value=0, order="C",
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )

    def _put(self, r0: int, r1: int, c0: int, c1: int, block: np.ndarray) -> None:
        self.levels[0][r0:r1, c0:c1] = block.astype(np.uint32, copy=False)

    def _finish(self) -> None:
        shape = self.shape
        while max(shape) > self.top_side:
            shape = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
            self.levels.append(self._create_level(len(self.levels), shape))
            self._subsample(self.levels[-2], self.levels[-1])
        self.group.attrs.put(ngff_label_attrs(len(self.levels)))
        replace_tree(self.tmp, self.path)

    def _stop(self) -> None:
        stop = getattr(self, "stop_store", None)
        if stop is not None:
            stop()

    def _subsample(self, source: Any, target: Any) -> None:
        """``target = source[::2, ::2]``, one target chunk at a time."""
        c = self.chunk
        height, width = target.shape
        for r0 in range(0, height, c):
            r1 = min(r0 + c, height)
            for c0 in range(0, width, c):
                c1 = min(c0 + c, width)
                target[r0:r1, c0:c1] = source[2 * r0:2 * r1:2, 2 * c0:2 * c1:2]


def stoppable_store(root: Path) -> tuple[Any, Callable[[], None]]:
    """A Zarr store of files under ``root``, and the function that stops it: once that
    returns, no write to ``root`` is under way and none will start.

    Zarr writes the chunks (and metadata files) of one call concurrently, in threads, and
    those still running when one fails carry on after the failure has reached the caller:
    without the stop they would write into the temporary folder after it is removed.
    """
    from zarr.storage import LocalStore

    gate = threading.Lock()
    stopped = False

    def write(path: Path, data: bytes, exclusive: bool) -> None:
        with gate:
            if stopped:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb" if exclusive else "wb") as fh:
                fh.write(data)

    class Store(LocalStore):
        async def set(self, key: str, value: Any) -> None:
            await asyncio.to_thread(write, self.root / key, value.to_bytes(), False)

        async def set_if_not_exists(self, key: str, value: Any) -> None:
            with contextlib.suppress(FileExistsError):
                await asyncio.to_thread(write, self.root / key, value.to_bytes(), True)

    def stop() -> None:
        nonlocal stopped
        with gate:
            stopped = True

    return Store(root), stop


def ngff_label_attrs(levels: int) -> dict[str, Any]:
    """The NGFF 0.4 attributes of a 2-D label image with ``levels`` levels, each the last
    one's ``[::2, ::2]``, stored as arrays ``"0"``, ``"1"``, ...

    >>> attrs = ngff_label_attrs(2)
    >>> [d["coordinateTransformations"] for d in attrs["multiscales"][0]["datasets"]]
    [[{'type': 'scale', 'scale': [1.0, 1.0]}], [{'type': 'scale', 'scale': [2.0, 2.0]}]]
    >>> attrs["image-label"]["source"]
    {'image': '../../'}
    """
    return {
        "multiscales": [{
            "version": NGFF_VERSION,
            "name": LABEL_NAME,
            "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [
                {"path": str(k),
                 "coordinateTransformations": [{"type": "scale", "scale": [2.0**k, 2.0**k]}]}
                for k in range(levels)
            ],
            # NGFF's optional name of the downscaling method, and how it was done.
            "type": "nearest",
            "metadata": {"description": "each level is the previous one [::2, ::2]: labels "
                                        "are picked, never averaged",
                         "method": "numpy slicing [::2, ::2]"},
        }],
        # The source image is NGFF's default place (the root group two levels up), which
        # holds no image here: segpipe's images stay in their own files.
        "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
    }


def replace_tree(tmp: Path, path: Path) -> None:
    """Give a finished temporary folder its final name ``path``, replacing an older one.

    A folder cannot be renamed over a non-empty one, so the older mask is first renamed
    aside (to another ``.segpipe-*.tmp`` name, which a job recognises as a leftover) and
    removed after: ``path`` is briefly absent, never half-written.
    """
    if path.is_dir() and not path.is_symlink():
        aside = temporary_path(path.with_name(path.name + "~"))
        remove_tree(aside)
        os.replace(path, aside)
        os.replace(tmp, path)
        remove_tree(aside)
    else:
        os.replace(tmp, path)


class TiffLabelWriter(LabelWriter):
    """A tiled, zlib-compressed BigTIFF written tile by tile, in raster order.

    tifffile writes the file from an iterator of tiles, in a thread of its own that this
    writer feeds: each row of tiles goes out once every pixel of it has been given (or at
    :meth:`close`, where missing pixels are 0). Memory: the rows not yet written, about a
    block's height times the mask's width.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int],
                 dtype: DTypeLike = np.uint32, *, tile: int = TIFF_TILE) -> None:
        super().__init__(path, shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in LABEL_DTYPES:
            raise ValueError(f"need a uint8, uint16 or uint32 TIFF, got {self.dtype}")
        if tile < 16 or tile % 16:
            raise ValueError(f"TIFF tiles must be a positive multiple of 16 pixels, got {tile}")
        self.tile = int(tile)
        self.top = 0  # the first row not yet sent to tifffile
        self.band = np.zeros((0, self.shape[1]), self.dtype)
        self.covered = np.zeros(0, np.int64)  # pixels given, per row of the band
        self.tiles: queue.Queue = queue.Queue(maxsize=64)
        self.failure: BaseException | None = None
        with self.errors():
            remove_tree(self.tmp)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.thread = threading.Thread(target=self._write_file, name="segpipe-tiff",
                                           daemon=True)
            self.thread.start()

    def _write_file(self) -> None:
        import tifffile

        try:
            tifffile.imwrite(self.tmp, data=self._take_tiles(), shape=self.shape,
                             dtype=self.dtype, tile=(self.tile, self.tile), bigtiff=True,
                             compression="zlib", compressionargs={"level": ZLIB_LEVEL},
                             photometric="minisblack")
        except BaseException as err:  # noqa: BLE001 - handed to the thread that writes the blocks
            self.failure = err

    def _take_tiles(self) -> Iterator[np.ndarray]:
        rows = math.ceil(self.shape[0] / self.tile)
        cols = math.ceil(self.shape[1] / self.tile)
        for _ in range(rows * cols):
            tile = self.tiles.get()
            if tile is None:
                raise _Aborted
            yield tile

    def _send(self, tile: np.ndarray | None) -> None:
        while True:
            if self.failure is not None:
                raise self.failure
            try:
                self.tiles.put(tile, timeout=0.1)
                return
            except queue.Full:
                continue

    def _check(self, r0: int, r1: int, block: np.ndarray) -> None:
        if not np.can_cast(block.dtype, self.dtype):
            raise ValueError(f"a {block.dtype} block does not fit this {self.dtype} TIFF")
        if r0 < self.top:
            raise ValueError(
                f"rows {r0}..{r1}: rows above {self.top} are already written (a tiled TIFF "
                "is written in raster order: give blocks a row of tiles at a time)")

    def _put(self, r0: int, r1: int, c0: int, c1: int, block: np.ndarray) -> None:
        self._extend(r1)
        self.band[r0 - self.top:r1 - self.top, c0:c1] = block
        self.covered[r0 - self.top:r1 - self.top] += c1 - c0
        complete = np.flatnonzero(self.covered < self.shape[1])
        done = len(self.covered) if complete.size == 0 else int(complete[0])
        self._flush(done // self.tile * self.tile)

    def _extend(self, stop: int) -> None:
        more = stop - self.top - len(self.band)
        if more <= 0:
            return
        rows = np.zeros((more, self.shape[1]), self.dtype)
        # Blocks a row of tiles high leave the band empty after each row: no copy then.
        self.band = np.concatenate([self.band, rows]) if len(self.band) else rows
        self.covered = np.concatenate([self.covered, np.zeros(more, np.int64)])

    def _flush(self, rows: int) -> None:
        """Send the band's first ``rows`` rows (whole rows of tiles, or the last, short one)."""
        if rows <= 0:
            return
        t = self.tile
        for r in range(0, rows, t):
            for c in range(0, self.shape[1], t):
                self._send(np.ascontiguousarray(self.band[r:r + t, c:c + t]))
        self.band = self.band[rows:].copy()
        self.covered = self.covered[rows:].copy()
        self.top += rows

    def _finish(self) -> None:
        self._extend(self.shape[0])
        self._flush(self.shape[0] - self.top)
        self.thread.join()
        if self.failure is not None:
            raise self.failure
        commit_temporary(self.tmp, self.path)

    def _stop(self) -> None:
        thread = getattr(self, "thread", None)
        if thread is None or not thread.is_alive():
            return
        # Unblock tifffile's reader of the queue; it stops at the marker.
        while True:
            try:
                self.tiles.put_nowait(None)
                break
            except queue.Full:
                try:
                    self.tiles.get_nowait()
                except queue.Empty:
                    pass
        thread.join()


class _Aborted(Exception):
    """The tile iterator's way of stopping tifffile when the mask is abandoned."""


def zarr_label_group(path: str | os.PathLike) -> Any:
    """The label image group of an OME-Zarr mask: the first label its ``labels`` group
    lists (NGFF's layout), opened read-only.

    Raises
    ------
    ImageReadError
        If ``path`` is not an OME-Zarr folder with labels.
    """
    import zarr

    try:
        labels = zarr.open_group(os.fspath(path), mode="r")["labels"]
        return labels[labels.attrs["labels"][0]]
    except Exception as err:  # zarr raises many types for a bad folder
        raise ImageReadError(path, f"not an OME-Zarr label image ({type(err).__name__}: "
                                   f"{err})") from err


def zarr_levels(path: str | os.PathLike) -> list[Any]:
    """The arrays of an OME-Zarr mask's pyramid, largest first (NGFF's ``datasets``).

    Raises
    ------
    ImageReadError
        If ``path`` is not an OME-Zarr label image.
    """
    group = zarr_label_group(path)
    try:
        datasets = group.attrs["multiscales"][0]["datasets"]
        return [group[d["path"]] for d in datasets]
    except Exception as err:  # zarr raises many types for a bad folder
        raise ImageReadError(path, f"OME-Zarr label image without multiscales "
                                   f"({type(err).__name__}: {err})") from err


def read_zarr_labels(path: str | os.PathLike, *, level: int = 0) -> np.ndarray:
    """An OME-Zarr mask's label image at pyramid ``level`` (0: full size).

    Raises
    ------
    ImageReadError
        If ``path`` is not an OME-Zarr label image, or has no such level.
    """
    levels = zarr_levels(path)
    if not 0 <= level < len(levels):
        raise ImageReadError(path, f"no pyramid level {level} (it has {len(levels)})")
    try:
        return levels[level][...]
    except Exception as err:  # a missing or corrupt chunk
        raise ImageReadError(path, f"cannot read label image ({err})") from err
