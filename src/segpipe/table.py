"""The Parquet schema of the per-image rows, defined once for every writer and reader."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, ParamSpec, Self, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from segpipe import __version__
from segpipe.imageio import (
    commit_temporary,
    discard_temporary,
    output_errors,
    temporary_path,
    write_bytes_atomic,
)

log = logging.getLogger(__name__)

# Per-image scores against the ground truth (segpipe.evaluation.image_scores).
IMAGE_METRICS = (
    "iou", "dice", "precision", "recall", "boundary_f1", "ari", "vi_split", "vi_merge",
    "object_f1_50", "object_f1_mean",
)
# Scores of a whole method (COCO mask AP), in methods.parquet only.
METHOD_METRICS = ("coco_ap", "coco_ap50", "coco_ap75")
# Why a method has no COCO AP (not applicable, or the scoring failed), in methods.parquet.
METHOD_NOTES = ("coco_note",)
# Metrics where a smaller value is better (for the leaderboard's rank).
LOWER_IS_BETTER = frozenset({"vi_split", "vi_merge"})

METRICS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("note", pa.string()),
        pa.field("mask_path", pa.string()),
        pa.field("edge_path", pa.string()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("n_labels", pa.int32()),
        pa.field("n_objects", pa.int32()),
        pa.field("foreground_fraction", pa.float64()),
        pa.field("thresholds", pa.list_(pa.float64())),
        pa.field("foreground", pa.string()),
        pa.field("tiles", pa.int32()),
        pa.field("tile_cut_objects", pa.int32()),
        pa.field("intensity_lo", pa.float64()),
        pa.field("intensity_hi", pa.float64()),
        pa.field("n_instances", pa.int32()),
        pa.field("mean_score", pa.float64()),
        pa.field("class_counts", pa.string()),
        pa.field("gt_path", pa.string()),
        pa.field("gt_note", pa.string()),
        *(pa.field(name, pa.float64()) for name in IMAGE_METRICS),
        pa.field("decode_s", pa.float64()),
        pa.field("segment_s", pa.float64()),
        pa.field("write_s", pa.float64()),
        pa.field("metrics_s", pa.float64()),
        pa.field("runtime_s", pa.float64()),
        pa.field("params", pa.string(), nullable=False),
        pa.field("segpipe_version", pa.string(), nullable=False),
    ],
    metadata={
        "description": "segpipe: one row per (image, method)",
        "columns": json.dumps(
            {
                "image_id": "path relative to input_dir, POSIX separators, with extension",
                "status": "'ok' or 'error'",
                "note": "something to know about an ok image (e.g. only page 1 of a stack)",
                "mask_path": "the label image (PNG, TIFF or OME-Zarr folder), relative to the "
                             "working directory",
                "edge_path": "edge strength PNG (edge methods only)",
                "n_labels": "distinct non-zero labels in the mask",
                "n_objects": "objects: instances, or 8-connected components of a foreground "
                             "(null for classes and regions)",
                "foreground_fraction": "share of pixels with label > 0",
                "thresholds": "thresholds used, on the 0..1 intensity scale",
                "foreground": "the polarity used: bright or dark (foreground: auto decides "
                              "per image)",
                "tiles": "tiles the image was segmented in (null: whole, see tiles)",
                "tile_cut_objects": "stitched kinds: objects cut at a tile line, wider than "
                                    "the overlap (null when not tiled or exact)",
                "intensity_lo": "the sample value mapped to 0 (intensity_range)",
                "intensity_hi": "the sample value mapped to 1 (intensity_range)",
                "n_instances": "Mask R-CNN: detections kept",
                "mean_score": "Mask R-CNN: mean score of the detections",
                "class_counts": "Mask R-CNN: JSON object, class name to count",
                "runtime_s": "decode + segment + write + metrics",
                "gt_path": "the ground-truth mask used (null without one)",
                "gt_note": "why an image has no ground-truth scores",
                "iou": "foreground IoU against the ground truth (also dice, precision, "
                       "recall); null where labels are classes or regions",
                "boundary_f1": "F1 of boundary pixels within boundary_tolerance pixels",
                "ari": "adjusted Rand index of the label maps (labels/instances truth)",
                "vi_split": "variation of information: H(pred | truth), over-segmentation",
                "vi_merge": "variation of information: H(truth | pred), under-segmentation",
                "object_f1_50": "F1 of objects matched at IoU > 0.5 (null where labels are "
                                "classes or regions)",
                "object_f1_mean": "object F1 averaged over IoU thresholds 0.5..0.95",
                "params": "the method's settings as JSON",
            }
        ),
    },
)

def with_pandas_integers(schema: pa.Schema) -> pa.Schema:
    """``schema`` with pandas metadata that makes integer columns load as integers.

    Parquet keeps int32 and nulls apart, but pandas turns an integer column with a null
    (``height`` of an unreadable image) into float64 unless the file's pandas metadata
    names a nullable integer dtype: with it, ``pd.read_parquet`` gives ``Int32``, and
    the values are unchanged. Written by hand, so that writing a table needs no pandas.
    """
    def describe(field: pa.Field) -> tuple[str, str]:
        if pa.types.is_integer(field.type):
            bits = field.type.bit_width
            prefix = "UInt" if pa.types.is_unsigned_integer(field.type) else "Int"
            return f"{prefix.lower()}{bits}", f"{prefix}{bits}"
        if pa.types.is_floating(field.type):
            return str(field.type).replace("double", "float64"), "float64"
        if pa.types.is_string(field.type):
            return "unicode", "object"
        return "object", "object"

    columns = []
    for field in schema:
        pandas_type, numpy_type = describe(field)
        columns.append({"name": field.name, "field_name": field.name, "pandas_type": pandas_type,
                        "numpy_type": numpy_type, "metadata": None})
    pandas = {"index_columns": [], "column_indexes": [], "columns": columns,
              "creator": {"library": "segpipe"}, "pandas_version": "2.2.0"}
    return schema.with_metadata({**(schema.metadata or {}), b"pandas": json.dumps(pandas)})


METRICS_SCHEMA = with_pandas_integers(METRICS_SCHEMA)

RLE_TYPE = pa.struct([pa.field("size", pa.list_(pa.int32())), pa.field("counts", pa.string())])

INSTANCES_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("instance_id", pa.int32(), nullable=False),
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("bbox", pa.list_(pa.float64(), 4), nullable=False),
        pa.field("area", pa.int64(), nullable=False),
        pa.field("rle", RLE_TYPE, nullable=False),
    ],
    metadata={
        "description": "segpipe: one row per Mask R-CNN instance",
        "columns": json.dumps(
            {
                "instance_id": "the instance's label in the mask (1..N by falling score)",
                "bbox": "x0, y0, x1, y1 in pixels",
                "area": "pixels of the instance's full mask",
                "rle": "the full mask as COCO compressed RLE (size = [height, width])",
            }
        ),
    },
)


def params_json(settings: Mapping[str, Any]) -> str:
    """A method's settings as the canonical JSON of the ``params`` column."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def empty_row(*, image_id: str, method: str, kind: str, shard: str,
              params: str) -> dict[str, Any]:
    """A row with every column present; the caller fills in what it measured."""
    row = dict.fromkeys(METRICS_SCHEMA.names)
    row.update(
        image_id=image_id,
        method=method,
        kind=kind,
        shard=shard,
        params=params,
        segpipe_version=__version__,
    )
    return row


class _NoPandasFinder:
    """An import finder that makes pandas look absent (``import pandas`` fails)."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by segpipe, see "
                                      "segpipe.table.without_pandas)", name=name)


@contextlib.contextmanager
def pandas_blocked() -> Iterator[None]:
    """A block with pyarrow's pandas import blocked (see :func:`without_pandas`)."""
    if "pandas" in sys.modules:  # imported already: nothing to save
        yield
        return
    finder = _NoPandasFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def without_pandas(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` with pyarrow's pandas import blocked, in a process without pandas.

    The first time pyarrow turns Python objects into Arrow data it imports pandas (0.2 s),
    only to check whether they are pandas objects. A segment job converts plain lists and
    would pay 0.2 s of its 2 s (250 photographs) for nothing; the listing job too. With
    the import blocked (an import finder that says pandas is not installed) pyarrow takes
    pandas to be missing and converts the same data to the same table. It imports pandas
    after all the first time something needs it (``Table.to_pandas``), once the block is
    lifted; tests/test_summary.py checks both.
    """
    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with pandas_blocked():
            return function(*args, **kwargs)

    return wrapper


@without_pandas
def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) to a table with exactly :data:`METRICS_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)


class ParquetWriterAtomic:
    """Write a Parquet file in pieces (row groups) that appears whole or not at all.

    Every failure to write raises :class:`segpipe.errors.OutputError` naming the final
    path; the temporary file is removed, and a failure to remove it never hides the
    failure that stopped the write.

    >>> import tempfile, os
    >>> schema = pa.schema([("x", pa.int32())])
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> with ParquetWriterAtomic(path, schema) as writer:
    ...     writer.write(pa.table({"x": [1, 2]}, schema=schema))
    ...     writer.write(pa.table({"x": [3]}, schema=schema))
    >>> pq.read_table(path).column("x").to_pylist()
    [1, 2, 3]
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        with output_errors(self.path, temporary=self.tmp):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(str(self.tmp), schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        """Append ``table`` as the next row group."""
        with output_errors(self.path, temporary=self.tmp):
            self.writer.write_table(table)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            try:
                self.writer.close()
            except OSError as err:
                # The error that ended the block is the one to report.
                log.debug("closing %s after an error failed too (%s)", self.tmp, err)
            discard_temporary(self.tmp)
            return
        with output_errors(self.path, temporary=self.tmp):
            self.writer.close()
            commit_temporary(self.tmp, self.path)


def write_table_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a Parquet file so that it appears whole or not at all.

    Raises
    ------
    OutputError
        If it cannot be written (:func:`segpipe.imageio.write_bytes_atomic`).
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes_atomic(path, sink.getvalue().to_pybytes())
