"""The packed report: one self-contained HTML page with the leaderboard, the figures, the
training curves of the models the run trained and every method's examples, open at once,
no clicks needed.

The PNGs are embedded as base64 ``data:`` URIs and the style is inline, so the page is one
file that opens offline, by mail or from a shared drive, with nothing beside it.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from segpipe.imageio import write_bytes_atomic
from segpipe.report.columns import LABELS, has_values, method_column
from segpipe.report.leaderboard import STYLE, html_document, leaderboard_table
from segpipe.table import IMAGE_METRICS

if TYPE_CHECKING:
    import pandas as pd

PAGE_STYLE = STYLE + """
h2 { font-size: 1.1rem; margin: 2rem 0 0.4rem; border-bottom: 1px solid #e1e5ea;
     padding-bottom: 0.2rem; }
h3 { font-size: 0.95rem; margin: 1.2rem 0 0.3rem; }
p.run { margin: 0 0 0.3rem; }
nav { font-size: 0.9rem; margin: 0.3rem 0 0.6rem; }
figure { margin: 0.6rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #5a6570; font-size: 0.85rem; margin-top: 0.3rem; max-width: 60rem; }
div.board { overflow-x: auto; }"""

# What each figure shows, by its file name (segpipe.report.figures draws them): True, the
# text for a figure of ground-truth scores; False, for its fallback without them.
CAPTIONS = {
    "quality_runtime": {
        True: ("Quality against speed: each dot is a method, at its score on the primary "
               "metric (the mean over its images, or its COCO mask AP) and its seconds per "
               "image (log scale, left is faster). Methods worth having lie towards the "
               "upper left for a higher-is-better metric; a method below and to the right "
               "of another is beaten by it on both counts. Colours tell the kinds apart; a "
               "method's error count follows its name."),
        False: ("Seconds per image of each method (Row s / image of the leaderboard), "
                "fastest at the top: without a score of the primary metric there is nothing "
                "to plot against it."),
    },
    "distributions": {
        True: ("Per-image scores, one panel per ground-truth metric; each row is a method, "
               "best at the top by the median of the first panel. The box spans the middle "
               "half of its images, the orange bar is the median, the whiskers reach 1.5 "
               "box lengths, and every image is a dot. Panel titles say whether higher or "
               "lower is better: the variation of information counts over-segmentation "
               "(split) and under-segmentation (merge)."),
        False: ("Without ground truth: runtime per image (log scale), labels per image and "
                "the foreground fraction of each method's images. They say how fast and how "
                "fine-grained each method is, not how right it is."),
    },
}
OBJECTS_CAPTION = (
    "Objects of every method whose labels have objects (instances, or the connected "
    "components of a foreground): the area of each object and the objects per image, on "
    "log scales. Methods labelling classes or regions have no objects.")
CAPTIONS["objects"] = {True: OBJECTS_CAPTION, False: OBJECTS_CAPTION}
# The figure of segpipe.report.training, by its file name: it has a section of its own.
TRAINING_FIGURE = "training"
TRAINING_CAPTION = (
    "Training, one row per model the run trained. Left: the training loss per epoch, the "
    "mean over the epoch's iterations, each part of Mask R-CNN's loss thin and their total "
    "thick, with the loss on the validation images dashed. Right: the COCO mask AP, AP50 and "
    "AP75 on the validation images after each epoch. The dotted line and the star mark the "
    "best epoch by validation mask AP, the one model.pt holds. A validation loss that "
    "rises while the training loss falls, or an AP that falls, says the model is "
    "overfitting its training images.")
EXAMPLES_CAPTION = {
    True: ("Each method's best, median and worst images by the primary metric, left to "
           "right, with its label outlines in yellow over the image and the truth's in "
           "blue. Large images are shrunk, so very small objects may merge."),
    False: ("Without ground truth, each method's images are spread over a figure that "
            "varies with what its labels mean: the object count of a foreground or "
            "instances, the label count of regions, the share of pixels outside class 0 of "
            "classes (largest first; the panel titles say which). Label outlines in yellow. "
            "Large images are shrunk, so very small objects may merge."),
}


def _png(path: str | os.PathLike) -> str:
    """An ``<img>`` of the PNG at ``path``, embedded as a data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem)
    return f'<img src="data:image/png;base64,{data}" alt="{alt}">'


def _figure(path: str | os.PathLike, caption: str) -> str:
    """A ``<figure>`` of the PNG at ``path``, with ``caption`` under it unless empty."""
    return (f"<figure>{_png(path)}"
            + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
            + "</figure>")


def write_report_page(methods: pd.DataFrame, out_html: str | os.PathLike, *,
                      figures: Iterable[str | os.PathLike],
                      overlays: Iterable[str | os.PathLike], metric: str = "iou",
                      input_dir: str | os.PathLike | None = None,
                      ground_truth_dir: str | os.PathLike | None = None) -> None:
    """Pack the report into one self-contained HTML page.

    Parameters
    ----------
    methods : pandas.DataFrame
        The per-method table (``summary/methods.parquet``): the leaderboard, inline.
    out_html : str or os.PathLike
        Where to write the page.
    figures : sequence of str or os.PathLike
        PNGs of :mod:`segpipe.report.figures`, in the order shown; a file's stem
        (``quality_runtime``, ``distributions``, ``objects``) picks its caption. A
        ``training.png`` (:func:`segpipe.report.training.plot_training`) goes in a
        section of its own, "Training", after the figures.
    overlays : sequence of str or os.PathLike
        One PNG of examples per method (:func:`segpipe.report.plot_overlays`), named
        after the method.
    metric : str
        The primary metric.
    input_dir, ground_truth_dir : str, optional
        Named in the page's first line, to say what was segmented and scored.

    Notes
    -----
    The page holds, top to bottom: what the run was, the leaderboard
    (:func:`segpipe.report.leaderboard.leaderboard_table`), the figures, the training
    curves when the run trained a model, and the examples, each with a caption that says
    how to read it, with or without ground truth.

    Raises
    ------
    OSError
        If a PNG cannot be read or the page cannot be written.
    """
    scored = {  # which figures show scores, by the same test as the figure itself
        "quality_runtime": has_values(methods, method_column(metric)),
        "distributions": any(has_values(methods, f"{m}_mean") for m in IMAGE_METRICS),
    }
    scored["examples"] = scored["distributions"]
    n_images = int(methods["n_images"].max()) if has_values(methods, "n_images") else 0
    what = f"{n_images:,} images" + (f" of <code>{html.escape(str(input_dir))}</code>"
                                     if input_dir else "")
    truth = (f"ground truth <code>{html.escape(str(ground_truth_dir))}</code>, primary "
             f"metric {html.escape(LABELS.get(metric, metric))}" if ground_truth_dir
             else "no ground truth")
    figures = list(figures)
    training = [p for p in figures if Path(p).stem == TRAINING_FIGURE]
    sections = ["leaderboard", "figures", *(["training"] if training else []), "examples"]
    parts = [f'<p class="run">{what}, {len(methods)} methods; {truth}.</p>',
             "<nav>" + " · ".join(f'<a href="#{s}">{s.capitalize()}</a>' for s in sections)
             + "</nav>",
             '<h2 id="leaderboard">Leaderboard</h2>',
             f'<div class="board">{leaderboard_table(methods, metric=metric)}</div>',
             '<h2 id="figures">Figures</h2>']
    for path in figures:
        stem = Path(path).stem
        if stem == TRAINING_FIGURE:
            continue
        caption = CAPTIONS[stem][scored.get(stem, False)] if stem in CAPTIONS else ""
        parts.append(_figure(path, caption))
    if training:
        parts.append('<h2 id="training">Training</h2>')
        parts += [_figure(path, TRAINING_CAPTION) for path in training]
    caption = EXAMPLES_CAPTION[scored["examples"]]
    parts += ['<h2 id="examples">Examples</h2>', f'<p class="note">{html.escape(caption)}</p>']
    for path in overlays:
        parts.append(f"<h3>{html.escape(Path(path).stem)}</h3><figure>{_png(path)}</figure>")
    page = html_document("segpipe report", "\n".join(["<h1>segpipe report</h1>", *parts]),
                         style=PAGE_STYLE)
    write_bytes_atomic(out_html, page.encode("utf-8"))
