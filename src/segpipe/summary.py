"""Gathering the per-shard tables into the run's summaries."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from segpipe.imageio import write_bytes_atomic
from segpipe.table import (
    IMAGE_METRICS,
    INSTANCES_SCHEMA,
    LOWER_IS_BETTER,
    METHOD_METRICS,
    METRICS_SCHEMA,
    ParquetWriterAtomic,
    write_table_atomic,
)


def read_tables(paths: Iterable[str | os.PathLike], schema: pa.Schema) -> pa.Table:
    """Concatenate per-shard Parquet files into one table (schema checked)."""
    tables = [pq.read_table(p, schema=schema) for p in paths]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


DESCRIPTIVE = ("decode_s", "segment_s", "write_s", "n_labels", "n_objects",
               "foreground_fraction", "n_instances", "mean_score")


def summarize_methods(metrics: pd.DataFrame, *,
                      method_scores: Mapping[str, Mapping[str, Any]] | None = None,
                      primary_metric: str = "iou") -> pd.DataFrame:
    """The leaderboard: one row per method.

    Parameters
    ----------
    metrics : pandas.DataFrame
        Rows in :data:`segpipe.table.METRICS_SCHEMA`.
    method_scores : dict of str to dict, optional
        Whole-method scores (COCO mask AP) by method name.
    primary_metric : str
        Ranks the methods: by its mean (per-image metrics) or value (COCO AP), best
        first; lower is better for ``vi_split`` and ``vi_merge``. Methods without a
        value rank last.

    Returns
    -------
    pandas.DataFrame
        ``method``, ``kind``, ``params``, ``n_images``, ``n_ok``, ``n_error``,
        ``seconds_per_image`` (mean ``runtime_s`` of the images that succeeded),
        ``runtime_s_total``, the means of the stage times and label counts, for each
        ground-truth metric present ``<metric>_mean``, ``<metric>_median`` and
        ``<metric>_n`` (images scored), the COCO AP columns when given, and ``rank``
        (1 = best by ``primary_metric``).
    """
    rows = [method_row(method, group, method_scores)
            for method, group in metrics.groupby("method", sort=True)]
    return rank_methods(pd.DataFrame(rows), primary_metric)


def method_row(method: str, group: pd.DataFrame,
               method_scores: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """One method's leaderboard row from its rows (a DataFrame)."""
    ok = group[group["status"] == "ok"]
    row = {
        "method": method,
        "kind": group["kind"].iloc[0],
        "params": group["params"].iloc[0],
        "n_images": len(group),
        "n_ok": len(ok),
        "n_error": int((group["status"] == "error").sum()),
        "seconds_per_image": float(ok["runtime_s"].mean()) if len(ok) else float("nan"),
        "runtime_s_total": float(ok["runtime_s"].sum()),
    }
    for col in DESCRIPTIVE:
        # As float64: an integer column (n_objects) loads as pandas' nullable Int32, whose
        # mean of only nulls is NA, not NaN.
        row[f"{col}_mean"] = float(ok[col].astype("float64").mean()) if len(ok) else float("nan")
    for col in IMAGE_METRICS:
        if col not in group or not group[col].notna().any():
            continue
        values = ok[col].dropna()
        row[f"{col}_mean"] = float(values.mean()) if len(values) else float("nan")
        row[f"{col}_median"] = float(values.median()) if len(values) else float("nan")
        row[f"{col}_n"] = len(values)
    row.update((method_scores or {}).get(method, {}))
    return row


def rank_methods(table: pd.DataFrame, primary_metric: str) -> pd.DataFrame:
    """Add ``rank`` (1 = best by ``primary_metric``) and sort by it.

    A method with no value of a metric another method has gets ``<metric>_n`` 0.
    """
    for column in [c for c in table.columns if c.endswith("_n")]:
        table[column] = table[column].fillna(0).astype(int)
    key = primary_metric if primary_metric in METHOD_METRICS else f"{primary_metric}_mean"
    if len(table) and key in table:
        values = pd.to_numeric(table[key], errors="coerce")
        ascending = primary_metric in LOWER_IS_BETTER
        table["rank"] = values.rank(ascending=ascending, method="min", na_option="bottom").astype(int)
        table = table.sort_values(["rank", "method"]).reset_index(drop=True)
    else:
        table["rank"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table.attrs["primary_metric"] = primary_metric
    return table


def coco_results(instances: pa.Table, image_ids: Iterable[str]) -> list[dict[str, Any]]:
    """A COCO results list (``image_id``, ``category_id``, ``segmentation``, ``score``).

    COCO wants integer image ids: an image's id is its position in ``image_ids`` (the
    run's sorted image ids); ``file_name`` carries the path too, for matching.
    """
    number = {image_id: i for i, image_id in enumerate(image_ids)}
    return [
        {
            "image_id": number[row["image_id"]],
            "file_name": row["image_id"],
            "category_id": int(row["class_id"]),
            "segmentation": {"size": list(row["rle"]["size"]), "counts": row["rle"]["counts"]},
            "score": float(row["score"]),
        }
        for row in instances.to_pylist()
    ]


def by_method(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """Per-shard table paths grouped by method: ``results/metrics/{method}/{shard}.parquet``."""
    groups = {}
    for path in sorted(map(str, paths)):
        groups.setdefault(Path(path).parent.name, []).append(path)
    return dict(sorted(groups.items()))


def _write_sorted(writer: ParquetWriterAtomic, table: pa.Table, key: str, *,
                  rows_per_group: int = 100_000) -> None:
    """Append ``table`` sorted by ``key`` in row groups, never holding a sorted copy whole."""
    order = pc.sort_indices(table, sort_keys=[(key, "ascending")])
    for start in range(0, len(order), rows_per_group):
        writer.write(table.take(order[start : start + rows_per_group]))


def merge_objects(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> None:
    """Gather the per-shard object tables into one (``summary/objects.parquet``), by method,
    then image and label, one method at a time."""
    from segpipe.measure import OBJECTS_SCHEMA

    with ParquetWriterAtomic(out, OBJECTS_SCHEMA) as writer:
        for method_paths in by_method(paths).values():
            table = read_tables(method_paths, OBJECTS_SCHEMA).sort_by(
                [("image_id", "ascending"), ("label", "ascending")]
            )
            writer.write(table)
            del table
            pa.default_memory_pool().release_unused()


def merge_metrics(
    paths: Iterable[str | os.PathLike],
    *,
    metrics_out: str | os.PathLike,
    methods_out: str | os.PathLike,
    instance_paths: Iterable[str | os.PathLike] = (),
    instances_out: str | os.PathLike | None = None,
    coco_outs: Mapping[str, str | os.PathLike] | None = None,
    method_score_paths: Mapping[str, str | os.PathLike] | None = None,
    primary_metric: str = "iou",
    object_paths: Iterable[str | os.PathLike] = (),
    objects_out: str | os.PathLike | None = None,
) -> None:
    """Gather a run's per-shard tables into ``results/summary/``.

    Writes ``metrics.parquet`` (all rows, by method and image id), ``methods.parquet`` (per
    method), and, when given, ``instances.parquet`` (all Mask R-CNN instances) and one
    COCO results file per Mask R-CNN method (``coco_outs``: method name to path).
    ``method_score_paths`` (method name to a JSON of whole-method scores) joins the
    leaderboard. ``objects_out``, when given, gathers ``object_paths`` (:func:`merge_objects`).

    One method at a time is read, sorted and appended to the output as row groups, so
    memory follows the largest method's rows, not the whole run's.
    """
    method_scores = {m: json.loads(Path(p).read_text()) for m, p in (method_score_paths or {}).items()}
    rows, image_ids = [], set()
    needed = ["method", "kind", "params", "status", "runtime_s", *DESCRIPTIVE, *IMAGE_METRICS]
    with ParquetWriterAtomic(metrics_out, METRICS_SCHEMA) as writer:
        for method, method_paths in by_method(paths).items():
            table = read_tables(method_paths, METRICS_SCHEMA)
            _write_sorted(writer, table, "image_id")
            if instances_out is not None:  # COCO results number the images
                image_ids.update(table.column("image_id").to_pylist())
            # Repeated strings as categories: a million rows of params cost a few bytes.
            frame = table.select(needed).to_pandas(strings_to_categorical=True)
            rows.append(method_row(method, frame, method_scores))
            del table, frame
            pa.default_memory_pool().release_unused()
    leaderboard = rank_methods(pd.DataFrame(rows), primary_metric)
    write_table_atomic(pa.Table.from_pandas(leaderboard, preserve_index=False), methods_out)
    if objects_out is not None:
        merge_objects(object_paths, objects_out)
    if instances_out is None:
        return
    image_ids = sorted(image_ids)
    instance_groups = by_method(instance_paths)
    with ParquetWriterAtomic(instances_out, INSTANCES_SCHEMA) as writer:
        for method, method_paths in instance_groups.items():
            instances = read_tables(method_paths, INSTANCES_SCHEMA).sort_by(
                [("image_id", "ascending"), ("instance_id", "ascending")]
            )
            writer.write(instances)
            if method in (coco_outs or {}):
                results = coco_results(instances, image_ids)
                write_bytes_atomic(coco_outs[method], json.dumps(results).encode())
    for method, path in (coco_outs or {}).items():
        if method not in instance_groups:  # a method with no instance tables
            write_bytes_atomic(path, b"[]")
