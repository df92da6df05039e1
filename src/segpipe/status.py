"""What a run's folder holds: its recorded config, the images listed, what each method has
done. Read by ``segpipe status``, the live progress line and the end-of-run summary."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from segpipe.layout import LOGS_DIR, Layout

# The config a run used, in its output folder (Snakemake's working directory).
RUN_CONFIG = "segpipe-config.yaml"

# A job's progress lines (segpipe.progress): "otsu shard 000003: 120/250 images ...".
_LOG_DONE = re.compile(r"(\d+)/(\d+) images")


def recorded_config(out: str | os.PathLike) -> dict[str, Any]:
    """The config recorded in the run folder ``out`` (empty if there is none)."""
    recorded = Path(out) / RUN_CONFIG
    return (yaml.safe_load(recorded.read_text()) or {}) if recorded.exists() else {}


def run_layout(out: str | os.PathLike) -> Layout:
    """The output layout of the run in ``out``: its recorded ``out_dir`` (default
    ``results``) under ``out``."""
    return Layout(str(Path(out) / recorded_config(out).get("out_dir", "results")))


def results_dir(out: str | os.PathLike) -> Path:
    """The out_dir of the run in ``out`` (its recorded config's, default results/)."""
    return Path(run_layout(out).out_dir)


def progress_counts(
    out: str | os.PathLike, cache: dict[tuple[str, int], int] | None = None
) -> tuple[int | None, dict[str, int]]:
    """Images done per method so far: rows of finished shard tables plus the last progress
    line of each running shard's log. ``cache`` (a dict) keeps table row counts between
    calls, so polling a run of thousands of shards stays cheap.

    Returns
    -------
    total : int or None
        Images listed (None before the listing).
    done : dict
        Method name to images done.
    """
    import pyarrow.parquet as pq

    out = Path(out)
    layout = run_layout(out)
    cache = {} if cache is None else cache
    manifest = Path(layout.manifest)
    total = pq.read_metadata(manifest).num_rows if manifest.exists() else None
    done = {}
    logs = out / LOGS_DIR / "segment_shard"
    for folder in sorted(logs.glob("*")) if logs.is_dir() else []:
        count = 0
        for log in folder.glob("*.log"):
            table = Path(layout.metrics(folder.name, log.stem))
            if table.exists():
                key = (str(table), table.stat().st_mtime_ns)
                if key not in cache:
                    cache[key] = pq.read_metadata(table).num_rows
                count += cache[key]
                continue
            try:
                tail = log.read_bytes()[-2000:].decode("utf-8", "replace")
            except OSError:
                continue
            found = _LOG_DONE.findall(tail)
            if found:
                count += int(found[-1][0])
        done[folder.name] = count
    return total, done


def status_counts(out: str | os.PathLike) -> tuple[int | None, list[dict[str, Any]]]:
    """Images listed, and per method: done (ok), failed (error), not yet run.

    Returns
    -------
    listed : int or None
        Images in the manifest (None before the folder is listed).
    methods : list of dict
        ``method``, ``ok``, ``error``, ``missing`` per method of the recorded config.
    """
    import pyarrow.parquet as pq

    out = Path(out)
    layout = run_layout(out)
    manifest = Path(layout.manifest)
    listed = pq.read_metadata(manifest).num_rows if manifest.exists() else None
    names = sorted(recorded_config(out).get("methods", {}))
    metrics = Path(layout.path("metrics"))
    for folder in sorted(metrics.glob("*")) if metrics.is_dir() else []:
        if folder.name not in names:
            names.append(folder.name)
    rows = []
    for name in names:
        ok = error = 0
        for table in sorted((metrics / name).glob("*.parquet")):
            status = pq.read_table(table, columns=["status"]).column("status").to_pylist()
            ok += status.count("ok")
            error += status.count("error")
        missing = None if listed is None else max(0, listed - ok - error)
        rows.append({"method": name, "ok": ok, "error": error, "missing": missing})
    return listed, rows


def listing_summary(config: Mapping[str, Any]) -> str:
    """What a dry run cannot show before the listing job has run: the image count."""
    from segpipe.manifest import scan, selection_reason

    images = skipped = 0
    for kind, rel, _ in scan(config["input_dir"]):
        if kind == "file" and selection_reason(rel, config.get("include"),
                                              config.get("exclude") or ()) is None:
            images += 1
        else:
            skipped += 1
    return (f"segpipe: {images:,} images in {config['input_dir']} ({skipped:,} other entries "
            f"skipped), {len(config['methods'])} methods: {', '.join(config['methods'])}")
