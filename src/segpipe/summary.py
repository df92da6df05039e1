"""Gathering the per-shard tables into the run's summaries."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segpipe.table import METRICS_SCHEMA, write_table_atomic


def read_metrics(paths):
    """Concatenate per-shard metrics files into one table (schema checked)."""
    tables = [pq.read_table(p, schema=METRICS_SCHEMA) for p in paths]
    if not tables:
        return METRICS_SCHEMA.empty_table()
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
        ``foreground_fraction`` over the images that succeeded.
    """
    means = ["runtime_s", "decode_s", "segment_s", "write_s", "n_labels", "n_objects",
             "foreground_fraction"]
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


def merge_metrics(paths, *, metrics_out, methods_out):
    """Write ``summary/metrics.parquet`` (all rows) and ``summary/methods.parquet``."""
    table = read_metrics(paths)
    table = table.sort_by([("method", "ascending"), ("image_id", "ascending")])
    write_table_atomic(table, metrics_out)
    methods = pa.Table.from_pandas(summarize_methods(table.to_pandas()), preserve_index=False)
    write_table_atomic(methods, methods_out)
