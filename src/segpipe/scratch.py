"""Label images of tiled runs, kept on disk and read and written by region.

A method that segments an image tile by tile (:mod:`segpipe.tiles`) writes each tile's
labels into a :class:`ScratchLabels`, and everything after it (the mask file, the row's
statistics, the ground-truth scores, the objects) reads them back one region at a time.
So no step holds the image's label image whole: a uint32 label image of a 3.4e8-pixel
scan is 1.4 GB, more than a job's whole budget for its tiles.

The pixels live in a temporary file (``TMPDIR``, node-local on most clusters) that is
unlinked as soon as it is opened: the kernel frees it when the last reference is closed,
however the job ends, so a killed job leaves nothing behind. Regions are read and
written with ``pread`` and ``pwrite``, row by row, into and out of NumPy arrays: nothing
is memory-mapped, so the resident memory is the regions in flight, not the file (pages of
a mapped file count in a job's resident set while mapped). Writes of disjoint regions may
come from several threads at once.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from segpipe.tiles import Tile

Region = tuple[slice, slice]


class _File:
    """An unlinked temporary file of a fixed size, zeros until written."""

    def __init__(self, size: int) -> None:
        fd, path = tempfile.mkstemp(prefix="segpipe-labels-", suffix=".raw")
        try:
            os.unlink(path)
            os.ftruncate(fd, size)  # sparse: unwritten pixels read as 0, and take no disk
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self._closer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._closer()


class ScratchLabels:
    """A 2-D label image in an unlinked temporary file.

    Index it like an array with a pair of slices (step 1): ``labels[rows, cols]`` reads a
    region into a new array, ``labels[rows, cols] = block`` writes one. ``np.asarray``
    reads it whole (tests, and masks small enough to write whole).

    Parameters
    ----------
    shape : (int, int)
    dtype : numpy dtype
        The stored type (an unsigned integer type).

    Examples
    --------
    >>> labels = ScratchLabels((3, 4), np.uint16)
    >>> labels[0:2, 1:3] = np.array([[1, 2], [3, 4]])
    >>> labels[1:3, 0:4]
    array([[0, 3, 4, 0],
           [0, 0, 0, 0]], dtype=uint16)
    >>> lut = np.array([0, 7, 7, 8, 8], np.uint8)
    >>> labels.mapped(lut)[0:2, 0:4]  # read through a lookup table
    array([[0, 7, 7, 0],
           [0, 8, 8, 0]], dtype=uint8)
    """

    def __init__(self, shape: tuple[int, int], dtype: DTypeLike, *,
                 _file: _File | None = None, _lut: np.ndarray | None = None,
                 _stored: np.dtype | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._stored = np.dtype(_stored if _stored is not None else dtype)
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self._stored.itemsize
        self._file = _file or _File(self.shape[0] * self._row_bytes)
        self._lut = _lut

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def mapped(self, lut: np.ndarray) -> ScratchLabels:
        """A read-only view of the same pixels through ``lut`` (``lut[stored]``): how a
        stitching renumbers its provisional labels without rewriting them."""
        lut = np.asarray(lut)
        return ScratchLabels(self.shape, lut.dtype, _file=self._file, _lut=lut,
                             _stored=self._stored)

    def close(self) -> None:
        """Free the file now (it is freed anyway when the last view is collected)."""
        self._file.close()

    def blocks(self, tiles: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
        """Each tile's core, read, in the order given."""
        for tile in tiles:
            yield tile, self[tile.core]

    def __getitem__(self, key: Region) -> np.ndarray:
        r0, r1, c0, c1 = self._bounds(key)
        out = np.zeros((r1 - r0, c1 - c0), self._stored)
        if out.size:
            fd, row_bytes, item = self._file.fd, self._row_bytes, self._stored.itemsize
            if c0 == 0 and c1 == self.shape[1]:
                _read_exactly(fd, memoryview(out).cast("B"), r0 * row_bytes)
            else:
                for i, row in enumerate(out):
                    _read_exactly(fd, memoryview(row).cast("B"),
                                  (r0 + i) * row_bytes + c0 * item)
        return out if self._lut is None else self._lut[out]

    def __setitem__(self, key: Region, block: np.ndarray) -> None:
        if self._lut is not None:
            raise ValueError("a mapped view of scratch labels is read-only")
        r0, r1, c0, c1 = self._bounds(key)
        block = np.asarray(block)
        if block.shape != (r1 - r0, c1 - c0):
            raise ValueError(f"a block of shape {block.shape} for a region of "
                             f"{(r1 - r0, c1 - c0)}")
        if block.dtype == np.bool_:
            block = block.view(np.uint8)
        if (block.size and not np.can_cast(block.dtype, self._stored)
                and (block.min() < 0 or block.max() > np.iinfo(self._stored).max)):
            raise ValueError(f"labels up to {block.max()} do not fit {self._stored}")
        block = np.ascontiguousarray(block, self._stored)
        fd, row_bytes, item = self._file.fd, self._row_bytes, self._stored.itemsize
        if c0 == 0 and c1 == self.shape[1]:
            _write_exactly(fd, memoryview(block).cast("B"), r0 * row_bytes)
            return
        for i, row in enumerate(block):
            _write_exactly(fd, memoryview(row).cast("B"), (r0 + i) * row_bytes + c0 * item)

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        whole = self[0:self.shape[0], 0:self.shape[1]]
        return whole if dtype is None else whole.astype(dtype)

    def __repr__(self) -> str:
        return f"ScratchLabels(shape={self.shape}, dtype={self.dtype})"

    def _bounds(self, key: Region) -> tuple[int, int, int, int]:
        if not (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(k, slice) and k.step in (None, 1) for k in key)):
            raise TypeError(f"index scratch labels with two slices, got {key!r}")
        (r0, r1, _), (c0, c1, _) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        return r0, max(r0, r1), c0, max(c0, c1)


def _read_exactly(fd: int, buffer: memoryview, offset: int) -> None:
    while len(buffer):
        got = os.preadv(fd, [buffer], offset)
        if got <= 0:
            raise OSError(f"scratch labels: short read at byte {offset}")
        buffer, offset = buffer[got:], offset + got


def _write_exactly(fd: int, buffer: memoryview, offset: int) -> None:
    while len(buffer):
        done = os.pwritev(fd, [buffer], offset)
        if done <= 0:
            raise OSError(f"scratch labels: short write at byte {offset}")
        buffer, offset = buffer[done:], offset + done

