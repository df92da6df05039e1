"""The report's figure of training curves: losses and validation mask AP per epoch.

One row of two panels per trained model, from its ``history.parquet`` (one row per
finished epoch) and its model card ``model.json`` (``results/models/{name}/``): the loss
parts, their total and the validation loss on the left; the validation mask AP, AP50
and AP75 on the right. The best epoch, the one ``model.pt`` holds, is a dotted line on
both panels and a star on the AP curve. The tables come in as arguments: this module
reads no file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from segpipe.report.drawing import message_figure, save_png
from segpipe.report.figures import MEDIAN_COLOUR, POINT_COLOUR

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

# The parts of Mask R-CNN's training loss, as torchvision names them, with their labels.
LOSS_PARTS = {
    "loss_classifier": "classifier",
    "loss_box_reg": "box regression",
    "loss_mask": "mask",
    "loss_objectness": "objectness",
    "loss_rpn_box_reg": "RPN box regression",
}
AP_COLUMNS = {"val_ap": "mask AP", "val_ap50": "mask AP50", "val_ap75": "mask AP75"}

# Sizes in inches: the figure is WIDTH_IN wide, TOP_IN for its title, ROW_IN per model.
WIDTH_IN = 10.0
ROW_IN = 3.2
TOP_IN = 0.5
NOTE_COLOUR = "#555555"


def best_epoch(history: pd.DataFrame, card: Mapping[str, Any] | None = None) -> int | None:
    """The epoch ``model.pt`` holds: the card's ``best.epoch``, else the epoch of the
    highest ``val_ap`` of ``history``; None when neither says.

    Parameters
    ----------
    history : pandas.DataFrame
        The model's ``history.parquet``: ``epoch`` and ``val_ap`` per finished epoch.
    card : mapping, optional
        The model card (``model.json``); its ``best`` object names the epoch kept.

    Returns
    -------
    int or None

    Examples
    --------
    >>> import pandas as pd
    >>> history = pd.DataFrame({"epoch": [1, 2, 3], "val_ap": [0.2, 0.5, 0.4]})
    >>> best_epoch(history), best_epoch(history, {"best": {"epoch": 3}})
    (2, 3)
    """
    epoch = ((card or {}).get("best") or {}).get("epoch")
    if epoch is not None:
        return int(epoch)
    if "val_ap" not in history or not history["val_ap"].notna().any():
        return None
    return int(history.loc[history["val_ap"].idxmax(), "epoch"])


def plot_training(histories: Mapping[str, pd.DataFrame], out_png: str | os.PathLike, *,
                  cards: Mapping[str, Mapping[str, Any]] | None = None) -> Figure:
    """Training curves, one row of two panels per model: losses, and validation AP.

    Parameters
    ----------
    histories : mapping of str to pandas.DataFrame
        Model name to its ``history.parquet``: ``epoch`` (1-based), the loss parts of
        :data:`LOSS_PARTS`, ``loss`` (their sum), ``val_loss`` and the columns of
        :data:`AP_COLUMNS` (NaN where not computed). Rows are drawn in the order of the
        mapping, usually sorted by name.
    out_png : str or os.PathLike
        Where to write the figure.
    cards : mapping of str to mapping, optional
        Model name to its card (``model.json``): ``best.epoch`` is marked (see
        :func:`best_epoch`), ``epochs`` (planned), ``splits`` and ``seconds`` go in the
        panel titles.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written. The best-epoch lines carry the gid ``best-epoch:{name}``
        (one per panel) and the AP star ``best-ap:{name}``, so what was marked can be
        read back from the figure.

    Notes
    -----
    A model without rows (no epoch finished yet) gets a row of empty panels that says
    so, and a model whose validation images hold no object an AP panel that says that;
    neither is an error. The AP axis is always 0..1, so models compare at a glance; the
    loss axis starts at 0.
    """
    cards = cards or {}
    if not histories:
        return save_png(message_figure("No trained model: no training curves."), out_png)
    height = TOP_IN + ROW_IN * len(histories)
    fig = Figure(figsize=(WIDTH_IN, height), layout="constrained")
    axes = fig.subplots(len(histories), 2, squeeze=False)
    for (name, history), (loss_ax, ap_ax) in zip(histories.items(), axes):
        card = cards.get(name) or {}
        if not history.empty:
            history = history.sort_values("epoch")
        loss_ax.set_title(_row_title(name, history, card), fontsize=10, loc="left")
        if history.empty:
            for ax in (loss_ax, ap_ax):
                _note(ax, "No epoch finished yet.")
                ax.set_xticks([])
                ax.set_yticks([])
            ap_ax.set_title("Validation mask AP", fontsize=10)
            continue
        best = best_epoch(history, card)
        _draw_losses(loss_ax, history)
        _draw_ap(ap_ax, history)
        if best is not None:
            _mark_best(loss_ax, ap_ax, name, history, best)
        ap_ax.set_title(_ap_title(history, best), fontsize=10)
        for ax in (loss_ax, ap_ax):
            _epoch_axis(ax, history, card)
    fig.suptitle("Training: losses and validation mask AP per epoch; dotted: the best "
                 "epoch (model.pt)", fontsize=11)
    return save_png(fig, out_png)


def _row_title(name: str, history: pd.DataFrame, card: Mapping[str, Any]) -> str:
    """``nuclei: 30/30 epochs, 48 + 12 images, 12.5 min``: what the row is of."""
    parts = []
    planned = card.get("epochs")
    done = int(history["epoch"].max()) if not history.empty else 0
    parts.append(f"{done}/{planned} epochs" if planned else f"{done} epochs")
    splits = card.get("splits") or {}
    if "train" in splits and "val" in splits:
        parts.append(f"{len(splits['train'])} train + {len(splits['val'])} validation images")
    seconds = card.get("seconds")
    if isinstance(seconds, (int, float)) and math.isfinite(seconds):
        parts.append(f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s")
    return f"{name}: losses, " + ", ".join(parts)


def _ap_title(history: pd.DataFrame, best: int | None) -> str:
    """The AP panel's title, with the best epoch's AP when there is one."""
    if best is None:
        return "Validation mask AP"
    at = history.loc[history["epoch"] == best, "val_ap"] if "val_ap" in history else ()
    if len(at) and np.isfinite(at.iloc[0]):
        return f"Validation mask AP: best {at.iloc[0]:.3f} at epoch {best}"
    return f"Validation mask AP: best epoch {best}"


def _draw_losses(ax: Axes, history: pd.DataFrame) -> None:
    """Each loss part thin, the total and the validation loss thick, on a 0-based axis."""
    epochs = history["epoch"].to_numpy(float)
    for i, (column, label) in enumerate(LOSS_PARTS.items()):
        if _drawable(history, column):
            ax.plot(epochs, history[column], color=f"C{i}", linewidth=1, label=label)
    if _drawable(history, "loss"):
        ax.plot(epochs, history["loss"], color=POINT_COLOUR, linewidth=2, marker="o",
                markersize=3, label="total (training)")
    if _drawable(history, "val_loss"):
        ax.plot(epochs, history["val_loss"], color=POINT_COLOUR, linewidth=2,
                linestyle="--", marker="o", markersize=3, label="validation")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Loss, mean per iteration (lower is better)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncols=2)
    _grid(ax)


def _draw_ap(ax: Axes, history: pd.DataFrame) -> None:
    """Validation AP, AP50 and AP75 on a 0..1 axis, or a note where there is none."""
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Validation mask AP (higher is better)", fontsize=9)
    _grid(ax)
    drawn = [c for c in AP_COLUMNS if _drawable(history, c)]
    if not drawn:
        _note(ax, "No validation AP: the validation images hold no object.")
        return
    epochs = history["epoch"].to_numpy(float)
    styles = {"val_ap": (POINT_COLOUR, 2), "val_ap50": ("C2", 1), "val_ap75": ("C4", 1)}
    for column in drawn:
        colour, width = styles[column]
        ax.plot(epochs, history[column], color=colour, linewidth=width, marker="o",
                markersize=3 if column == "val_ap" else 2, label=AP_COLUMNS[column])
    ax.legend(fontsize=7, loc="lower right")


def _mark_best(loss_ax: Axes, ap_ax: Axes, name: str, history: pd.DataFrame,
               best: int) -> None:
    """A dotted line at the best epoch on both panels; a star on its AP."""
    for ax in (loss_ax, ap_ax):
        ax.axvline(best, color=MEDIAN_COLOUR, linestyle=":", linewidth=1.5, zorder=0,
                   gid=f"best-epoch:{name}")
    at = history.loc[history["epoch"] == best, "val_ap"] if "val_ap" in history else ()
    if len(at) and np.isfinite(at.iloc[0]):
        ap_ax.plot([best], [at.iloc[0]], marker="*", markersize=12, color=MEDIAN_COLOUR,
                   markeredgecolor="white", linestyle="none", zorder=4,
                   gid=f"best-ap:{name}")


def _epoch_axis(ax: Axes, history: pd.DataFrame, card: Mapping[str, Any]) -> None:
    """Whole epochs on x, from 1 to the planned count when the card gives it, so an
    unfinished run shows how far it got."""
    last = max(int(history["epoch"].max()), int(card.get("epochs") or 0))
    ax.set_xlim(0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch", fontsize=9)
    ax.tick_params(labelsize=8)


def _drawable(history: pd.DataFrame, column: str) -> bool:
    return column in history and bool(history[column].notna().any())


def _grid(ax: Axes) -> None:
    ax.grid(color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)


def _note(ax: Axes, text: str) -> None:
    """``text`` in the middle of ``ax``: why the panel has no curve."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color=NOTE_COLOUR)
