"""What a run's folder holds: its recorded config, the images listed, what each method has
done, how far each model's training got. Read by ``segpipe status``, the live progress
line and the end-of-run summary."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segpipe.layout import LOGS_DIR, Layout, log_path

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


# --- training ----------------------------------------------------------------------------

# The rule whose logs (logs/train_maskrcnn/{name}.log) tell how far a training got.
TRAIN_RULE = "train_maskrcnn"
# A training job whose log changed this recently (or within 1.5 of its epochs, when those
# are slower) is taken to be running: see training_states.
RUNNING_S = 120.0
# How much of the end of a training log is read for its last epoch line.
LOG_TAIL_BYTES = 256 * 1024

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
# The training job's line after each epoch, after whatever prefix logging gives it.
_EPOCH_LINE = re.compile(
    rf"\bepoch (\d+)/(\d+) · loss ({_NUMBER}) · val AP (?:n/a|({_NUMBER}))"
    rf"(?: \(best ({_NUMBER}) at epoch (\d+)\))?"
    rf"(?: · ({_NUMBER}) s/epoch)?(?: · about (.+?) left)?\s*$")
# Its first line: "training nuclei: 48 train images, 12 validation images, 30 epochs".
_START_LINE = re.compile(
    r"\btraining (\S+): (\d+) train images, (\d+) validation images, (\d+) epochs")

TRAINING_STATES = ("trained", "training", "interrupted", "not started")


@dataclass(frozen=True)
class EpochLine:
    """What the training job logs after an epoch.

    ``val_ap`` is None for ``val AP n/a``; ``best_val_ap`` and ``best_epoch`` are None
    without the ``(best ... at epoch ...)`` part, ``seconds_per_epoch`` and ``left`` (the
    time left as written: ``11 min``) without theirs.
    """

    epoch: int
    epochs: int
    loss: float
    val_ap: float | None = None
    best_val_ap: float | None = None
    best_epoch: int | None = None
    seconds_per_epoch: float | None = None
    left: str | None = None


def parse_epoch_line(line: str) -> EpochLine | None:
    """The epoch line of a training log, whatever its logging prefix; None for any
    other line.

    >>> line = parse_epoch_line("2025-01-02 10:00:00 INFO segpipe.training: epoch 3/30 · "
    ...     "loss 0.8123 · val AP 0.4120 (best 0.4120 at epoch 3) · 25.1 s/epoch · "
    ...     "about 11 min left")
    >>> line.epoch, line.epochs, line.val_ap, line.best_epoch, line.left
    (3, 30, 0.412, 3, '11 min')
    >>> parse_epoch_line("epoch 1/30 · loss 2.5 · val AP n/a · 30.0 s/epoch").val_ap is None
    True
    >>> parse_epoch_line("the best epoch 3/30 was kept") is None
    True
    """
    found = _EPOCH_LINE.search(line)
    if found is None:
        return None
    epoch, epochs, loss, val_ap, best_ap, best_epoch, seconds, left = found.groups()
    return EpochLine(
        epoch=int(epoch), epochs=int(epochs), loss=float(loss),
        val_ap=None if val_ap is None else float(val_ap),
        best_val_ap=None if best_ap is None else float(best_ap),
        best_epoch=None if best_epoch is None else int(best_epoch),
        seconds_per_epoch=None if seconds is None else float(seconds), left=left)


def training_log(out: str | os.PathLike, name: str) -> Path:
    """The log of model ``name``'s training job in the run folder ``out``."""
    return Path(out) / log_path(TRAIN_RULE, f"{name}.log")


def read_training_log(path: str | os.PathLike) -> tuple[EpochLine | None, int | None]:
    """The last epoch line of a training log, and the epochs its start line plans.

    Only the last :data:`LOG_TAIL_BYTES` are read: a log polled every second may grow
    long. A missing log reads as ``(None, None)``.

    Returns
    -------
    last : EpochLine or None
        The log's last epoch line (a resumed job appends to the log, so this is the
        latest epoch finished by any attempt).
    planned : int or None
        The epoch count of the last start line (``training NAME: ... , E epochs``).
    """
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None, None
    last = planned = None
    for line in reversed(lines):
        if last is None:
            last = parse_epoch_line(line)
        if planned is None and (start := _START_LINE.search(line)):
            planned = int(start.group(4))
        if last is not None and planned is not None:
            break
    return last, planned


def training_names(out: str | os.PathLike) -> list[str]:
    """The models of the run in ``out``: its recorded config's ``train`` names, sorted,
    then any other folder of ``models/`` (from an earlier config), sorted."""
    names = sorted(recorded_config(out).get("train") or {})
    models = Path(run_layout(out).path("models"))
    for folder in sorted(models.iterdir()) if models.is_dir() else []:
        if folder.is_dir() and folder.name not in names:
            names.append(folder.name)
    return names


def training_states(out: str | os.PathLike) -> list[dict[str, Any]]:
    """How far the training of each model of the run in ``out`` got.

    Returns
    -------
    list of dict
        One per model of :func:`training_names`, with ``name``; ``state``, one of
        :data:`TRAINING_STATES`; ``epoch`` (the last epoch finished), ``epochs``
        (planned), ``val_ap`` (the last epoch's validation mask AP), ``best_epoch``,
        ``best_val_ap``, ``loss`` (the last epoch's) and ``left`` (the time left as the
        log writes it, ``4 min``). A number not known is None; so is an AP not
        computed (no object in the validation images).

    Raises
    ------
    ValueError
        If a ``model.json`` is not a JSON object, naming the file.
    OSError
        If a file of a model cannot be read.

    Notes
    -----
    - ``trained``: ``model.json`` exists. The numbers come from it and
      ``history.parquet``.
    - ``training``: the job's log (``logs/train_maskrcnn/{name}.log``) was modified in
      the last :data:`RUNNING_S` seconds, or within 1.5 epochs when its epochs take
      longer (a job logs at least once an epoch). This is a heuristic: nothing records
      whether a job is alive, and a job killed a moment ago reads as training for that
      long. The numbers come from the log's last epoch line.
    - ``interrupted``: not running, but ``last.pt`` exists: the same command resumes
      from it. The numbers come from the log, as for ``training``.
    - ``not started``: none of these; ``epochs`` is the config's.
    """
    train = recorded_config(out).get("train") or {}
    layout = run_layout(out)
    states = []
    for name in training_names(out):
        folder = Path(layout.model(name))
        state = {"name": name, "state": "not started", "epoch": None,
                 "epochs": (train.get(name) or {}).get("epochs"), "val_ap": None,
                 "best_epoch": None, "best_val_ap": None, "loss": None, "left": None}
        if (folder / "model.json").exists():
            state.update(_trained_state(folder))
        else:
            state.update(_logged_state(training_log(out, name), folder / "last.pt"))
        states.append(state)
    return states


def _trained_state(folder: Path) -> dict[str, Any]:
    """The numbers of a trained model, from its card and history."""
    import pyarrow.parquet as pq

    card_path = folder / "model.json"
    try:
        card = json.loads(card_path.read_text())
        best = card.get("best") or {}
    except (ValueError, AttributeError) as err:  # not JSON, or not an object
        raise ValueError(f"{card_path}: not a model card ({err})") from None
    state = {"state": "trained", "epochs": card.get("epochs"), "best_epoch": best.get("epoch"),
             "best_val_ap": _number(best.get("val_ap"))}
    history = folder / "history.parquet"
    if history.exists():
        rows = pq.read_table(history, columns=["epoch", "loss", "val_ap"]).to_pylist()
        if rows:
            last = max(rows, key=lambda row: row["epoch"])
            state.update(epoch=last["epoch"], loss=_number(last["loss"]),
                         val_ap=_number(last["val_ap"]))
            if state["best_epoch"] is None:
                scored = [row for row in rows if _number(row["val_ap"]) is not None]
                if scored:
                    top = max(scored, key=lambda row: row["val_ap"])
                    state.update(best_epoch=top["epoch"], best_val_ap=top["val_ap"])
    return state


def _logged_state(log: Path, checkpoint: Path) -> dict[str, Any]:
    """``training``, ``interrupted`` or nothing (not started), from the job's log."""
    last, planned = read_training_log(log)
    try:
        age = time.time() - log.stat().st_mtime
    except FileNotFoundError:
        age = math.inf
    window = max(RUNNING_S, 1.5 * (last.seconds_per_epoch or 0)) if last else RUNNING_S
    if age <= window:
        state = {"state": "training", "epoch": 0}
    elif checkpoint.exists():
        state = {"state": "interrupted"}
    else:
        return {}
    if planned is not None:
        state["epochs"] = planned
    if last is not None:
        state.update(epoch=last.epoch, epochs=last.epochs, loss=last.loss,
                     val_ap=last.val_ap, best_epoch=last.best_epoch,
                     best_val_ap=last.best_val_ap, left=last.left)
    return state


def _number(value: Any) -> float | None:
    """``value`` as a float; None for null or NaN (JSON and Parquet write both)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def training_lines(out: str | os.PathLike) -> list[str]:
    """One line per model of the run in ``out`` for ``segpipe status``.

    Examples: ``model nuclei: trained, best epoch 17/30, val AP 0.831``,
    ``model nuclei: training, epoch 12/30, val AP 0.712, about 4 min left``,
    ``model nuclei: interrupted after epoch 12/30, val AP 0.712; run again to resume
    from last.pt``, ``model nuclei: not started, 30 epochs planned``.
    """
    lines = []
    for s in training_states(out):
        epochs = "?" if s["epochs"] is None else s["epochs"]
        ap = "n/a" if s["val_ap"] is None else f"{s['val_ap']:.3f}"
        if s["state"] == "trained":
            if s["best_epoch"] is None:
                what = f"trained, {s['epoch'] or epochs}/{epochs} epochs, no validation AP"
            else:
                best = "n/a" if s["best_val_ap"] is None else f"{s['best_val_ap']:.3f}"
                what = f"trained, best epoch {s['best_epoch']}/{epochs}, val AP {best}"
        elif s["state"] == "training":
            what = (f"training, epoch {s['epoch']}/{epochs}, val AP {ap}" if s["epoch"]
                    else f"training, no epoch finished yet of {epochs}")
            if s["left"]:
                what += f", about {s['left']} left"
        elif s["state"] == "interrupted":
            what = ("interrupted" if s["epoch"] is None
                    else f"interrupted after epoch {s['epoch']}/{epochs}, val AP {ap}")
            what += "; run again to resume from last.pt"
        else:
            what = "not started" + (f", {epochs} epochs planned" if s["epochs"] else "")
        lines.append(f"model {s['name']}: {what}")
    return lines
