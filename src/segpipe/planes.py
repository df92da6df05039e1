"""Choosing the plane to segment from multi-dimensional images, and intensity scaling.

A TIFF from a microscope can hold channels (C), z-slices (Z) and time points (T) besides
its rows and columns; tifffile reads the axes from the file's metadata (OME-XML, ImageJ,
or its own). :func:`reduce_axes` turns such an array into one 2-D image (or an RGB one)
by the ``channel``, ``z`` and ``time`` settings, and says in a note what it did wherever
a default was used: an image is never reduced silently. :func:`normalise` then maps any
sample type to uint8 or uint16 by the ``intensity_range`` rule, so that every method sees
the 0..1 intensity scale of :mod:`segpipe.imageio`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Reading:
    """How to turn a file into the image to segment (the config keys of the same names).

    Attributes
    ----------
    channel : int, str, list or None
        An index, an OME channel name, or a list of them combined by their maximum.
        None: channel 0 (with a note) when there are several.
    z, time : int, "max", "mean" or None
        A plane index, or the maximum or mean projection. None: the maximum projection
        of z-slices and the first time point (with a note) when there are several.
    intensity_range : "dtype", "image", [lo, hi] or {"percentile": [lo, hi]}
        What maps to 0 and 1 (:func:`normalise`).
    """

    channel: object = None
    z: object = None  # or "all": each slice its own image (segpipe.sources.plane_ids)
    time: object = None
    intensity_range: object = "dtype"

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The config keys of a reading: its fields."""
        import dataclasses

        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Reading:
        return cls(**{k: config.get(k, getattr(cls, k)) for k in cls.fields()})


DEFAULT_READING = Reading()

# ``z: all`` / ``time: all``: each plane is an image of its own, its id the file's path
# and a suffix naming the plane ("stack.tif#z=3", "movie.tif#t=0,z=2").
PLANE_MARK = "#"


def split_plane(image_id: str,
                root: str | os.PathLike | None = None) -> tuple[str, dict[str, int]]:
    """The file of an image id and the plane it names: ``(path, {"t": 0, "z": 2})``.

    With ``root`` (the input folder), an id that is itself a file's path (a file named
    ``odd.tif#z=1``) is that file.

    >>> split_plane("plate1/stack.tif#t=1,z=3")
    ('plate1/stack.tif', {'t': 1, 'z': 3})
    >>> split_plane("plain.png")
    ('plain.png', {})
    """
    import os

    if root is not None and PLANE_MARK in image_id and os.path.isfile(os.path.join(root, image_id)):
        return image_id, {}
    path, mark, plane = image_id.rpartition(PLANE_MARK)
    if not mark or not plane or any(not part[:2] in ("z=", "t=") or not part[2:].isdigit()
                                    for part in plane.split(",")):
        return image_id, {}
    return path, {part[0]: int(part[2:]) for part in plane.split(",")}


def for_plane(reading: Reading, plane: Mapping[str, int]) -> Reading:
    """``reading`` with the plane of an image id fixed (``z`` and ``time`` indices)."""
    if not plane:
        return reading
    import dataclasses

    changes = {}
    if "z" in plane:
        changes["z"] = plane["z"]
    if "t" in plane:
        changes["time"] = plane["t"]
    return dataclasses.replace(reading, **changes)


def reduce_axes(array: np.ndarray, axes: str, reading: Reading = DEFAULT_READING, *,
                channel_names: Sequence[str] = (), notes: list[str] | None = None) -> np.ndarray:
    """One (M, N) or (M, N, 3) image from an array with named axes.

    Parameters
    ----------
    array : ndarray
    axes : str
        One letter per dimension, tifffile's: ``Y`` and ``X`` rows and columns, ``S``
        samples (RGB), ``C`` channels, ``Z`` slices, ``T`` time; others (``I``, ``Q``:
        pages of a plain multi-page file) are pages, of which the first is used (or the
        ``z`` setting, when the file has no ``Z`` axis).
    reading : Reading
    channel_names : sequence of str
        Channel names from OME metadata, for ``channel: "DAPI"``.
    notes : list, optional
        Receives a sentence for each default applied.

    Raises
    ------
    ValueError
        A setting the image cannot satisfy (an index out of range, an unknown channel
        name); the message says what the image has.

    Examples
    --------
    >>> stack = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    >>> notes = []
    >>> reduce_axes(stack, "ZCYX", notes=notes).shape
    (4, 5)
    >>> notes
    ['2 z-slices: maximum projection (set z)', '3 channels: channel 0 used (set channel)']
    """
    notes = [] if notes is None else notes
    axes = axes.upper()
    if len(axes) != array.ndim:
        raise ValueError(f"axes {axes!r} do not match an array of {array.ndim} dimensions")
    if "S" in axes and array.shape[axes.index("S")] not in (3, 4):
        axes = axes.replace("S", "C")  # two samples, or many: channels, not colour
    # A plain multi-page TIFF says nothing of what its pages are: a channel setting takes
    # them as channels, else a z setting as slices; unset, the first page is used.
    pages = [a for a in axes if a not in "YXSCZT"]
    if pages and "C" not in axes and reading.channel is not None:
        axes = axes.replace(pages.pop(0), "C", 1)
    elif pages and "Z" not in axes and reading.z is not None:
        axes = axes.replace(pages.pop(0), "Z", 1)
    array, axes = _reduce(array, axes, "T", reading.time, "time points", notes,
                          default="first")
    if "Z" in axes:
        array, axes = _reduce(array, axes, "Z", reading.z, "z-slices", notes, default="max")
    for axis in pages:
        array, axes = _reduce(array, axes, axis, None, "pages", notes, default="first")
    if "C" in axes:
        array, axes = _channel(array, axes, reading.channel, channel_names, notes)
    elif reading.channel not in (None, 0, [0]):
        # A folder mixes stacks and single images: the setting is for the former.
        notes.append(f"one channel: channel {reading.channel!r} does not apply, the only "
                     "channel used")
    order = [axes.index(a) for a in "YXS" if a in axes]
    array = np.transpose(array, order)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]  # alpha dropped, as for every other format
    return array


def single_planes(axes: str, sizes: Mapping[str, int], reading: Reading = DEFAULT_READING, *,
                  channel_names: Sequence[str] = ()) -> dict[str, int]:
    """The axes that ``reading`` reduces to one of their planes, with its index: what a
    reader of a chunked file fetches alone, since :func:`reduce_axes` keeps nothing else.

    For axes among ``T``, ``C``, ``Z``, ``Y``, ``X`` (OME-Zarr's), and a reading that
    :func:`reduce_axes` accepts for them (indices in range, known channel names): an axis
    reduced by a projection, or by a list of several channels, is not one plane.

    >>> single_planes("TCZYX", {"T": 3, "C": 2, "Z": 5, "Y": 9, "X": 9}, Reading(z=-1))
    {'T': 0, 'Z': 4, 'C': 0}
    >>> single_planes("CZYX", {"C": 2, "Z": 5, "Y": 9, "X": 9}, Reading(channel=[0, 1]))
    {}
    """
    picked = {}
    if "T" in axes:
        # Unset (or "all", read as unset), the first time point, as _reduce does.
        time = 0 if reading.time in (None, "all") else reading.time
        if isinstance(time, int):
            picked["T"] = time % sizes["T"]
    if "Z" in axes and isinstance(reading.z, int):
        picked["Z"] = reading.z % sizes["Z"]
    if "C" in axes:
        wanted = reading.channel if isinstance(reading.channel, list) else [reading.channel]
        if len(wanted) == 1:
            item = 0 if wanted[0] is None else wanted[0]
            picked["C"] = (list(channel_names).index(item) if isinstance(item, str)
                           else item % sizes["C"])
    return picked


def _reduce(array: np.ndarray, axes: str, axis: str, setting: object, what: str,
            notes: list[str], *, default: str) -> tuple[np.ndarray, str]:
    if axis not in axes:
        if isinstance(setting, int) and setting != 0:
            notes.append(f"no {what}: {what} index {setting} does not apply")
        return array, axes
    position = axes.index(axis)
    size = array.shape[position]
    rest = axes[:position] + axes[position + 1:]
    if setting == "all":
        setting = None  # listed as one image (the file changed since?): the default
    if setting is None:
        if size > 1:
            if default == "max":
                notes.append(f"{size} {what}: maximum projection (set z)")
            elif what == "pages":
                notes.append(f"multi-page file ({size} pages): only the first page was segmented")
            else:
                notes.append(f"{size} {what}: the first used (set {'time' if what == 'time points' else 'z'})")
        setting = default if default == "max" else 0
    if setting == "max":
        return array.max(axis=position), rest
    if setting == "mean":
        mean = array.mean(axis=position, dtype=np.float64)
        # Integer samples keep their type (and so their intensity scale), rounded.
        if array.dtype.kind in "iu":
            return np.rint(mean).astype(array.dtype), rest
        return mean.astype(np.float32), rest
    if not isinstance(setting, int) or not -size <= setting < size:
        raise ValueError(f"{what} index {setting!r} asked for, but the image has {size}")
    return np.take(array, setting, axis=position), rest


def _channel(array: np.ndarray, axes: str, setting: object, names: Sequence[str],
             notes: list[str]) -> tuple[np.ndarray, str]:
    position = axes.index("C")
    size = array.shape[position]
    rest = axes[:position] + axes[position + 1:]
    if setting is None:
        if size > 1:
            notes.append(f"{size} channels: channel 0 used (set channel)")
        return np.take(array, 0, axis=position), rest
    wanted = setting if isinstance(setting, list) else [setting]
    indices = []
    for item in wanted:
        if isinstance(item, str):
            if item not in names:
                known = ", ".join(repr(n) for n in names) or "none in the file"
                raise ValueError(f"no channel named {item!r} (channel names: {known})")
            indices.append(list(names).index(item))
        elif -size <= item < size:
            indices.append(item)
        else:
            raise ValueError(f"channel {item} asked for, but the image has {size} channels")
    picked = np.take(array, indices, axis=position)
    return picked.max(axis=position), rest


def normalise(
    image: np.ndarray,
    rule: str | Sequence[float] | Mapping[str, Sequence[float]] = "dtype",
    notes: list[str] | None = None,
) -> tuple[np.ndarray, float, float]:
    """Map any sample type to uint8 or uint16 by an intensity rule.

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray of any real type
    rule : "dtype", "image", [lo, hi] or {"percentile": [p_lo, p_hi]}
        What maps to 0 and to the top of the scale (values beyond are clipped):
        ``dtype``: the type's own range: uint8 and uint16 pass unchanged; other integer
        types (signed, 32-bit) whose values lie in 0..65535 are read as 16-bit; floats
        in 0..1 map 0..1; anything else maps its own minimum and maximum, with a note;
        ``image``: the image's minimum and maximum; ``[lo, hi]``: these sample values;
        ``{"percentile": [1, 99.8]}``: these percentiles of the image's values.

    Returns
    -------
    image : ndarray of uint8 (8-bit input) or uint16 (anything else)
    lo, hi : float
        The sample values mapped to 0 and to the top.

    Examples
    --------
    >>> twelve_bit = np.array([[0, 1000, 4095]], np.uint16)
    >>> out, lo, hi = normalise(twelve_bit, "image")
    >>> out.tolist(), lo, hi
    ([[0, 16004, 65535]], 0.0, 4095.0)
    """
    notes = [] if notes is None else notes
    dtype = image.dtype
    out_type = np.uint8 if dtype == np.uint8 else np.uint16
    top = np.iinfo(out_type).max
    if rule == "dtype" and dtype in (np.uint8, np.uint16):
        return image, 0.0, float(top)
    finite = image[np.isfinite(image)] if dtype.kind == "f" else image
    if rule == "dtype":
        low, high = _range(finite)
        if dtype == np.bool_:
            lo, hi = 0.0, 1.0
        elif dtype.kind in "iu" and low >= 0 and high <= 65535:
            # Signed or 32-bit containers of 16-bit data (cameras, analysis tools).
            lo, hi = 0.0, 65535.0
        elif dtype.kind == "f" and low >= 0 and high <= 1:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = low, high
            expected = "0..1" if dtype.kind == "f" else "0..65535"
            notes.append(f"{dtype} samples outside {expected}: scaled from the image's range "
                         f"{lo:g}..{hi:g} (set intensity_range)")
    elif rule == "image":
        lo, hi = _range(finite)
    elif isinstance(rule, dict):
        p_lo, p_hi = rule["percentile"]
        lo, hi = (float(v) for v in np.percentile(finite, [p_lo, p_hi])) if finite.size else (0.0, 0.0)
    else:
        lo, hi = (float(v) for v in rule)
    if hi <= lo:
        notes.append(f"no intensity range ({lo:g}..{hi:g}): the image is blank")
        return np.zeros(image.shape, out_type), lo, hi
    scaled = (image.astype(np.float64) - lo) * (top / (hi - lo))
    np.clip(scaled, 0, top, out=scaled)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return (scaled + 0.5).astype(out_type), lo, hi


def _range(values: np.ndarray) -> tuple[float, float]:
    if not values.size:
        return 0.0, 0.0
    return float(values.min()), float(values.max())
