"""Gathering the per-shard tables into the run's summaries."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from segpipe.imageio import write_bytes_atomic
from segpipe.table import INSTANCES_SCHEMA, METRICS_SCHEMA, write_table_atomic


def read_tables(paths, schema):
    """Concatenate per-shard Parquet files into one table (schema checked)."""
    tables = [pq.read_table(p, schema=schema) for p in paths]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def summarize_methods(metrics):
    """One row per method: images ok and in error, mean runtime and label counts.

    Parameters
    ----------
    metrics : pandas.DataFrame
        Rows in :data:`segpipe.table.METRICS_SCHEMA`.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``kind``, ``params``, ``n_images``, ``n_ok``, ``n_error``,
        ``runtime_s_mean``, ``runtime_s_total`` and the means of ``decode_s``,
        ``segment_s``, ``write_s``, ``n_labels``, ``n_objects``,
        ``foreground_fraction``, ``n_instances`` and ``mean_score`` over the images that
        succeeded (NaN where a method has no such value).
    """
    means = ["runtime_s", "decode_s", "segment_s", "write_s", "n_labels", "n_objects",
             "foreground_fraction", "n_instances", "mean_score"]
    rows = []
    for method, group in metrics.groupby("method", sort=True):
        ok = group[group["status"] == "ok"]
        row = {
            "method": method,
            "kind": group["kind"].iloc[0],
            "params": group["params"].iloc[0],
            "n_images": len(group),
            "n_ok": len(ok),
            "n_error": int((group["status"] == "error").sum()),
            "runtime_s_total": float(ok["runtime_s"].sum()),
        }
        for col in means:
            row[f"{col}_mean"] = float(ok[col].mean()) if len(ok) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def coco_results(instances, image_ids):
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


def merge_metrics(paths, *, metrics_out, methods_out, instance_paths=(), instances_out=None,
                  coco_outs=None):
    """Gather a run's per-shard tables into ``results/summary/``.

    Writes ``metrics.parquet`` (all rows), ``methods.parquet`` (per method), and, when
    given, ``instances.parquet`` (all Mask R-CNN instances) and one COCO results file
    per Mask R-CNN method (``coco_outs``: method name to path).
    """
    table = read_tables(paths, METRICS_SCHEMA)
    table = table.sort_by([("method", "ascending"), ("image_id", "ascending")])
    write_table_atomic(table, metrics_out)
    methods = pa.Table.from_pandas(summarize_methods(table.to_pandas()), preserve_index=False)
    write_table_atomic(methods, methods_out)
    if instances_out is None:
        return
    instances = read_tables(instance_paths, INSTANCES_SCHEMA).sort_by(
        [("method", "ascending"), ("image_id", "ascending"), ("instance_id", "ascending")]
    )
    write_table_atomic(instances, instances_out)
    image_ids = sorted(set(table.column("image_id").to_pylist()))
    for method, path in (coco_outs or {}).items():
        mine = instances.filter(pa.compute.equal(instances["method"], method))
        write_bytes_atomic(path, json.dumps(coco_results(mine, image_ids)).encode())
