"""Gathering the per-shard tables into the run's summaries."""

from __future__ import annotations

import json

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
    write_table_atomic,
)


def read_tables(paths, schema):
    """Concatenate per-shard Parquet files into one table (schema checked)."""
    tables = [pq.read_table(p, schema=schema) for p in paths]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def summarize_methods(metrics, *, method_scores=None, primary_metric="iou"):
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
    descriptive = ["decode_s", "segment_s", "write_s", "n_labels", "n_objects",
                   "foreground_fraction", "n_instances", "mean_score"]
    scored = [m for m in IMAGE_METRICS if m in metrics and metrics[m].notna().any()]
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
            "seconds_per_image": float(ok["runtime_s"].mean()) if len(ok) else float("nan"),
            "runtime_s_total": float(ok["runtime_s"].sum()),
        }
        for col in descriptive:
            row[f"{col}_mean"] = float(ok[col].mean()) if len(ok) else float("nan")
        for col in scored:
            values = ok[col].dropna()
            row[f"{col}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{col}_median"] = float(values.median()) if len(values) else float("nan")
            row[f"{col}_n"] = len(values)
        row.update((method_scores or {}).get(method, {}))
        rows.append(row)
    table = pd.DataFrame(rows)
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
                  coco_outs=None, method_score_paths=None, primary_metric="iou"):
    """Gather a run's per-shard tables into ``results/summary/``.

    Writes ``metrics.parquet`` (all rows), ``methods.parquet`` (per method), and, when
    given, ``instances.parquet`` (all Mask R-CNN instances) and one COCO results file
    per Mask R-CNN method (``coco_outs``: method name to path). ``method_score_paths``
    (method name to a JSON of whole-method scores) joins the leaderboard.
    """
    table = read_tables(paths, METRICS_SCHEMA)
    table = table.sort_by([("method", "ascending"), ("image_id", "ascending")])
    write_table_atomic(table, metrics_out)
    method_scores = {m: json.loads(open(p).read()) for m, p in (method_score_paths or {}).items()}
    leaderboard = summarize_methods(table.to_pandas(), method_scores=method_scores,
                                    primary_metric=primary_metric)
    methods = pa.Table.from_pandas(leaderboard, preserve_index=False)
    write_table_atomic(methods, methods_out)
    if instances_out is None:
        return
    instances = read_tables(instance_paths, INSTANCES_SCHEMA).sort_by(
        [("method", "ascending"), ("image_id", "ascending"), ("instance_id", "ascending")]
    )
    write_table_atomic(instances, instances_out)
    image_ids = sorted(set(table.column("image_id").to_pylist()))
    for method, path in (coco_outs or {}).items():
        mine = instances.filter(pc.equal(instances["method"], method))
        write_bytes_atomic(path, json.dumps(coco_results(mine, image_ids)).encode())
