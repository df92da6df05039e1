"""Training in the report, in `segpipe status` and in the live line, from fabricated
model folders and logs of the shape the training job writes."""

import io
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from segpipe import live, status
from segpipe.layout import Layout, log_path
from segpipe.report import drawing, training, write_report_page
from segpipe.report.training import best_epoch, plot_training

EPOCH_LINE = ("epoch {e}/30 · loss {loss:.4f} · val AP {ap:.4f} (best {best:.4f} at epoch "
              "{at}) · 25.1 s/epoch · about {left} left")
PREFIX = "2025-03-01 10:00:{s:02d},123 INFO segpipe.training.loop: "


def history(n, *, ap=True):
    """``history.parquet`` of ``n`` epochs: losses falling, AP rising then dipping."""
    epoch = np.arange(1, n + 1)
    table = {"epoch": epoch.astype("int64")}
    parts = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
             "loss_rpn_box_reg"]
    for k, part in enumerate(parts):
        table[part] = 0.4 / (k + 1) * np.exp(-epoch / 8) + 0.01
    table["loss"] = sum(table[p] for p in parts)
    table["val_loss"] = table["loss"] * 1.2
    rising = np.minimum(epoch / 10, 1.0) - 0.02 * np.maximum(epoch - 10, 0)
    for column, scale in (("val_ap", 0.8), ("val_ap50", 1.0), ("val_ap75", 0.7)):
        table[column] = rising * scale if ap else np.full(n, np.nan)
    table.update(lr=np.full(n, 0.01), seconds=np.full(n, 20.0),
                 images=np.full(n, 48, dtype="int64"))
    return pd.DataFrame(table)


def card(name, *, best, val_ap=0.7, epochs=30):
    return {"name": name, "classes": ["__background__", "object"], "epochs": epochs,
            "best": {"epoch": best, "val_ap": val_ap, "val_ap50": 0.9, "val_ap75": 0.6,
                     "val_loss": 0.3},
            "splits": {"train": [f"t{k}.png" for k in range(48)],
                       "val": [f"v{k}.png" for k in range(12)]},
            "seconds": 612.0}


def read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def marked(fig, gid):
    """The x (and y) of every artist of the figure with ``gid``."""
    return [(list(line.get_xdata()), list(line.get_ydata()))
            for ax in fig.axes for line in ax.lines if line.get_gid() == gid]


# --- the figure ------------------------------------------------------------------------

def test_training_figure_marks_the_cards_best_epoch_on_both_panels(tmp_path):
    out = tmp_path / "training.png"
    tables = {"nuclei": history(30), "cells": history(12)}
    # The card's best epoch (17) is not the epoch of the highest AP (10): the card wins,
    # since model.pt holds the card's. Without a card, the highest AP is marked.
    fig = plot_training(tables, out, cards={"nuclei": card("nuclei", best=17)})
    image = read_png(out)
    assert image.shape == (round((training.TOP_IN + 2 * training.ROW_IN) * drawing.DPI),
                           round(training.WIDTH_IN * drawing.DPI), 3)
    assert [x[0] for x, _ in marked(fig, "best-epoch:nuclei")] == [17, 17]
    assert [x[0] for x, _ in marked(fig, "best-epoch:cells")] == [10, 10]
    star = marked(fig, "best-ap:nuclei")
    assert star == [([17], [pytest.approx(tables["nuclei"]["val_ap"][16])])]
    nuclei_loss, nuclei_ap = fig.axes[0], fig.axes[1]
    assert nuclei_loss.get_title(loc="left").startswith(
        "nuclei: losses, 30/30 epochs, 48 train + 12 validation images, 10.2 min")
    assert nuclei_ap.get_title() == (
        f"Validation mask AP: best {tables['nuclei']['val_ap'][16]:.3f} at epoch 17")
    labels = [line.get_label() for line in nuclei_loss.lines]
    assert labels[:7] == ["classifier", "box regression", "mask", "objectness",
                          "RPN box regression", "total (training)", "validation"]
    assert [line.get_label() for line in nuclei_ap.lines][:3] == [
        "mask AP", "mask AP50", "mask AP75"]


def test_training_figure_draws_a_model_without_epochs_or_ap_with_a_note(tmp_path):
    out = tmp_path / "training.png"
    empty = history(0)
    fig = plot_training({"a": empty, "b": history(5, ap=False)}, out,
                        cards={"b": card("b", best=None)})
    assert read_png(out).shape[:2] == (
        round((training.TOP_IN + 2 * training.ROW_IN) * drawing.DPI),
        round(training.WIDTH_IN * drawing.DPI))
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert texts[0] == texts[1] == ["No epoch finished yet."]
    assert texts[3] == ["No validation AP: the validation images hold no object."]
    assert not marked(fig, "best-epoch:a") and not marked(fig, "best-epoch:b")
    assert len(fig.axes[2].lines) == 7  # b's losses are drawn all the same


def test_training_figure_without_models_says_so(tmp_path):
    fig = plot_training({}, tmp_path / "training.png")
    assert [t.get_text() for t in fig.texts] == ["No trained model: no training curves."]


def test_best_epoch_is_the_cards_else_the_highest_validation_ap():
    table = history(20)
    assert best_epoch(table) == 10
    assert best_epoch(table, {"best": {"epoch": 4}}) == 4
    assert best_epoch(table, {"best": None}) == 10
    assert best_epoch(history(3, ap=False)) is None


def test_report_page_puts_the_training_figure_under_its_own_heading(tmp_path):
    figures = []
    for k, stem in enumerate(("quality_runtime", "distributions", "training")):
        figures.append(tmp_path / f"{stem}.png")
        cv2.imwrite(str(figures[-1]), np.full((4, 5, 3), k, np.uint8))
    methods = pd.DataFrame({"method": ["otsu"], "kind": ["threshold"], "n_ok": [3],
                            "n_error": [0], "seconds_per_image": [0.1], "n_images": [3]})
    out = tmp_path / "report.html"
    write_report_page(methods, out, figures=figures, overlays=[])
    page = out.read_text()
    assert '<a href="#training">Training</a>' in page
    heading = page.index('<h2 id="training">Training</h2>')
    assert page.index('<h2 id="figures">') < page.index('alt="distributions"') < heading
    assert heading < page.index('alt="training"') < page.index('<h2 id="examples">')
    assert "the one model.pt holds" in page


def test_report_page_without_training_has_no_training_section(tmp_path):
    figure = tmp_path / "distributions.png"
    cv2.imwrite(str(figure), np.zeros((4, 5, 3), np.uint8))
    methods = pd.DataFrame({"method": ["otsu"], "kind": ["threshold"], "n_ok": [3],
                            "n_error": [0], "seconds_per_image": [0.1], "n_images": [3]})
    write_report_page(methods, tmp_path / "r.html", figures=[figure], overlays=[])
    assert "Training" not in (tmp_path / "r.html").read_text()


# --- the log's epoch lines -------------------------------------------------------------

def test_epoch_lines_are_read_whatever_the_logging_prefix():
    line = status.parse_epoch_line(PREFIX.format(s=1) + EPOCH_LINE.format(
        e=3, loss=0.8123, ap=0.412, best=0.412, at=3, left="11 min"))
    assert line == status.EpochLine(epoch=3, epochs=30, loss=0.8123, val_ap=0.412,
                                    best_val_ap=0.412, best_epoch=3, seconds_per_epoch=25.1,
                                    left="11 min")
    bare = status.parse_epoch_line(
        "epoch 1/30 · loss 1.9000 · val AP n/a · 25.1 s/epoch · about 12 min left")
    assert bare == status.EpochLine(epoch=1, epochs=30, loss=1.9, seconds_per_epoch=25.1,
                                    left="12 min")
    last = status.parse_epoch_line("[x] epoch 30/30 · loss nan · val AP 0.5000 (best 0.6000 "
                                   "at epoch 20) · 3.0 s/epoch · about 0 s left")
    assert (last.epoch, np.isnan(last.loss), last.best_epoch, last.best_val_ap) == (
        30, True, 20, 0.6)
    for other in ("training nuclei: 48 train images, 12 validation images, 30 epochs",
                  "kept the best epoch 3/30 as model.pt", "epoch 3/30 · loss high", ""):
        assert status.parse_epoch_line(other) is None


def test_a_logs_last_epoch_line_and_planned_epochs(tmp_path):
    log = tmp_path / "nuclei.log"
    assert status.read_training_log(log) == (None, None)
    log.write_text(PREFIX.format(s=0) + "training nuclei: 48 train images, 12 validation "
                   "images, 30 epochs\n")
    assert status.read_training_log(log) == (None, 30)
    with log.open("a") as f:
        for e in (1, 2):
            f.write(PREFIX.format(s=e) + EPOCH_LINE.format(
                e=e, loss=1 / e, ap=0.1 * e, best=0.1 * e, at=e, left="5 min") + "\n")
            f.write(PREFIX.format(s=e) + "saved last.pt\n")
    last, planned = status.read_training_log(log)
    assert (last.epoch, last.loss, last.val_ap, planned) == (2, 0.5, 0.2, 30)


# --- segpipe status --------------------------------------------------------------------

def run_folder(tmp_path, names, **extra):
    """A run folder whose recorded config trains ``names`` (30 epochs each)."""
    out = tmp_path / "exp"
    out.mkdir()
    config = {"out_dir": "results", "train": {n: {"epochs": 30} for n in names}, **extra}
    (out / status.RUN_CONFIG).write_text(yaml.safe_dump(config))
    return out, Layout(str(out / "results"))


def write_log(out, name, lines, *, age_s=0.0):
    """``name``'s training log with these epoch lines ((epoch, loss, ap, best ap, best
    epoch)), modified ``age_s`` seconds ago."""
    log = out / log_path("train_maskrcnn", f"{name}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    text = [PREFIX.format(s=0) + f"training {name}: 48 train images, 12 validation images, "
            "30 epochs"]
    text += [PREFIX.format(s=1) + EPOCH_LINE.format(e=e, loss=loss, ap=ap, best=best, at=at,
                                                    left="4 min")
             for e, loss, ap, best, at in lines]
    log.write_text("\n".join(text) + "\n")
    stamp = time.time() - age_s
    os.utime(log, (stamp, stamp))
    return log


def checkpoint(layout, name, *files):
    """Empty ``files`` in model ``name``'s folder (status never opens them)."""
    folder = Path(layout.model(name))
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file).touch()
    return folder


def trained_model(layout, name, n=30, best=17):
    folder = checkpoint(layout, name, "model.pt", "last.pt")
    table = history(n)
    table.to_parquet(folder / "history.parquet")
    model_card = card(name, best=best, val_ap=float(table["val_ap"][best - 1]))
    (folder / "model.json").write_text(json.dumps(model_card))
    return table


def test_training_states_of_the_four_cases(tmp_path):
    out, layout = run_folder(tmp_path, ["done", "running", "stopped", "waiting"])
    table = trained_model(layout, "done")
    write_log(out, "done", [(30, 0.2, 0.5, 0.72, 17)], age_s=5)  # the card wins, not the log
    write_log(out, "running", [(11, 0.9, 0.65, 0.65, 11), (12, 0.81, 0.712, 0.74, 10)],
              age_s=5)
    checkpoint(layout, "stopped", "last.pt")
    write_log(out, "stopped", [(7, 1.2, 0.3, 0.3, 7)], age_s=600)
    # An old folder of the disk, of a model no longer in the config, is listed last.
    checkpoint(layout, "older")
    states = {s["name"]: s for s in status.training_states(out)}
    assert list(states) == ["done", "running", "stopped", "waiting", "older"]
    assert states["done"] == {
        "name": "done", "state": "trained", "epoch": 30, "epochs": 30,
        "val_ap": pytest.approx(table["val_ap"].iloc[-1]), "best_epoch": 17,
        "best_val_ap": pytest.approx(table["val_ap"][16]),
        "loss": pytest.approx(table["loss"].iloc[-1]), "left": None}
    assert states["running"] == {
        "name": "running", "state": "training", "epoch": 12, "epochs": 30, "val_ap": 0.712,
        "best_epoch": 10, "best_val_ap": 0.74, "loss": 0.81, "left": "4 min"}
    assert (states["stopped"]["state"], states["stopped"]["epoch"],
            states["stopped"]["val_ap"]) == ("interrupted", 7, 0.3)
    assert states["waiting"] == {
        "name": "waiting", "state": "not started", "epoch": None, "epochs": 30,
        "val_ap": None, "best_epoch": None, "best_val_ap": None, "loss": None, "left": None}
    assert states["older"]["state"] == "not started" and states["older"]["epochs"] is None
    assert status.training_lines(out) == [
        f"model done: trained, best epoch 17/30, val AP {table['val_ap'][16]:.3f}",
        "model running: training, epoch 12/30, val AP 0.712, about 4 min left",
        ("model stopped: interrupted after epoch 7/30, val AP 0.300; run again to resume "
         "from last.pt"),
        "model waiting: not started, 30 epochs planned",
        "model older: not started",
    ]


def test_a_quiet_log_is_running_within_one_and_a_half_of_its_epochs(tmp_path):
    out, layout = run_folder(tmp_path, ["slow"])
    checkpoint(layout, "slow", "last.pt")
    log = write_log(out, "slow", [(2, 0.9, 0.5, 0.5, 2)], age_s=200)
    log.write_text(log.read_text().replace("25.1 s/epoch", "300.0 s/epoch"))
    stamp = time.time() - 200
    os.utime(log, (stamp, stamp))
    assert status.training_states(out)[0]["state"] == "training"
    stamp = time.time() - 460
    os.utime(log, (stamp, stamp))
    assert status.training_states(out)[0]["state"] == "interrupted"


def test_a_stale_log_without_last_pt_is_not_started_and_a_new_one_is_training(tmp_path):
    out, _ = run_folder(tmp_path, ["a"])
    write_log(out, "a", [], age_s=3600)
    assert status.training_lines(out) == ["model a: not started, 30 epochs planned"]
    write_log(out, "a", [], age_s=1)
    assert status.training_lines(out) == ["model a: training, no epoch finished yet of 30"]
    assert status.training_states(out)[0]["epoch"] == 0


def test_a_trained_model_without_a_best_epoch_in_its_card_takes_the_highest_ap(tmp_path):
    out, layout = run_folder(tmp_path, ["m"])
    table = trained_model(layout, "m", n=20)
    path = Path(layout.model("m"), "model.json")
    model_card = json.loads(path.read_text())
    del model_card["best"]
    path.write_text(json.dumps(model_card))
    state = status.training_states(out)[0]
    assert (state["best_epoch"], state["best_val_ap"]) == (10, pytest.approx(table["val_ap"][9]))
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"m/model\.json: not a model card"):
        status.training_states(out)


def test_no_train_section_no_training_lines(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / status.RUN_CONFIG).write_text("methods: {otsu: {kind: threshold}}\n")
    assert status.training_states(out) == [] and status.training_lines(out) == []


# --- the live line ---------------------------------------------------------------------

def test_live_line_shows_the_models_training_only(tmp_path):
    out, layout = run_folder(tmp_path, ["done", "nuclei", "stopped", "starting"])
    trained_model(layout, "done")
    write_log(out, "done", [(30, 0.2, 0.5, 0.72, 17)], age_s=1)
    write_log(out, "stopped", [(7, 1.2, 0.3, 0.3, 7)], age_s=900)
    checkpoint(layout, "stopped", "last.pt")
    assert live.training_line(out) is None
    write_log(out, "nuclei", [(12, 0.8123, 0.7071, 0.74, 10)], age_s=2)
    assert live.training_line(out) == (
        "train nuclei 12/30 · loss 0.81 · val AP 0.71 · about 4 min left")
    write_log(out, "starting", [], age_s=0)
    assert live.training_line(out) == (
        "train nuclei 12/30 · loss 0.81 · val AP 0.71 · about 4 min left · train starting 0/30")


def test_live_line_reads_val_ap_n_a(tmp_path):
    out, _ = run_folder(tmp_path, ["nuclei"])
    log = write_log(out, "nuclei", [])
    with log.open("a") as f:
        f.write(PREFIX.format(s=3) + "epoch 1/30 · loss 2.3456 · val AP n/a · 25.1 s/epoch · "
                "about 12 min left\n")
    assert live.training_line(out) == "train nuclei 1/30 · loss 2.35 · val AP n/a · about 12 min left"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_run_with_progress_shows_the_training_before_the_images(tmp_path, monkeypatch):
    out, _ = run_folder(tmp_path, ["nuclei"])
    write_log(out, "nuclei", [(12, 0.8123, 0.7071, 0.74, 10)])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = live.run_with_progress([sys.executable, "-c", "import time; time.sleep(0.6)"], out,
                                  every_s=0.1)
    assert code == 0
    assert ("[segpipe] train nuclei 12/30 · loss 0.81 · val AP 0.71 · about 4 min left · "
            "listing images...") in terminal.getvalue()
