"""Merging the per-shard tables, one method at a time."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from segpipe.summary import merge_metrics, summarize_methods
from segpipe.table import INSTANCES_SCHEMA, empty_row, rows_to_table, write_table_atomic


def shard_rows(method, ids, rng, with_iou):
    rows = []
    for image_id in ids:
        row = empty_row(image_id=image_id, method=method, kind="threshold", shard="0",
                        params="{}")
        row.update(status="ok", runtime_s=float(rng.random()), n_labels=int(rng.integers(9)),
                   iou=float(rng.random()) if with_iou else None)
        rows.append(row)
    return rows


def test_streamed_merge_equals_the_whole_run_summary(tmp_path):
    rng = np.random.default_rng(0)
    paths, every = [], []
    for method, with_iou in (("otsu", True), ("km", True), ("edges", False)):
        for shard, ids in enumerate((["b.png", "d.png"], ["a.png", "c.png"])):
            rows = shard_rows(method, ids, rng, with_iou)
            path = tmp_path / "metrics" / method / f"{shard:06d}.parquet"
            write_table_atomic(rows_to_table(rows), path)
            paths.append(path)
            every += rows
    instances = [{"image_id": "c.png", "method": "mr", "instance_id": i, "class_id": 1,
                  "class_name": "x", "score": 0.5, "bbox": [0.0, 0, 1, 1], "area": 1,
                  "rle": {"size": [1, 1], "counts": "01"}} for i in (2, 1)]
    write_table_atomic(pa.Table.from_pylist(instances, schema=INSTANCES_SCHEMA),
                       tmp_path / "instances/mr/000000.parquet")
    out = tmp_path / "summary"
    merge_metrics(paths, metrics_out=out / "metrics.parquet", methods_out=out / "methods.parquet",
                  instance_paths=[tmp_path / "instances/mr/000000.parquet"],
                  instances_out=out / "instances.parquet",
                  coco_outs={"mr": out / "mr.coco.json"})
    merged = pd.read_parquet(out / "metrics.parquet")
    assert list(zip(merged["method"], merged["image_id"])) == sorted(
        (m, i) for m in ("edges", "km", "otsu") for i in ["a.png", "b.png", "c.png", "d.png"])
    expected = summarize_methods(rows_to_table(every).to_pandas())
    leaderboard = pd.read_parquet(out / "methods.parquet")
    pd.testing.assert_frame_equal(leaderboard, expected, check_dtype=False)
    assert leaderboard.set_index("method").loc["edges", "iou_n"] == 0
    assert list(pd.read_parquet(out / "instances.parquet")["instance_id"]) == [1, 2]
    coco = json.loads((out / "mr.coco.json").read_text())
    assert [r["image_id"] for r in coco] == [2, 2]  # c.png is third of the sorted ids


def test_integer_columns_load_as_integers_beside_error_rows(tmp_path):
    # An unreadable image has no height: pandas would make the column float64.
    rows = shard_rows("otsu", ["a.png", "b.png"], np.random.default_rng(1), True)
    rows[0].update(height=7, width=9, n_objects=3)
    rows[1].update(status="error", error="b.png: truncated", n_labels=None)
    path = tmp_path / "metrics/otsu/000000.parquet"
    write_table_atomic(rows_to_table(rows), path)
    out = tmp_path / "summary"
    merge_metrics([path], metrics_out=out / "metrics.parquet", methods_out=out / "methods.parquet",
                  instance_paths=[], instances_out=out / "instances.parquet", coco_outs={})
    merged = pd.read_parquet(out / "metrics.parquet").set_index("image_id")
    for column in ("height", "width", "n_labels", "n_objects"):
        assert str(merged[column].dtype) == "Int32", column
    assert merged.loc["a.png", "height"] == 7 and pd.isna(merged.loc["b.png", "height"])
    assert merged["iou"].dtype == np.float64 and merged["status"].tolist() == ["ok", "error"]
    methods = pd.read_parquet(out / "methods.parquet")
    assert methods.loc[0, "n_objects_mean"] == 3.0 and methods.loc[0, "n_error"] == 1


def test_segment_jobs_write_tables_without_importing_pandas():
    # pyarrow imports pandas (0.2 s) on its first conversion unless blocked; the table is
    # the same, and pandas still loads when something needs it afterwards.
    import subprocess
    import sys

    code = """
import sys
from segpipe.table import empty_row, rows_to_table
row = empty_row(image_id="a.png", method="m", kind="threshold", shard="0", params="{}")
row.update(status="ok", height=3, width=4, thresholds=[0.5])
table = rows_to_table([row])
assert "pandas" not in sys.modules, "pandas was imported"
frame = table.to_pandas()
assert "pandas" in sys.modules and str(frame["height"].dtype) == "Int32"
print(frame.loc[0, "height"], table.column("thresholds").to_pylist())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "[[0.5]]"]
