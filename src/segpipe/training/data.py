"""A training set: images, their instance labels, the validation split, and its checks.

Images are listed as segmentation lists them (recursively, ``include``/``exclude``, the
reading keys ``channel``, ``z``, ``time`` and ``intensity_range``), and each image's
labels are found as ground truth is found (:class:`segpipe.ground_truth.GroundTruth`): a
folder of instance masks (one class, ``object``) or a COCO instances JSON (its categories
become the classes).

The split is a function of the seed and the image id alone (:func:`split_of`): adding
images to the folder never moves an old image from training to validation or back.

:func:`check_set` reads every image and mask once before any training step and fails
naming each bad file, so an hour of GPU time is not spent before a typo shows:

- an image without a mask, a mask of another size, an unreadable image or mask, and
  labels that are classes rather than instances are errors (:class:`TrainingDataError`);
- a mask with no object is kept: the image trains as a negative example (background
  only), and is counted in the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.errors import ImageReadError, TrainingDataError

log = logging.getLogger(__name__)

# Validation needs at least this many images: AP over one image says little, and the
# best checkpoint would be picked by it.
MIN_VAL_IMAGES = 2
# A mask reads as classes (not instances) when more than half its labels are each made
# of at least two separate regions of at least this many pixels.
REGION_MIN_PIXELS = 4
# Bad files named in an error message; the rest are counted.
SHOWN_PROBLEMS = 10

READING_KEYS = ("channel", "z", "time", "intensity_range")


@dataclass(frozen=True)
class Sample:
    """One training or validation image.

    Attributes
    ----------
    image_id : str
        The image's path relative to its folder (POSIX), as segmentation names it.
    path : str
        The image file.
    split : {"train", "val"}
    """

    image_id: str
    path: str
    split: str


def split_of(image_id: str, *, seed: int, val_fraction: float) -> str:
    """``"val"`` or ``"train"``, from a hash of the seed and the image id only.

    >>> split_of("a.png", seed=0, val_fraction=0.5) == split_of("a.png", seed=0, val_fraction=0.5)
    True
    """
    digest = hashlib.sha256(f"{seed}\0{image_id}".encode("utf-8", "surrogateescape")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def list_image_ids(folder: str | os.PathLike, *, include: Sequence[str] | None,
                   exclude: Sequence[str]) -> list[str]:
    """Image ids of ``folder`` as segmentation lists them, sorted."""
    from segpipe.manifest import scan, selection_reason

    return sorted(rel for kind, rel, _ in scan(folder)
                  if kind == "file" and selection_reason(rel, include, exclude) is None)


class TrainingSet:
    """The images and labels of one ``train.<name>`` entry.

    Parameters
    ----------
    name : str
        The model's name (for messages).
    settings : dict
        The entry's resolved settings (every key of the schema's ``train_model``).
    """

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        from segpipe.ground_truth import GroundTruth
        from segpipe.planes import Reading

        self.name = name
        self.settings = settings
        self.key = f"train.{name}"
        self.reading = Reading(**{k: settings[k] for k in READING_KEYS})
        self.truth = {"train": GroundTruth(settings["ground_truth_dir"], kind="instances",
                                           pattern=settings["ground_truth_pattern"])}
        self.roots = {"train": settings["input_dir"]}
        if settings["val_dir"] is not None:
            self.roots["val"] = settings["val_dir"]
            self.truth["val"] = GroundTruth(val_truth_source(settings), kind="instances",
                                            pattern=settings["ground_truth_pattern"])
        else:
            self.truth["val"] = self.truth["train"]
        self.samples = self._list()
        self.classes = self._classes()

    def _list(self) -> list[Sample]:
        s = self.settings
        samples = []
        for rel in list_image_ids(s["input_dir"], include=s["include"], exclude=s["exclude"]):
            split = "train" if s["val_dir"] is not None else split_of(
                rel, seed=s["seed"], val_fraction=s["val_fraction"])
            samples.append(Sample(rel, os.path.join(s["input_dir"], rel), split))
        if s["val_dir"] is not None:
            samples += [Sample(rel, os.path.join(s["val_dir"], rel), "val")
                        for rel in list_image_ids(s["val_dir"], include=s["include"],
                                                  exclude=s["exclude"])]
        return samples

    def _classes(self) -> list[str]:
        """Class names by class index; index 0 is the background."""
        cats = self.truth["train"].categories()
        if self.truth["val"] is not self.truth["train"]:
            other = self.truth["val"].categories()
            if other != cats:
                raise TrainingDataError(
                    f"{self.key}: the validation labels' categories {other} differ from the "
                    f"training labels' {cats}")
        self.category_index = {cid: i + 1 for i, (cid, _) in enumerate(cats)}
        return ["__background__"] + [name for _, name in cats]

    def split(self, which: str) -> list[Sample]:
        return [s for s in self.samples if s.split == which]

    def read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sample's image and labels.

        Returns
        -------
        image : (M, N, 3) ndarray of uint8 or uint16
            Read as a segment job reads it for Mask R-CNN.
        labels : (M, N) ndarray of int32
            Instance labels, 0 background, renumbered 1..K.
        classes : (K + 1,) ndarray of int64
            The class index of each label (``classes[0]`` is 0).

        Raises
        ------
        TrainingDataError
            Naming the file: unreadable image or mask, no mask, a mask of another size.
        """
        image, labels, classes = self._read_raw(sample)
        ids = np.unique(labels)
        ids = ids[ids != 0]
        lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        index = np.zeros(ids.size + 1, dtype=np.int64)
        for new, old in enumerate(ids.tolist(), start=1):
            index[new] = self.category_index[classes[old]]
        return image, lut[labels], index

    def _read_raw(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        """The image, its labels as the file holds them, and each label's category id."""
        from segpipe.imageio import read_image

        try:
            image = read_image(sample.path, mode="rgb", reading=self.reading)
        except ImageReadError as err:
            raise TrainingDataError(f"{sample.path}: {err}") from None
        truth = self.truth[sample.split]
        try:
            labels, classes, where, note = truth.read_instances(sample.image_id, image.shape[:2])
        except (ImageReadError, ValueError) as err:
            raise TrainingDataError(f"{sample.path}: its mask is unusable: {err}") from None
        if labels is None:
            raise TrainingDataError(f"{sample.path}: {note}")
        if where is not None and Path(where).resolve() == Path(sample.path).resolve():
            raise TrainingDataError(
                f"{sample.path} is its own mask: set ground_truth_pattern "
                f"({self.key}.ground_truth_pattern), or exclude the masks from the images")
        return image, labels, classes

    def check(self) -> dict[str, int]:
        """Read every image and mask once; fail naming the bad files.

        Returns
        -------
        dict
            ``train`` and ``val`` image counts, ``negatives`` (images without objects)
            and ``objects``.

        Raises
        ------
        TrainingDataError
            For missing, unreadable or mis-sized masks, labels that are classes, fewer
            than :data:`MIN_VAL_IMAGES` validation images or no training image.
        """
        problems = []
        counts = {"train": 0, "val": 0, "negatives": 0, "objects": 0}
        for sample in self.samples:
            try:
                _, labels, classes = self._read_raw(sample)
            except TrainingDataError as err:
                problems.append(str(err))
                continue
            if not self.truth[sample.split].is_coco:
                region = classes_not_instances(labels)
                if region is not None:
                    problems.append(
                        f"{sample.path}: its mask looks like classes, not instances: label "
                        f"{region[0]} covers {region[1]} separate regions (an instance mask "
                        "gives each object its own id; skimage.measure.label(mask > 0) makes "
                        "one from a binary mask)")
                    continue
            counts[sample.split] += 1
            n = len(classes)
            counts["objects"] += n
            counts["negatives"] += n == 0
        if problems:
            more = len(problems) - SHOWN_PROBLEMS
            raise TrainingDataError(
                f"{self.key}: {len(problems)} of {len(self.samples)} images cannot train:\n  "
                + "\n  ".join(problems[:SHOWN_PROBLEMS])
                + (f"\n  ... and {more} more" if more > 0 else "")
                + f"\n(exclude files with {self.key}.exclude)")
        self._check_counts(counts)
        return counts

    def _check_counts(self, counts: Mapping[str, int]) -> None:
        s = self.settings
        if not self.samples:
            where = s["input_dir"]
            raise TrainingDataError(f"{self.key}.input_dir: no images in {where}")
        if counts["val"] < MIN_VAL_IMAGES:
            how = (f"{self.key}.val_dir: {s['val_dir']} holds {counts['val']}"
                   if s["val_dir"] is not None else
                   f"{self.key}.val_fraction: {s['val_fraction']} of {len(self.samples)} "
                   f"images gives {counts['val']}")
            raise TrainingDataError(
                f"{how} validation images; at least {MIN_VAL_IMAGES} are needed (the best "
                "checkpoint is chosen by validation AP): add images or raise val_fraction")
        if counts["train"] == 0:
            raise TrainingDataError(f"{self.key}: every image is a validation image; "
                                    "lower val_fraction or add images")

    def check_coco_matches(self) -> None:
        """A COCO file that names none of the images is a mistake, not a set of
        unlabelled images: fail naming the file and a few names of each side."""
        for split, truth in self.truth.items():
            if not truth.is_coco:
                continue
            ids = [s.image_id for s in self.split(split)] or [
                s.image_id for s in self.samples]
            names = truth.coco_file_names()
            if not any(truth.coco_entry(i) is not None for i in ids):
                raise TrainingDataError(
                    f"{truth.source}: none of its {len(names)} file_name entries "
                    f"({', '.join(names[:3]) or 'none'}{', ...' if len(names) > 3 else ''}) "
                    f"matches an image of {self.roots[split]} "
                    f"({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})")

    def fingerprint(self) -> str:
        """SHA-256 over every image's id, split and bytes, and its labels' bytes: the
        data hash of the model card, and half of what a resume must match."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(f"{sample.split}\0{sample.image_id}\0".encode("utf-8", "surrogateescape"))
            digest.update(_file_digest(sample.path))
            truth = self.truth[sample.split]
            mask = None if truth.is_coco else truth.mask_path(sample.image_id)
            if mask is not None:
                digest.update(_file_digest(mask))
        for truth in {id(t): t for t in self.truth.values()}.values():
            if truth.is_coco:
                digest.update(_file_digest(truth.source))
        return digest.hexdigest()


def val_truth_source(settings: Mapping[str, Any]) -> str:
    """Where the ``val_dir`` images' labels are: ``val_ground_truth_dir`` when given;
    else the folder (or COCO file) that stands to ``val_dir`` as ``ground_truth_dir``
    stands to ``input_dir``, when it exists (``train/images`` and ``train/masks`` give
    ``val/masks`` for ``val/images``); else ``ground_truth_dir`` itself.

    >>> val_truth_source({"val_ground_truth_dir": None, "input_dir": "/d/train/images",
    ...                   "ground_truth_dir": "/nonexistent/masks", "val_dir": "/d/val/images"})
    '/nonexistent/masks'
    """
    if settings["val_ground_truth_dir"] is not None:
        return settings["val_ground_truth_dir"]
    truth = Path(settings["ground_truth_dir"])
    try:
        relative = truth.relative_to(Path(settings["input_dir"]).parent)
    except ValueError:
        return str(truth)
    mirrored = Path(settings["val_dir"]).parent / relative
    return str(mirrored) if mirrored.exists() else str(truth)


def _file_digest(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if path.is_dir():  # an OME-Zarr folder: its files, by name
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode("utf-8", "surrogateescape"))
            digest.update(_file_digest(child))
        return digest.digest()
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def classes_not_instances(labels: np.ndarray) -> tuple[int, int] | None:
    """``(label, regions)`` of the most fragmented label when the mask reads as classes
    (more than half its labels each cover two or more separate regions of at least
    :data:`REGION_MIN_PIXELS` pixels), else None.

    >>> binary = np.zeros((9, 9), int); binary[1:3, 1:3] = binary[5:8, 5:8] = 1
    >>> classes_not_instances(binary)
    (1, 2)
    >>> instances = binary.copy(); instances[5:8, 5:8] = 2
    >>> classes_not_instances(instances) is None
    True
    """
    from scipy import ndimage as ndi

    # The labels as 1..K (a mask's ids may be any values, 255 for a binary PNG).
    ids, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:
        compact = compact + 1
    if not ids.size:
        return None
    fragmented, worst = 0, (0, 0)
    for k, (value, box) in enumerate(zip(ids.tolist(), ndi.find_objects(compact),
                                         strict=True), start=1):
        parts, _ = ndi.label(compact[box] == k, structure=np.ones((3, 3), bool))
        sizes = np.bincount(parts.ravel())[1:]
        regions = int((sizes >= REGION_MIN_PIXELS).sum())
        if regions >= 2:
            fragmented += 1
            worst = max(worst, (regions, value))
    if fragmented * 2 > ids.size:
        return worst[1], worst[0]
    return None
