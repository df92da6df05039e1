"""Finding and reading an image's ground-truth mask: a folder of masks or a COCO JSON."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segpipe.errors import ImageReadError
from segpipe.imageio import IMAGE_SUFFIXES, read_label_image

# Looked for in this order; a mask is rarely stored lossy, so PNG and TIFF come first.
_SUFFIX_ORDER = sorted(IMAGE_SUFFIXES, key=lambda s: (s not in (".png", ".tif", ".tiff"), s))


class GroundTruth:
    """The ground truth of a run.

    Parameters
    ----------
    source : str or path
        A folder of masks (``<source>/<image's folder>/<image's stem>.<any image
        extension>``) or a COCO instances JSON file (matched by ``file_name``).
    kind : {"binary", "labels", "instances"}
        How mask values are read; a COCO file is always ``instances``.
    pattern : str, optional
        Where an image's mask is, relative to ``source`` (``ground_truth_pattern``); see
        :func:`mask_candidates`. None: the image's folder, its stem, any image extension.
    """

    def __init__(self, source: str | os.PathLike, *, kind: str, tolerance: float = 2,
                 pattern: str | None = None) -> None:
        self.source = Path(source)
        self.is_coco = self.source.is_file()
        self.kind = "instances" if self.is_coco else kind
        self.tolerance = tolerance
        self.pattern = pattern
        self._coco = None

    def score(self, image_id: str, labels: np.ndarray, *,
              pred_meaning: str) -> dict[str, float | str | None]:
        """Metric columns of one image's row: the scores, or null scores and a note.

        Parameters
        ----------
        image_id : str
        labels : (M, N) ndarray
            The method's label image.
        pred_meaning : {"foreground", "classes", "regions", "instances"}
            What the method's labels mean; decides which scores apply.
        """
        from segpipe.evaluation import image_scores

        truth, where, note = self.read(image_id, labels.shape)
        if truth is None:
            return {"gt_path": where, "gt_note": note}
        scores = image_scores(labels, truth, truth_kind=self.kind, pred_meaning=pred_meaning,
                              tolerance=self.tolerance)
        return {"gt_path": where, **scores}

    def read(self, image_id: str,
             shape: Sequence[int]) -> tuple[np.ndarray | None, str | None, str | None]:
        """The ground-truth labels of ``image_id``, or a note saying why there are none.

        Parameters
        ----------
        image_id : str
            The image's path relative to ``input_dir`` (POSIX).
        shape : tuple of int
            The image's (height, width); a mask of another size is not used.

        Returns
        -------
        labels : (M, N) ndarray of int or None
        where : str or None
            The mask file (or ``file.json#file_name``) used.
        note : str or None
            Why there is no usable mask (then ``labels`` is None).
        """
        from segpipe.planes import split_plane

        image_id = split_plane(image_id)[0]  # a plane of a stack: the file's mask
        try:
            labels, where = self._read_coco(image_id) if self.is_coco else self._read_file(image_id)
        except (ImageReadError, ValueError) as err:
            return None, None, f"ground truth unusable: {err}"
        if labels is None:
            return None, None, where
        if labels.shape != tuple(shape):
            return None, where, (
                f"ground truth {where} is {labels.shape[1]}x{labels.shape[0]} but the image is "
                f"{shape[1]}x{shape[0]}"
            )
        return labels, where, None

    def open(self, image_id: str, shape: Sequence[int], *,
             max_pixels: int | None = None) -> tuple[Any, str | None, str | None]:
        """As :meth:`read`, but the labels as a tile source (``shape``, ``dtype``,
        ``read(rows, cols)``): a tiled TIFF mask is read one region at a time, never
        whole; any other mask is read whole, as :meth:`read` reads it, unless the image
        has more than ``max_pixels`` pixels (then a note says why there is no score)."""
        from segpipe.planes import split_plane
        from segpipe.tiles import ArraySource

        found = self.source if self.is_coco else self.mask_path(split_plane(image_id)[0])
        tiled = None if self.is_coco or found is None else _tiled_label_tiff(found)
        if tiled is not None:
            if tiled.shape != tuple(shape):
                return None, str(found), (
                    f"ground truth {found} is {tiled.shape[1]}x{tiled.shape[0]} "
                    f"but the image is {shape[1]}x{shape[0]}")
            return tiled, str(found), None
        if found is not None and max_pixels is not None and shape[0] * shape[1] > max_pixels:
            return None, None, (
                f"ground truth unusable: {found} would be read whole, and the image "
                f"({shape[1]}x{shape[0]}) is larger than max_image_pixels ({max_pixels}); "
                "a mask of a tiled image is read tile by tile from a tiled TIFF only")
        labels, where, note = self.read(image_id, shape)
        return (None if labels is None else ArraySource(labels)), where, note

    def categories(self) -> list[tuple[int, str]]:
        """The classes of the labels, as (id, name) by rising id: a COCO file's
        categories, or the one class ``object`` of a mask folder."""
        if not self.is_coco:
            return [(1, "object")]
        self._index()
        return sorted((int(c["id"]), str(c["name"])) for c in self._coco.loadCats(
            self._coco.getCatIds()))

    def read_instances(self, image_id: str, shape: Sequence[int]) -> tuple[
            np.ndarray | None, dict[int, int], str | None, str | None]:
        """As :meth:`read`, with each label's class: ``(labels, {label: category id},
        where, note)``. A mask folder's labels are all of category 1; a COCO file's are
        its annotations' (crowd regions are left out: they are not instances)."""
        if not self.is_coco:
            labels, where, note = self.read(image_id, shape)
            ids = [] if labels is None else np.unique(labels)
            return labels, {int(i): 1 for i in ids if i}, where, note
        entry = self.coco_entry(image_id)
        if entry is None:
            return None, {}, None, f"no image with file_name {image_id!r} in {self.source}"
        image, anns = entry
        where = f"{self.source}#{image['file_name']}"
        if (image["height"], image["width"]) != tuple(shape):
            return None, {}, where, (
                f"ground truth {where} is {image['width']}x{image['height']} but the image "
                f"is {shape[1]}x{shape[0]}")
        labels = np.zeros((image["height"], image["width"]), dtype=np.int32)
        classes = {}
        for ann in anns:
            if ann.get("iscrowd"):
                continue
            number = len(classes) + 1
            labels[self._coco.annToMask(ann) > 0] = number
            classes[number] = int(ann["category_id"])
        present = set(np.unique(labels).tolist())
        return labels, {k: v for k, v in classes.items() if k in present}, where, None

    def coco_file_names(self) -> list[str]:
        """The ``file_name`` of every image of a COCO file."""
        return sorted(self._index()["by_name"])

    def coco_entry(self, image_id: str) -> tuple[dict, list] | None:
        """A COCO file's (image, annotations) of ``image_id``: by file_name, or by base
        name when that is unambiguous; None when the file has no such image."""
        index = self._index()
        return index["by_name"].get(image_id) or index["by_base"].get(PurePosixPath(image_id).name)

    def mask_path(self, image_id: str) -> Path | None:
        """The mask file of ``image_id`` in a mask folder: the first of
        :func:`mask_candidates` that exists, or None."""
        for rel in mask_candidates(image_id, self.pattern):
            candidate = self.source / rel
            if candidate.is_file():
                return candidate
        return None

    def _read_file(self, image_id: str) -> tuple[np.ndarray | None, str]:
        candidate = self.mask_path(image_id)
        if candidate is not None:
            return _as_label_map(read_label_image(candidate), candidate), str(candidate)
        candidates = mask_candidates(image_id, self.pattern)
        shown = (f"{self.source / candidates[0]}" if len(candidates) == 1
                 else f"{self.source / PurePosixPath(candidates[0]).with_suffix('.*')}")
        return None, f"no ground-truth mask (looked for {shown})"

    def _read_coco(self, image_id: str) -> tuple[np.ndarray | None, str]:
        entry = self.coco_entry(image_id)
        if entry is None:
            return None, f"no image with file_name {image_id!r} in {self.source}"
        image, anns = entry
        labels = np.zeros((image["height"], image["width"]), dtype=np.int32)
        # Later annotations are painted over earlier ones where they overlap.
        for number, ann in enumerate(anns, start=1):
            labels[self._coco.annToMask(ann) > 0] = number
        return labels, f"{self.source}#{image['file_name']}"

    def _index(self) -> dict[str, dict[str, Any]]:
        if self._coco is None:
            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):
                self._coco = COCO(str(self.source))
            by_name, base_count = {}, {}
            for image in self._coco.dataset.get("images", []):
                anns = self._coco.loadAnns(self._coco.getAnnIds(imgIds=image["id"], iscrowd=None))
                by_name[image["file_name"]] = (image, anns)
                base = PurePosixPath(image["file_name"]).name
                base_count[base] = base_count.get(base, []) + [(image, anns)]
            # A bare file name matches only when it is unambiguous.
            by_base = {k: v[0] for k, v in base_count.items() if len(v) == 1}
            self._by = {"by_name": by_name, "by_base": by_base}
        return self._by


PLACEHOLDERS = ("relpath", "parent", "name", "stem")


def mask_candidates(image_id: str, pattern: str | None = None) -> list[str]:
    """Paths (relative to the ground-truth folder) where an image's mask may be, in order.

    ``pattern`` may use ``{relpath}`` (the image's path relative to ``input_dir``),
    ``{parent}`` (its folder), ``{name}`` (its file name) and ``{stem}`` (its file name
    without the extension; ``.ome.tif`` counts as one). A pattern without ``/`` is looked for in the image's own
    folder; one ending in ``.*`` tries every image extension (PNG and TIFF first). None
    is ``{stem}.*``: the image's folder and stem, any image extension.

    >>> mask_candidates("plate1/img7.tif", "{stem}_masks.tif")
    ['plate1/img7_masks.tif']
    >>> mask_candidates("cells.ome.tif", "{stem}_seg.png")
    ['cells_seg.png']
    >>> mask_candidates("plate1/img7.tif", "masks/{relpath}")
    ['masks/plate1/img7.tif']
    >>> mask_candidates("a.jpg")[:3]
    ['a.png', 'a.PNG', 'a.tif']
    """
    rel = PurePosixPath(image_id)
    pattern = pattern or "{stem}.*"
    stem = rel.stem
    if rel.name.lower().endswith((".ome.tif", ".ome.tiff")):
        stem = rel.name[: rel.name.lower().rindex(".ome.")]  # OME-TIFF: one extension
    values = {"relpath": image_id, "parent": "" if str(rel.parent) == "." else str(rel.parent),
              "name": rel.name, "stem": stem}
    path = pattern.format(**values)
    if "/" not in pattern and values["parent"]:
        path = f"{values['parent']}/{path}"
    path = path.lstrip("/")
    if not path.endswith(".*"):
        return [path]
    base = path[:-2]
    return [base + s for suffix in _SUFFIX_ORDER for s in (suffix, suffix.upper())]


def _as_label_map(mask: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A 2-D integer label map from a mask file; grey saved as RGB is accepted."""
    if mask.ndim == 3:
        if not (mask[..., :1] == mask[..., : min(3, mask.shape[2])]).all():
            raise ValueError(f"{path}: colour mask; need one channel of labels")
        mask = mask[..., 0]
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{path}: mask of type {mask.dtype}; need integer labels")
    return mask


def load_ground_truth(config: Mapping[str, Any]) -> GroundTruth | None:
    """The run's :class:`GroundTruth`, or None when ``ground_truth_dir`` is not set."""
    if config.get("ground_truth_dir") is None:
        return None
    return GroundTruth(config["ground_truth_dir"], kind=config["ground_truth_kind"],
                       tolerance=config["boundary_tolerance"],
                       pattern=config.get("ground_truth_pattern"))


class _TiledLabelTiff:
    """The labels of a tiled, one-plane TIFF mask, read by region (tifffile's zarr store)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        return np.asarray(self.array[rows, cols])


def _tiled_label_tiff(path: Path) -> _TiledLabelTiff | None:
    """A region reader of a tiled 2-D integer TIFF mask, or None for any other mask."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile
        import zarr

        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            page = series.pages[0]
            if not page.is_tiled or len(series.shape) != 2 or series.dtype.kind not in "ui":
                return None
        return _TiledLabelTiff(zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0),
                                         mode="r"))
    except Exception:  # noqa: BLE001 - not readable this way: read() reads it whole, or says why
        return None
