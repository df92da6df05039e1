"""Reading images and writing label images: with :mod:`segpipe.labelstore` (OME-Zarr and
tiled BigTIFF masks, written tile by tile), the only modules of segpipe that touch pixels
on disk.

Decoding policy (applied once, here, for every method):

- Samples stay in the file's own integer type: uint8 or uint16. 1-bit images become
  uint8 (0 and 255). Other sample types (float, signed, 32-bit; TIFF) become uint16 by
  the ``intensity_range`` rule (:func:`segpipe.planes.normalise`), which can also
  rescale 8- and 16-bit images.
- TIFF and OME-TIFF are read with tifffile, their channels, z-slices and time points
  reduced to one image by the ``channel``, ``z`` and ``time`` settings
  (:func:`segpipe.planes.reduce_axes`); OME-Zarr images (``.zarr`` folders) with zarr,
  their NGFF axes reduced the same way (:func:`open_zarr_image`); other formats, and TIFFs
  tifffile cannot decode, with OpenCV.
- ``mode="grey"``: one channel. Colour is converted with the ITU-R BT.601 luma weights
  (0.299 R + 0.587 G + 0.114 B), as libjpeg, OpenCV and Pillow's "L" mode do.
- ``mode="rgb"``: three channels in R, G, B order; a grey image is repeated into all three.
- Alpha is dropped, not composited: a transparent pixel keeps the colour it stores.
- Palette images are expanded through their palette.
- The EXIF orientation tag is applied, so the arrays (and every mask) are upright as a
  viewer shows them.

OpenCV does the decoding: it is the fastest well-kept decoder on PyPI for JPEG and PNG
(about 3 ms for a 1024x1024 JPEG to grey here, see docs/benchmarks.md). When it fails it
says nothing about why, so Pillow is asked for the cause, on the error path only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from segpipe.errors import ImageReadError, OutputError

if TYPE_CHECKING:
    import tifffile
    from numpy.typing import DTypeLike

    from segpipe.planes import Reading

# Files with these suffixes are images to segment; the listing puts any other file in the
# skipped table (segpipe.manifest), and a reader given one says "unsupported file type".
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".webp", ".pbm", ".pgm", ".ppm"}
)

log = logging.getLogger(__name__)

# The process umask, read once (reading it means setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)

_FLAGS = {
    # IMREAD_ANYDEPTH keeps 16-bit samples; neither flag set ignores EXIF orientation.
    "grey": cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH,
    "rgb": cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH,
}

# Label images are long runs of equal values: zlib's fastest level, the "up" row filter
# and run-length matching write them several times faster than OpenCV's default adaptive
# filtering, and smaller (about 3 ms for a 1024x1024 mask, docs/benchmarks.md).
_PNG_FAST = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
]


# ``max_image_pixels``' default: a 15,800 x 15,800 image. Larger files are refused before
# decoding, so a job's memory is bounded by design (a 87 KB 1-bit PNG can hold 4e8 pixels).
DEFAULT_MAX_PIXELS = 250_000_000


def read_image(path: str | os.PathLike, *, mode: str = "grey",
               max_pixels: int | None = DEFAULT_MAX_PIXELS, notes: list[str] | None = None,
               reading: Reading | None = None,
               info: dict[str, Any] | None = None) -> np.ndarray:
    """Decode an image file into an array, following the module's policy.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    mode : {"grey", "rgb"}
        Grey gives an (M, N) array, RGB an (M, N, 3) array in R, G, B order.
    max_pixels : int or None
        Refuse images with more pixels (width x height, read from the file's header
        before decoding). None: no limit but OpenCV's own (2**30).
    notes : list, optional
        Receives a sentence about anything the caller should record but that is not an
        error: which channel, slice or page of a multi-dimensional file was used, how
        float samples were scaled.
    reading : segpipe.planes.Reading, optional
        ``channel``, ``z``, ``time`` (TIFF and OME-TIFF, read with tifffile) and
        ``intensity_range`` (every format): see :mod:`segpipe.planes`.
    info : dict, optional
        Receives ``intensity_lo`` and ``intensity_hi``, the sample values mapped to 0 and 1.

    Returns
    -------
    image : (M, N) or (M, N, 3) ndarray of uint8 or uint16
        8-bit samples stay uint8; every other sample type becomes uint16 by the
        ``intensity_range`` rule.

    Raises
    ------
    ImageReadError
        If the file is empty, not an image, truncated, of an unsupported sample type,
        asks for a channel or plane it does not have, or cannot be read at all. The
        message names the file and the cause.
    ValueError
        If ``mode`` is not "grey" or "rgb".
    """
    if mode not in _FLAGS:
        raise ValueError(f"mode must be 'grey' or 'rgb', got {mode!r}")
    from segpipe.planes import DEFAULT_READING, normalise

    path = Path(path)
    reading = reading or DEFAULT_READING
    notes = [] if notes is None else notes
    if is_zarr_image(path):
        image = _read_zarr(path, reading, notes, max_pixels)
    else:
        image = _read_file(path, mode, reading, notes, max_pixels)
    if mode == "grey" and image.ndim == 3:
        image = luma(image)
    elif mode == "rgb" and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image, lo, hi = normalise(image, reading.intensity_range, notes)
    if info is not None:
        info.update(intensity_lo=lo, intensity_hi=hi)
    return image


def _read_file(path: Path, mode: str, reading: Reading, notes: list[str],
               max_pixels: int | None) -> np.ndarray:
    """An image file's samples: a TIFF through tifffile (reduced to one image by
    ``reading``, in its own sample type), any other file through OpenCV (in ``mode``)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(path, f"cannot read file ({err.strerror or err})") from err
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    header = probe_image(data)
    pages = 1
    if header is not None:
        width, height, pages = header
        _check_pixels(path, (height, width), max_pixels)
    image = None
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        image = _read_tiff(path, data, reading, notes, max_pixels)
    if image is None:
        if pages > 1:
            notes.append(f"multi-page file ({pages} pages): only the first page was segmented")
        image = _decode(path, data, mode)
    return image


def _check_pixels(path: Path, shape: tuple[int, int], max_pixels: int | None) -> None:
    height, width = shape
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            path, f"image of {width} x {height} = {width * height:,} pixels is larger than "
            f"max_image_pixels ({int(max_pixels):,}); raise it in the config to segment it")


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 grey of an RGB image of any sample type (as OpenCV's RGB2GRAY)."""
    if rgb.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    grey = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return grey.astype(rgb.dtype) if rgb.dtype.kind in "iu" else grey


def _read_tiff(path: Path, data: bytes, reading: Reading, notes: list[str],
               max_pixels: int | None = None) -> np.ndarray | None:
    """A TIFF through tifffile, reduced to one image by ``reading``; None if tifffile
    cannot decode it (a compression it lacks a codec for), to let OpenCV try.

    The whole series is read (a projection needs every slice), so a stack of more than
    three times ``max_pixels`` samples is refused before it is: a job's memory request
    is sized from ``max_image_pixels``."""
    import io

    import tifffile

    from segpipe.planes import reduce_axes

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            if max_pixels is not None and series.size > 3 * max_pixels:
                raise ImageReadError(
                    path, f"stack of shape {series.shape} ({series.axes}) holds "
                    f"{series.size:,} samples, more than 3 x max_image_pixels "
                    f"({int(max_pixels):,}); raise it or split the file")
            names = _ome_channel_names(tif)
            array = series.asarray()
            axes = series.axes
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 - tifffile raises many types; OpenCV and Pillow diagnose next
        return None
    try:
        found = []
        image = reduce_axes(array, axes, reading, channel_names=names, notes=found)
    except ValueError as err:
        raise ImageReadError(path, str(err)) from err
    notes.extend(found)
    if image.dtype == np.bool_:
        image = image.view(np.uint8) * np.uint8(255)
    return image


# A folder with this suffix is one image: OME-Zarr (OME-NGFF), read with zarr. ``.ome.zarr``
# ends in it too.
ZARR_SUFFIX = ".zarr"
# NGFF's axis names, as the axis letters of tifffile that segpipe.planes reads.
_NGFF_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def is_zarr_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder read as one OME-Zarr image: one named ``*.zarr``."""
    return Path(path).suffix.lower() == ZARR_SUFFIX and os.path.isdir(path)


@dataclass(frozen=True)
class ZarrImage:
    """Level 0 of an OME-Zarr image, opened but not read.

    Attributes
    ----------
    path : Path
        The ``.zarr`` folder.
    array : zarr.Array
        The full-resolution array (the multiscales' first dataset); indexing it reads only
        the chunks a region touches.
    axes : str
        One letter per dimension of ``array``, in :func:`segpipe.planes.reduce_axes`'s
        letters (``T``, ``C``, ``Z``, then ``Y``, ``X``).
    names : tuple of str
        Channel names (the ``omero`` metadata's labels), for ``channel: "DAPI"``.
    """

    path: Path
    array: Any
    axes: str
    names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.array.shape[-2]), int(self.array.shape[-1])

    @property
    def sizes(self) -> dict[str, int]:
        """Axis letter to length."""
        return dict(zip(self.axes, (int(n) for n in self.array.shape), strict=True))


def open_zarr_image(path: str | os.PathLike) -> ZarrImage:
    """Open an OME-Zarr image folder (Zarr format 2 or 3, OME-NGFF 0.1 to 0.5) at level 0.

    The image is the root group's first ``multiscales`` entry (NGFF 0.5 keeps it under the
    ``ome`` attribute), or that of series ``0`` in bioformats2raw's layout. Its axes come
    from the metadata: ``t``, ``c``, ``z``, ``y``, ``x``, any subset ending in ``y, x``;
    NGFF before 0.3 names none, and its 5-D arrays are ``t, c, z, y, x``.

    Raises
    ------
    ImageReadError
        If the folder is no Zarr group, has no multiscales (a plate, labels alone, a plain
        Zarr array), or axes segpipe cannot read; the message names the folder and says
        what it found.
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(os.fspath(path), mode="r")
        meta = _ngff_attrs(group)
        if "multiscales" not in meta and "bioformats2raw.layout" in meta:
            group = group["0"]
            meta = _ngff_attrs(group)
    except Exception as err:  # zarr raises many types for a bad folder
        raise ImageReadError(path, f"not a readable Zarr group ({type(err).__name__}: "
                                   f"{err})") from err
    if not meta.get("multiscales"):
        found = ", ".join(sorted(meta)) or "none"
        raise ImageReadError(path, f"no OME-NGFF multiscales metadata: not an OME-Zarr image "
                                   f"(attributes found: {found})")
    try:
        scales = meta["multiscales"][0]
        array = group[scales["datasets"][0]["path"]]
        ndim = len(array.shape)
        axes = scales.get("axes")
    except Exception as err:  # missing keys or arrays, malformed metadata
        raise ImageReadError(path, f"malformed OME-NGFF multiscales, or level 0 missing "
                                   f"({type(err).__name__}: {err})") from err
    if not isinstance(array, zarr.Array):
        raise ImageReadError(path, "the multiscales' first dataset is a group, not an array")
    if axes is None and ndim == 5:
        axes = ["t", "c", "z", "y", "x"]
    names = [str(a.get("name") if isinstance(a, dict) else a).lower() for a in axes or ()]
    letters = "".join(_NGFF_AXES.get(n, "?") for n in names)
    if (len(names) != ndim or "?" in letters or len(set(letters)) != len(letters)
            or not letters.endswith("YX")):
        raise ImageReadError(path, f"axes {names or 'not given'} of a {ndim}-D array: segpipe "
                                   "reads t, c, z, y, x (any of the first three, then y "
                                   "and x last)")
    omero = meta.get("omero")
    channels = omero.get("channels", []) if isinstance(omero, dict) else []
    labels = tuple(str(c.get("label", "")) for c in channels if isinstance(c, dict))
    return ZarrImage(path=path, array=array, axes=letters, names=labels)


def _ngff_attrs(group: Any) -> dict[str, Any]:
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, dict) else attrs


def zarr_plane_notes(image: ZarrImage, reading: Reading) -> list[str]:
    """The notes that reducing ``image`` by ``reading`` gives (channel used, projection),
    found from its axis lengths alone: nothing is read.

    Raises
    ------
    ImageReadError
        If ``reading`` asks for a channel, slice or time point the image does not have.
    """
    from segpipe.planes import reduce_axes

    notes = []
    # reduce_axes' notes and errors depend on the axes' lengths, not on the samples: a
    # 1 x 1 stand-in of the other axes gives the very notes of a whole read.
    shape = tuple(n for a, n in image.sizes.items() if a not in "YX") + (1, 1)
    try:
        reduce_axes(np.zeros(shape, np.uint8), image.axes, reading,
                    channel_names=image.names, notes=notes)
    except ValueError as err:
        raise ImageReadError(image.path, str(err)) from err
    return notes


def read_zarr_region(image: ZarrImage, rows: slice, cols: slice, *,
                     reading: Reading) -> np.ndarray:
    """``[rows, cols]`` of an OME-Zarr image reduced to one plane by ``reading``, in its own
    sample type (as :func:`_read_tiff` gives a TIFF's): only the chunks of the planes it
    needs are read (one channel, one time point, one slice unless projected).

    ``reading`` must be one :func:`zarr_plane_notes` accepted.
    """
    from segpipe.planes import reduce_axes, single_planes

    picked = single_planes(image.axes, image.sizes, reading, channel_names=image.names)
    index = tuple(picked[a] if a in picked else rows if a == "Y" else cols if a == "X"
                  else slice(None) for a in image.axes)
    try:
        block = np.asarray(image.array[index])
    except Exception as err:  # a missing or corrupt chunk, a codec zarr lacks
        raise ImageReadError(image.path, f"cannot read the Zarr array ({type(err).__name__}: "
                                         f"{err})") from err
    left = "".join(a for a in image.axes if a not in picked)
    block = reduce_axes(block, left, reading, channel_names=image.names)
    if block.dtype == np.bool_:
        block = block.view(np.uint8) * np.uint8(255)
    return block


def _read_zarr(path: Path, reading: Reading, notes: list[str],
               max_pixels: int | None) -> np.ndarray:
    """An OME-Zarr image whole, reduced to one image by ``reading``: refused, before any
    chunk is read, over ``max_pixels`` pixels, or when the planes it needs (a projection
    needs every slice) hold more than three times as many samples, as a TIFF stack is."""
    image = open_zarr_image(path)
    _check_pixels(path, image.shape, max_pixels)
    found = zarr_plane_notes(image, reading)
    from segpipe.planes import single_planes

    picked = single_planes(image.axes, image.sizes, reading, channel_names=image.names)
    samples = math.prod(n for a, n in image.sizes.items() if a not in picked)
    if max_pixels is not None and samples > 3 * max_pixels:
        raise ImageReadError(
            path, f"the planes to read of shape {tuple(image.array.shape)} "
            f"({image.axes}) hold {samples:,} samples, more than 3 x max_image_pixels "
            f"({int(max_pixels):,}); raise it or choose a channel, slice and time point")
    notes.extend(found)
    return read_zarr_region(image, slice(None), slice(None), reading=reading)


def _ome_channel_names(tif: tifffile.TiffFile) -> tuple[str, ...]:
    if not tif.is_ome:
        return ()
    import tifffile

    try:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
        channels = pixels.get("Channel", [])
        channels = channels if isinstance(channels, list) else [channels]
        return tuple(str(c.get("Name", "")) for c in channels)
    except (KeyError, TypeError, ValueError):
        return ()


def _decode(path: Path, data: bytes, mode: str) -> np.ndarray:
    """OpenCV's decoding of every format (and of TIFFs tifffile could not read)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS[mode])
    if image is None or image.size == 0:
        # Same message whichever mode a method asked for: OpenCV refuses some sample types
        # in colour mode with an assertion, and decodes them in grey mode.
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.dtype not in (np.uint8, np.uint16):
            raise ImageReadError(path, _unsupported_type(raw.dtype))
        raise ImageReadError(path, _diagnose(path, data))
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, _unsupported_type(image.dtype))
    if mode == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _unsupported_type(dtype: np.dtype) -> str:
    return f"unsupported sample type {dtype} (need 8 or 16 bit unsigned integers)"


def probe_image(data: bytes) -> tuple[int, int, int] | None:
    """``(width, height, pages)`` from an image's header, without decoding its pixels.

    None if Pillow does not recognise the format (OpenCV may still decode it).
    """
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow's own decompression-bomb limit: the caller applies max_image_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(data)) as im:
                    return im.size[0], im.size[1], int(getattr(im, "n_frames", 1))
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # noqa: BLE001 - any parse failure: no header information, not an error here
        return None


def _diagnose(path: Path, data: bytes) -> str:
    """Say why OpenCV could not decode ``data``, in words a user can act on."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"unsupported file type {path.suffix or '(no extension)'!r}: not an image"
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except UnidentifiedImageError:
        return "not an image, or an image format that cannot be decoded"
    except (OSError, SyntaxError, ValueError) as err:
        text = str(err)
        if any(word in text.lower() for word in ("truncated", "broken data stream", "premature")):
            return f"truncated or corrupt image data ({text})"
        return f"corrupt image ({text})"
    return "the decoder could not read this image (corrupt or unsupported variant)"


def intensity_max(dtype: DTypeLike) -> int:
    """The largest value of an image sample type: 255 for uint8, 65535 for uint16.

    Thresholds in segpipe are given on a 0..1 scale and mapped through this value, so
    one setting means the same on 8- and 16-bit images.

    >>> intensity_max(np.uint16)
    65535
    """
    return int(np.iinfo(dtype).max)


def label_dtype(max_label: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type for labels up to ``max_label``.

    uint8 and uint16 fit a PNG mask; uint32 needs ``mask_format: tiff`` or ``zarr``.

    >>> label_dtype(255), label_dtype(256), label_dtype(70000)
    (<class 'numpy.uint8'>, <class 'numpy.uint16'>, <class 'numpy.uint32'>)
    """
    if max_label <= 255:
        return np.uint8
    if max_label <= 65535:
        return np.uint16
    if max_label <= 2**32 - 1:
        return np.uint32
    raise ValueError(f"{max_label} labels do not fit in 32 bits")


# Mask file formats (the ``mask_format`` setting) and their suffixes. A ``.zarr`` mask is a
# folder (segpipe.labelstore).
MASK_SUFFIXES = {"png": ".png", "tiff": ".tif", "zarr": ".zarr"}


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 or uint16 (M, N) array as a lossless PNG, atomically.

    The file appears complete or not at all: it is written beside its final name and
    renamed, so a killed job never leaves half a mask behind.
    """
    if array.dtype == np.uint32 and array.ndim == 2:
        raise ValueError(f"{int(array.max())} labels do not fit in a 16-bit PNG (at most "
                         "65535): set mask_format: tiff or zarr")
    if array.dtype not in (np.uint8, np.uint16) or array.ndim != 2:
        raise ValueError(f"need a 2-D uint8 or uint16 array, got {array.ndim}-D {array.dtype}")
    ok, encoded = cv2.imencode(".png", array, _PNG_FAST)
    if not ok:
        raise OutputError(path, "PNG encoding failed")
    write_bytes_atomic(path, encoded.tobytes())


def write_tiff(path: str | os.PathLike, array: np.ndarray, *,
               tiled: bool | None = None) -> None:
    """Write a uint8, uint16 or uint32 (M, N) label array as a zlib-compressed TIFF,
    atomically. Fiji, napari and QuPath read it as a label image.

    Parameters
    ----------
    path : str or os.PathLike
    array : (M, N) ndarray of uint8, uint16 or uint32
    tiled : bool, optional
        A tiled BigTIFF (:func:`segpipe.labelstore.write_tiled_tiff`) rather than a plain
        strip TIFF. Default: tiled above :data:`segpipe.labelstore.TILED_TIFF_PIXELS`
        (8192 x 8192) pixels.
    """
    import io

    import tifffile

    from segpipe.labelstore import TILED_TIFF_PIXELS, write_tiled_tiff

    if array.dtype not in (np.uint8, np.uint16, np.uint32) or array.ndim != 2:
        raise ValueError(f"need a 2-D uint8, uint16 or uint32 array, got {array.ndim}-D "
                         f"{array.dtype}")
    if tiled is None:
        tiled = array.size > TILED_TIFF_PIXELS
    if tiled:
        write_tiled_tiff(path, array)
        return
    buffer = io.BytesIO()
    # Level 1: label images are long runs; higher levels cost time and save little.
    tifffile.imwrite(buffer, array, compression="zlib", compressionargs={"level": 1},
                     photometric="minisblack")
    write_bytes_atomic(path, buffer.getvalue())


def write_labels(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a label image as PNG, TIFF or OME-Zarr labels (a ``.zarr`` folder), chosen
    by ``path``'s suffix, atomically.

    Raises
    ------
    OutputError
        If the file cannot be written; the message names ``path``, the cause and what
        to do.
    ValueError
        If ``array`` is not a 2-D label image the format can hold.
    """
    from segpipe.labelstore import mask_format_of, write_zarr_labels

    kind = mask_format_of(path)
    if kind == "zarr":
        write_zarr_labels(path, array)
    elif kind == "tiff":
        write_tiff(path, array)
    else:
        write_png(path, array)


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file that :func:`write_bytes_atomic` writes before renaming to ``path``.

    Short and fixed: ``.segpipe-`` and 16 hex digits of a hash of the final name, beside
    it. Short, so a final name near the 255-byte limit still has a temporary name; fixed,
    so the next run of the job that was killed while writing overwrites and renames the
    very file it left behind, and a job can recognise leftovers (``.segpipe-*.tmp``).
    """
    import hashlib

    path = Path(path)
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    return path.parent / f".segpipe-{digest}.tmp"


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The file appears complete or not at all.

    Raises
    ------
    OutputError
        If the file cannot be written (full disk, read-only folder): the message names
        ``path``, not the temporary file, which is removed first.
    """
    path = Path(path)
    tmp = temporary_path(path)
    with output_errors(path, temporary=tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        commit_temporary(tmp, path)


def commit_temporary(tmp: Path, path: Path) -> None:
    """Give a finished temporary file its final name ``path``."""
    # Group and others get what the umask allows, as with a plain open(); set explicitly
    # because a leftover temporary file keeps the mode it was made with.
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


@contextmanager
def output_errors(path: str | os.PathLike, *,
                  temporary: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into an :class:`OutputError` naming it.

    On any exception ``temporary`` (the file written before the rename to ``path``), if
    given, is removed first. The removal cannot hide the error: its own failure is only
    logged at debug level.

    >>> with output_errors("out/a.png"):  # doctest: +ELLIPSIS
    ...     raise OSError(30, "Read-only file system", ".segpipe-0123456789abcdef.tmp")
    Traceback (most recent call last):
    segpipe.errors.OutputError: cannot write out/a.png: read-only file system (...)
    """
    try:
        yield
    except BaseException as err:
        if temporary is not None:
            discard_temporary(temporary)
        if isinstance(err, OSError):
            raise OutputError.from_os_error(path, err, temporary=temporary) from err
        raise


def discard_temporary(tmp: str | os.PathLike) -> None:
    """Remove a temporary file after a failed write, quietly: the failure that stopped the
    write is the one to report, not this (on a read-only or failing disk both fail)."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.debug("could not remove the temporary file %s (%s)", tmp, err)


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """Read a label image (PNG, TIFF through tifffile, or an OME-Zarr mask's level 0) back
    into its integer array.

    Raises
    ------
    ImageReadError
        If the file or folder cannot be read as a label image.
    """
    from segpipe.labelstore import mask_format_of, read_zarr_labels

    kind = mask_format_of(path)
    if kind == "zarr":
        return read_zarr_labels(path)
    if kind == "tiff":
        import tifffile

        try:
            return tifffile.imread(path)
        except Exception as err:  # tifffile raises many types for a bad file
            raise ImageReadError(path, f"cannot read label image ({err})") from err
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ImageReadError(path, "cannot read label image")
    return labels


def read_label_level(path: str | os.PathLike, max_side: int) -> np.ndarray:
    """A reduced label image for display: the mask subsampled by ``[::s, ::s]``, ``s`` the
    largest power of two that keeps its longer side at least ``max_side`` (1 for a mask
    smaller than that).

    An OME-Zarr mask gives the smallest pyramid level that long, read alone. A TIFF is
    read through tifffile's chunked access, so only the result is held whole (plus a strip
    or tile); a PNG is read whole, then subsampled. Labels are picked, never averaged.

    Parameters
    ----------
    path : str or os.PathLike
        A mask (PNG, TIFF or ``.zarr``).
    max_side : int
        The least length of the result's longer side (when the mask has it).

    Returns
    -------
    (M', N') ndarray
        ``labels[::s, ::s]``.

    Raises
    ------
    ImageReadError
        If the mask cannot be read.
    ValueError
        If ``max_side`` is not positive.
    """
    from segpipe.labelstore import mask_format_of, zarr_levels

    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    kind = mask_format_of(path)
    try:
        if kind == "zarr":
            levels = zarr_levels(path)
            level = ([a for a in levels if max(a.shape) >= max_side] or levels[:1])[-1]
            # The top level can still be longer than needed: subsample it as a TIFF is.
            step = _subsample_step(level.shape, max_side)
            return level[::step, ::step]
        if kind == "tiff":
            import tifffile
            import zarr

            with tifffile.imread(path, aszarr=True) as store:
                array = zarr.open_array(store, mode="r")
                step = _subsample_step(array.shape, max_side)
                return array[::step, ::step]
    except ImageReadError:
        raise
    except Exception as err:  # tifffile and zarr raise many types
        raise ImageReadError(path, f"cannot read label image ({err})") from err
    labels = read_label_image(path)
    step = _subsample_step(labels.shape, max_side)
    return labels[::step, ::step]


def _subsample_step(shape: tuple[int, ...], max_side: int) -> int:
    """The largest power of two ``s`` with ``ceil(max(shape) / s) >= max_side`` (at least 1,
    at most the longer side).

    >>> _subsample_step((300, 500), 100), _subsample_step((300, 500), 600)
    (4, 1)
    >>> _subsample_step((300, 500), 1)
    256
    """
    longest, step = max(shape[:2]), 1
    while 2 * step <= longest and -(-longest // (2 * step)) >= max_side:
        step *= 2
    return step
