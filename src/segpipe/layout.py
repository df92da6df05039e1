"""Where every file of a run goes: the one place the output tree is spelled out.

The rules, the jobs, the listing's cleanup and the ``segpipe`` command all ask a
:class:`Layout` for their paths, so the tree below cannot drift between them::

    {out_dir}/manifest/images.parquet, skipped.parquet, shards/{shard}.json
    {out_dir}/masks/{method}/{shard}/{index}-{stem}.png      one label image per image
    {out_dir}/edges/{method}/{shard}/{index}-{stem}.png      edge maps (edge kinds)
    {out_dir}/metrics/{method}/{shard}.parquet               one row per image
    {out_dir}/objects/{method}/{shard}.parquet               one row per object
    {out_dir}/instances/{method}/{shard}.parquet             batch kinds: one row per instance
    {out_dir}/evaluation/{method}.coco_ap.json               with ground truth
    {out_dir}/summary/metrics.parquet, methods.parquet, instances.parquet, objects.parquet,
                      {method}.coco.json
    {out_dir}/report/...                                     figures, when asked for
    {out_dir}/report.html                                    the packed report
    {out_dir}/models/{name}/                                 trained models
    resources/weights/, resources/sample_images/             downloads, beside out_dir
    logs/{rule}/...                                          beside out_dir

Every per-(method, shard) path is a method with ``method`` and ``shard`` arguments that
default to the Snakemake wildcards, so ``layout.metrics()`` is the rule's pattern and
``layout.metrics("otsu", "000003")`` one job's file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

# Downloads and generated inputs live under resources/ in the working directory, shared by
# every out_dir of that directory (the workflow catalog's convention).
WEIGHTS_DIR = "resources/weights"
SAMPLE_DIR = "resources/sample_images"
LOGS_DIR = "logs"

# The per-shard outputs of a method: folders of one file per image, and tables.
SHARD_FOLDERS = ("masks", "edges")
SHARD_TABLES = ("metrics", "instances", "objects")

# Longest part of an output file name taken from the image's name, in UTF-8 bytes: with
# the index and ".png", output names stay far below the 255-byte limit of file systems.
NAME_BYTES = 64

METHOD = "{method}"
SHARD = "{shard}"

# The rules that keep logs under logs/ (log_path): ``logs/{rule}.log`` or ``logs/{rule}/``.
# A test checks this against the workflow's rules.
LOG_RULES = ("fetch_maskrcnn_weights", "list_images", "merge_metrics", "pack_report",
             "plot_objects", "plot_overlays", "plot_summary", "plot_training", "score_coco_ap",
             "segment_shard", "train_maskrcnn", "write_sample_images")

# Every file name segpipe writes under out_dir, as patterns of the path relative to it
# (see :func:`written_by_segpipe`). Anything else there is someone else's, and no cleanup
# of segpipe removes it. A method or model name is a config name (METHOD_NAME).
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_SHARD = r"\d{6}"
# An image's mask or edge map: output_name(); its name part is \w, "." and "-". A .zarr
# mask is a folder (segpipe.labelstore): every file in it is segpipe's.
_IMAGE_FILE = r"\d{6}-[\w.-]+\.(?:png|tif|tiff|zarr(?:/[^/]+)+)"
# The temporary file of an atomic write (segpipe.imageio.temporary_path), left by a kill,
# or the temporary folder of a .zarr mask and the files in it.
_TEMPORARY = r"\.segpipe-[0-9a-f]{16}\.tmp(?:/[^/]+)*"
_WRITTEN = re.compile("|".join(f"(?:{p})" for p in (
    r"manifest/(?:images|skipped)\.parquet",
    rf"manifest/shards/{_SHARD}\.json",
    rf"(?:masks|edges)/{_NAME}/{_SHARD}/{_IMAGE_FILE}",
    rf"(?:metrics|objects|instances)/{_NAME}/{_SHARD}\.parquet",
    rf"evaluation/{_NAME}\.coco_ap\.json",
    r"summary/(?:metrics|methods|instances|objects)\.parquet",
    rf"summary/{_NAME}\.coco\.json",
    r"report/(?:distributions|quality_runtime|objects|training)\.png",
    r"report/leaderboard\.html",
    rf"report/overlays/{_NAME}\.png",
    r"report\.html",
    rf"models/{_NAME}/(?:model\.pt|last\.pt|best\.pt|history\.parquet|model\.json)",
    # Leftovers of a killed write, in any folder of the tree.
    rf"(?:[^/]+/)*{_TEMPORARY}",
)))


@dataclass(frozen=True)
class Layout:
    """The paths of one run whose outputs go to ``out_dir``.

    Examples
    --------
    >>> layout = Layout("results")
    >>> layout.metrics()
    'results/metrics/{method}/{shard}.parquet'
    >>> layout.masks("otsu", "000003")
    'results/masks/otsu/000003'
    >>> layout.summary("methods.parquet")
    'results/summary/methods.parquet'
    """

    out_dir: str = "results"

    def path(self, *parts: str) -> str:
        """A path under ``out_dir``."""
        return os.path.join(self.out_dir, *parts)

    # The listing.
    @property
    def manifest(self) -> str:
        return self.path("manifest", "images.parquet")

    @property
    def skipped(self) -> str:
        return self.path("manifest", "skipped.parquet")

    @property
    def shard_dir(self) -> str:
        return self.path("manifest", "shards")

    def shard_file(self, shard: str = SHARD) -> str:
        return self.path("manifest", "shards", f"{shard}.json")

    # One (method, shard) job's outputs.
    def masks(self, method: str = METHOD, shard: str = SHARD) -> str:
        """The folder of the shard's label images."""
        return self.path("masks", method, shard)

    def edges(self, method: str = METHOD, shard: str = SHARD) -> str:
        """The folder of the shard's edge maps (edge kinds only)."""
        return self.path("edges", method, shard)

    def metrics(self, method: str = METHOD, shard: str = SHARD) -> str:
        return self.path("metrics", method, f"{shard}.parquet")

    def objects(self, method: str = METHOD, shard: str = SHARD) -> str:
        return self.path("objects", method, f"{shard}.parquet")

    def instances(self, method: str = METHOD, shard: str = SHARD) -> str:
        return self.path("instances", method, f"{shard}.parquet")

    def shard_outputs(self, method: str, shard: str) -> list[str]:
        """Everything a (method, shard) job writes: its folders, then its tables."""
        return [self.path(tree, method, shard) for tree in SHARD_FOLDERS] + [
            self.path(table, method, f"{shard}.parquet") for table in SHARD_TABLES
        ]

    # Whole-method and whole-run outputs.
    def coco_ap(self, method: str = METHOD) -> str:
        """A method's COCO AP against the ground truth."""
        return self.path("evaluation", f"{method}.coco_ap.json")

    def summary(self, name: str) -> str:
        """``metrics.parquet``, ``methods.parquet``, ``instances.parquet``, ``objects.parquet``."""
        return self.path("summary", name)

    def coco(self, method: str = METHOD) -> str:
        """A batch kind's detections as COCO results."""
        return self.path("summary", f"{method}.coco.json")

    def report(self, name: str) -> str:
        """A figure or table of the report folder."""
        return self.path("report", name)

    def overlays(self, method: str = METHOD) -> str:
        return self.path("report", "overlays", f"{method}.png")

    @property
    def report_page(self) -> str:
        """The packed, self-contained report."""
        return self.path("report.html")

    def model(self, name: str = "{name}") -> str:
        """The folder of a model trained by the run."""
        return self.path("models", name)


def written_by_segpipe(rel: str) -> bool:
    """Whether ``rel``, a path relative to out_dir (``/``-separated), is a file segpipe
    writes there: cleanups delete only such files, so a folder shared with other files
    (an ``out_dir`` that already held some, a note put beside the masks) keeps them.

    >>> [written_by_segpipe(p) for p in ("masks/otsu/000003/000007-a b.png",
    ...  "masks/otsu/000003/000007-a_b.png", "summary/metrics.parquet", "keep.txt",
    ...  "metrics/otsu/000003.parquet", "masks/otsu/.segpipe-0123456789abcdef.tmp")]
    [False, True, True, False, True, True]

    A ``.zarr`` mask is a folder, all of it segpipe's (but not the folder as a file):

    >>> [written_by_segpipe(p) for p in ("masks/otsu/000003/000007-a.zarr/labels/.zattrs",
    ...  "masks/otsu/000003/000007-a.zarr/labels/mask/0/3/1", "masks/otsu/000003/000007-a.zarr",
    ...  "masks/otsu/000003/.segpipe-0123456789abcdef.tmp/labels/mask/0/0/0")]
    [True, True, False, True]
    """
    return _WRITTEN.fullmatch(rel) is not None


def written_log(rel: str) -> bool:
    """Whether ``rel``, a path relative to the run folder, is a log or benchmark file of
    one of segpipe's rules (``logs/{rule}.log``, ``logs/{rule}/...``).

    >>> written_log("logs/segment_shard/otsu/000000.log"), written_log("logs/mine.txt")
    (True, False)
    """
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] != LOGS_DIR:
        return False
    if len(parts) == 2:
        return parts[1] in {f"{r}.log" for r in LOG_RULES}
    return parts[1] in LOG_RULES


def log_path(rule: str, *parts: str) -> str:
    """A job's log or benchmark file under ``logs/{rule}/``.

    >>> log_path("segment_shard", "otsu", "000003.log")
    'logs/segment_shard/otsu/000003.log'
    """
    return os.path.join(LOGS_DIR, rule, *parts)


def weights_path(file: str) -> str:
    """Where a named weights file is kept (``resources/weights/{file}``)."""
    return os.path.join(WEIGHTS_DIR, file)


def output_name(index: int, image_id: str, suffix: str = ".png") -> str:
    """The file name of an image's mask (and edge map) inside its shard's folder.

    ``{index}-{stem}{suffix}``: the image's position in its shard, which makes names
    unique whatever the image names are (``c.png`` and ``c.jpg``, or ``c.png`` and
    ``c.png.png/i.png``, cannot meet), then its file name without its extension,
    characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_`` and cut
    to :data:`NAME_BYTES` bytes, so a reader can tell which image it is. The row's
    ``mask_path`` records the exact path.

    >>> output_name(3, "plate1/a b.jpg")
    '000003-a_b.png'
    >>> output_name(0, "cells.ome.tif", ".tif")
    '000000-cells.ome.tif'
    >>> output_name(4, "stack.tif#t=0,z=3")
    '000004-stack_t0_z3.png'
    >>> len(output_name(0, "x" * 250 + ".png"))
    75
    """
    from segpipe.planes import split_plane

    rel, plane = split_plane(image_id)
    name = PurePosixPath(rel).stem + "".join(f"_{a}{k}" for a, k in plane.items())
    name = re.sub(r"[^\w.-]", "_", name) or "_"
    name = name.encode("utf-8")[:NAME_BYTES].decode("utf-8", "ignore")
    return f"{index:06d}-{name}{suffix}"


def shard_output_paths(folder: str, image_ids: Iterable[str],
                       suffix: str = ".png") -> dict[str, str]:
    """Image id to its output path inside a shard's folder (of masks or edge maps).

    One folder per shard keeps every folder to at most ``shard_size`` entries, however
    flat the input folder is (10^6 files in one folder slow every listing on a shared
    file system).

    >>> shard_output_paths(Layout().masks("otsu", "000003"), ["plate1/a.jpg"])
    {'plate1/a.jpg': 'results/masks/otsu/000003/000000-a.png'}
    """
    return {i: f"{folder}/{output_name(k, i, suffix)}" for k, i in enumerate(image_ids)}
