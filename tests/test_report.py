import cv2
import numpy as np
import pandas as pd
import pytest

from segpipe import report
from segpipe.report import drawing, overlays

# The outline colour as OpenCV reads it back: B, G, R in 0..255.
OUTLINE_BGR = np.round(np.array(overlays.OUTLINE_RGB[::-1]) * 255)


def read_png(path):
    """Decode ``path`` and check it is a PNG; return the BGR array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def outline_pixels(image):
    return int(np.all(np.abs(image.astype(int) - OUTLINE_BGR) <= 12, axis=-1).sum())


def metrics_table(scores, *, method="otsu", kind="threshold"):
    """Rows of one method: ``scores`` maps image id to IoU (None: no value)."""
    return pd.DataFrame({
        "image_id": list(scores),
        "method": method,
        "kind": kind,
        "status": "ok",
        "mask_path": [f"masks/{method}/{i}" for i in scores],
        "runtime_s": 0.01,
        "n_labels": range(len(scores)),
        "iou": pd.array(list(scores.values()), dtype="Float64").astype(float),
    })


def methods_table():
    return pd.DataFrame({
        "method": ["slow_good", "fast_bad", "mid <b>"],
        "kind": ["maskrcnn", "threshold", "kmeans"],
        "n_ok": [10, 10, 8],
        "n_error": [0, 0, 2],
        "seconds_per_image": [2.5, 0.004, 0.123456],
        "rank": [1, 3, 2],
        "iou_mean": [0.9123, 0.41, 0.654321],
        "iou_median": [0.95, 0.4, 0.66],
        "vi_split_mean": [0.2, 1.5, 0.8],
        "vi_split_median": [0.1, 1.4, 0.7],
    })


# --- choosing the examples ------------------------------------------------------------

def test_pick_examples_best_median_worst_of_ok_rows_of_the_method():
    mine = metrics_table({"a.png": 0.5, "b.png": 0.9, "c.png": 0.1, "d.png": 0.7,
                          "e.png": 0.3})
    failed = metrics_table({"f.png": 1.0}).assign(status="error")
    other = metrics_table({"g.png": 0.99, "h.png": 0.0}, method="kmeans")
    metrics = pd.concat([mine, failed, other], ignore_index=True)
    assert report.pick_examples(metrics, "otsu", "iou") == ["b.png", "a.png", "c.png"]
    assert report.pick_examples(metrics, "otsu", "iou", n=5) == [
        "b.png", "d.png", "a.png", "e.png", "c.png"]
    assert report.pick_examples(metrics, "otsu", "iou", n=1) == ["b.png"]


def test_pick_examples_lower_is_better_for_variation_of_information():
    metrics = metrics_table({"a.png": 0.5, "b.png": 0.9, "c.png": 0.1})
    metrics["vi_split"] = [2.0, 0.1, 1.0]
    assert report.pick_examples(metrics, "otsu", "vi_split") == ["b.png", "c.png", "a.png"]


def test_pick_examples_by_a_whole_method_metric_rank_by_the_first_image_metric():
    metrics = metrics_table({"a.png": 0.5, "b.png": 0.9, "c.png": 0.1})
    assert report.pick_examples(metrics, "otsu", "coco_ap") == ["b.png", "a.png", "c.png"]


def test_pick_examples_skips_images_without_a_score_and_returns_fewer_when_few():
    metrics = metrics_table({"a.png": 0.2, "b.png": None, "c.png": 0.8})
    assert report.pick_examples(metrics, "otsu", "iou") == ["c.png", "a.png"]


def test_pick_examples_without_ground_truth_use_label_counts_then_ids():
    metrics = metrics_table({"a.png": None, "b.png": None, "c.png": None, "d.png": None})
    metrics["n_labels"] = [3, 9, 1, 5]
    # no IoU anywhere: most labels, median, fewest labels
    assert report.pick_examples(metrics, "otsu", "iou") == ["b.png", "a.png", "c.png"]
    no_counts = metrics.drop(columns=["iou", "n_labels"])
    assert report.pick_examples(no_counts, "otsu", "iou") == ["a.png", "c.png", "d.png"]


# What each label meaning's rows hold without ground truth (label_stats): a threshold has
# one label, k-means always k, regions cover the image, instances are their own objects.
# The examples must follow the figure that varies: c.png, a.png, b.png in every case.
PER_MEANING = {
    "threshold": ("n_objects", {"n_labels": [1, 1, 1], "n_objects": [5, 1, 9],
                                "foreground_fraction": [0.3, 0.3, 0.3]}),
    "watershed": ("n_objects", {"n_labels": [5, 1, 9], "n_objects": [5, 1, 9],
                                "foreground_fraction": [0.1, 0.2, 0.3]}),
    "kmeans": ("foreground_fraction", {"n_labels": [2, 2, 2], "n_objects": [None] * 3,
                                       "foreground_fraction": [0.5, 0.1, 0.9]}),
    "superpixels": ("n_labels", {"n_labels": [170, 120, 200], "n_objects": [None] * 3,
                                 "foreground_fraction": [1.0, 1.0, 1.0]}),
}


@pytest.mark.parametrize("kind", sorted(PER_MEANING))
def test_examples_without_ground_truth_follow_a_figure_that_varies_for_the_meaning(kind):
    column, values = PER_MEANING[kind]
    metrics = metrics_table({"a.png": None, "b.png": None, "c.png": None}, kind=kind)
    for name, column_values in values.items():
        metrics[name] = pd.array(column_values, dtype="Float64")
    assert report.pick_examples(metrics, "otsu", "iou") == ["c.png", "a.png", "b.png"]
    meaning = overlays.meaning_of(metrics, "otsu")
    assert overlays._ranked(metrics, "otsu", "iou", meaning)[1] == column


def test_examples_of_classes_say_they_follow_the_share_outside_class_0(overlay_run, tmp_path):
    metrics = overlay_run.drop(columns=["iou"]).assign(
        kind="kmeans", n_labels=2, foreground_fraction=[0.4, 0.2, 0.6, 0.5])
    fig = report.plot_overlays(metrics, tmp_path / "k.png", input_dir="in", method="otsu")
    assert fig.get_suptitle() == ("otsu: images with the largest, median and smallest share "
                                  "outside class 0 (no ground truth)")
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles] == ["deep16.png", "grey.png", "sub/colour.png"]
    assert titles[0].endswith("Share outside class 0 = 0.6  (1 of 4)")


def test_examples_with_ground_truth_follow_the_primary_metric_whatever_the_meaning():
    metrics = metrics_table({"a.png": 0.2, "b.png": 0.9, "c.png": 0.5}, kind="kmeans")
    metrics["foreground_fraction"] = [0.9, 0.1, 0.5]
    assert report.pick_examples(metrics, "otsu", "iou") == ["b.png", "c.png", "a.png"]


# --- overlays ---------------------------------------------------------------------------

@pytest.fixture
def overlay_run(tmp_path, monkeypatch):
    """Four images of different types and their masks; mask paths relative to tmp_path."""
    monkeypatch.chdir(tmp_path)
    yy, xx = np.mgrid[:60, :80]
    disc = (yy - 30) ** 2 + (xx - 40) ** 2 < 15**2
    images = {
        "grey.png": np.where(disc, 200, 30).astype(np.uint8),
        "sub/colour.png": np.dstack([np.where(disc, 220, 20)] * 3).astype(np.uint8),
        "deep16.png": np.where(disc, 60000, 3000).astype(np.uint16),
        "big.png": np.random.default_rng(0).integers(0, 256, (1500, 2000), dtype=np.uint8),
    }
    scores = {"grey.png": 0.8, "sub/colour.png": 0.6, "deep16.png": 0.2, "big.png": 0.5}
    for rel, image in images.items():
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "in" / rel), image)
        mask = cv2.resize(disc.astype(np.uint8), image.shape[1::-1],
                          interpolation=cv2.INTER_NEAREST)
        (tmp_path / "masks" / "otsu" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(f"masks/otsu/{rel}", mask)
    return metrics_table(scores)


def test_overlay_is_scaled_to_unit_range_shrunk_and_outlined(overlay_run):
    deep = overlays._overlay("in/deep16.png", "masks/otsu/deep16.png")
    assert deep.shape == (60, 80, 3) and deep.max() <= 1.0
    # the disc's inside is 60000 / 65535 of full scale, whatever the outline covers
    assert np.allclose(deep[30, 40], 60000 / 65535, atol=1e-3)
    outline = np.all(np.isclose(deep, overlays.OUTLINE_RGB), axis=-1)
    assert outline[30, 40 - 14] and not outline[30, 40] and not outline[0, 0]
    big = overlays._overlay("in/big.png", "masks/otsu/big.png")
    assert max(big.shape[:2]) == overlays.PANEL_PX
    assert np.all(np.isclose(big, overlays.OUTLINE_RGB), axis=-1).any()


def test_plot_overlays_draws_three_panels_with_outlines(overlay_run, tmp_path):
    out = tmp_path / "report" / "otsu" / "overlays.png"
    fig = report.plot_overlays(overlay_run, out, input_dir="in", method="otsu")
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles] == ["grey.png", "big.png", "deep16.png"]
    assert titles[0].endswith("IoU = 0.8  (1 of 4)")
    assert titles[1].endswith("IoU = 0.5  (3 of 4)")
    assert "best, median and worst images by IoU" in fig.get_suptitle()
    image = read_png(out)
    assert image.shape[1] == round(3 * overlays.PANEL_IN * drawing.DPI)
    assert 200 < image.shape[0] < 500
    assert outline_pixels(image) > 100
    # a 2000 x 1500 noise image is shown shrunk: the PNG stays small
    assert out.stat().st_size < 1_000_000


def test_plot_overlays_without_ground_truth_and_with_a_missing_mask(overlay_run, tmp_path):
    metrics = overlay_run.drop(columns=["iou"])
    (tmp_path / "masks/otsu/grey.png").unlink()
    out = tmp_path / "overlays.png"
    fig = report.plot_overlays(metrics, out, input_dir="in", method="otsu", n=2)
    assert "no ground truth" in fig.get_suptitle()
    # n_labels is 0, 1, 2, 3 in table order: most labels first
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["big.png", "grey.png"]
    # the unreadable mask is named in its panel instead of stopping the figure
    assert any("grey.png" in t.get_text() for t in fig.axes[1].texts)
    read_png(out)


def test_plot_overlays_refuses_an_unknown_method(overlay_run, tmp_path):
    with pytest.raises(ValueError, match="'watershed'.*otsu"):
        report.plot_overlays(overlay_run, tmp_path / "x.png", input_dir="in",
                             method="watershed")


def test_plot_overlays_of_a_method_that_always_failed(overlay_run, tmp_path):
    metrics = overlay_run.assign(status="error")
    fig = report.plot_overlays(metrics, tmp_path / "x.png", input_dir="in", method="otsu")
    assert "no successful images" in fig.texts[0].get_text()
    read_png(tmp_path / "x.png")


# --- distributions ----------------------------------------------------------------------

def many_methods(n_methods=4, n_images=30, seed=0):
    """Per-image rows: method ``m<i>`` has IoU around 0.2 + 0.2 i."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_methods):
        scores = {f"img{j:03d}.png": float(np.clip(rng.normal(0.2 + 0.2 * i, 0.05), 0, 1))
                  for j in range(n_images)}
        part = metrics_table(scores, method=f"m{i}")
        part["dice"] = 2 * part["iou"] / (1 + part["iou"])
        part["vi_merge"] = rng.uniform(0, 2, n_images)
        part["runtime_s"] = rng.lognormal(np.log(10.0 ** (i - 3)), 0.2, n_images)
        part["foreground_fraction"] = rng.uniform(0, 0.5, n_images)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_distributions_one_panel_per_metric_best_method_on_top(tmp_path):
    metrics = many_methods()
    metrics["precision"] = np.nan  # present but empty: no panel
    failed = metrics_table({"x.png": None}, method="broken").assign(status="error")
    metrics = pd.concat([metrics, failed], ignore_index=True)
    out = tmp_path / "figs" / "distributions.png"
    fig = report.plot_metric_distributions(metrics, out)
    assert [ax.get_title() for ax in fig.axes] == [
        "IoU (higher is better)", "Dice (higher is better)", "VI merge (lower is better)"]
    ticks = fig.axes[0].get_yticklabels()
    top_down = [t.get_text() for t in sorted(ticks, key=lambda t: -t.get_position()[1])]
    assert top_down == ["m3", "m2", "m1", "m0", "broken"]
    assert fig.axes[0].get_xlim() == pytest.approx((-0.03, 1.03))
    image = read_png(out)
    assert 800 < image.shape[1] < 1400 and 200 < image.shape[0] < 600


def test_distributions_without_ground_truth_show_runtime_and_label_counts(tmp_path):
    metrics = many_methods()
    metrics[["iou", "dice", "vi_merge"]] = np.nan
    fig = report.plot_metric_distributions(metrics, tmp_path / "d.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Runtime per image, s (lower is better)", "Labels per image",
                      "Foreground fraction"]
    assert fig.axes[0].get_xscale() == "log"
    assert fig.get_suptitle().startswith("No ground truth")
    ticks = sorted(fig.axes[0].get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in ticks] == ["m0", "m1", "m2", "m3"]  # fastest on top
    read_png(tmp_path / "d.png")


def test_distributions_of_chosen_columns_and_of_nothing(tmp_path):
    metrics = many_methods(n_methods=2)
    fig = report.plot_metric_distributions(metrics, tmp_path / "a.png",
                                           metrics_to_plot=["dice"])
    assert [ax.get_title() for ax in fig.axes] == ["Dice (higher is better)"]
    fig = report.plot_metric_distributions(metrics.assign(status="error"), tmp_path / "b.png")
    assert "nothing to plot" in fig.texts[0].get_text()
    read_png(tmp_path / "b.png")


# --- quality against runtime ------------------------------------------------------------

def test_quality_runtime_scatter_labels_every_method(tmp_path):
    out = tmp_path / "qr.png"
    fig = report.plot_quality_runtime(methods_table(), out)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert sorted(t.get_text() for t in ax.texts) == ["fast_bad", "mid <b> (2 errors)",
                                                      "slow_good"]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(map(tuple, points.tolist())) == [(0.004, 0.41), (0.123456, 0.654321),
                                                   (2.5, 0.9123)]
    image = read_png(out)
    assert image.shape == (500, 750, 3)


def test_quality_runtime_of_a_whole_method_metric(tmp_path):
    methods = methods_table().assign(coco_ap=[0.5, None, 0.25])
    fig = report.plot_quality_runtime(methods, tmp_path / "qr.png", metric="coco_ap")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "COCO mask AP (higher is better)"
    assert sorted(t.get_text() for t in ax.texts) == ["mid <b> (2 errors)", "slow_good"]
    assert "Not shown (no COCO mask AP or runtime): fast_bad" in fig.texts[0].get_text()


def test_quality_runtime_without_ground_truth_is_runtime_bars(tmp_path):
    methods = methods_table().drop(columns=["iou_mean", "iou_median"])
    fig = report.plot_quality_runtime(methods, tmp_path / "qr.png")
    ax = fig.axes[0]
    assert "no ground truth" in ax.get_title()
    # fastest at the top, one bar per method, log scale: 0.004 s to 2.5 s
    ticks = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in ticks] == ["fast_bad", "mid <b> (2 errors)", "slow_good"]
    assert sorted(p.get_width() for p in ax.patches) == [0.004, 0.123456, 2.5]
    assert ax.get_xscale() == "log"
    read_png(tmp_path / "qr.png")


# --- leaderboard ------------------------------------------------------------------------

def test_leaderboard_in_rank_order_with_the_metric_highlighted(tmp_path):
    out = tmp_path / "report" / "leaderboard.html"
    report.leaderboard_html(methods_table(), out)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.index("slow_good") < page.index("mid &lt;b&gt;") < page.index("fast_bad")
    assert "<b>" not in page  # the method name is escaped, not markup
    assert '<th class="num primary">IoU mean ↑</th>' in page
    assert '<th class="num primary">IoU median ↑</th>' in page
    assert '<th class="num">VI split mean ↓</th>' in page
    assert "VI split median" not in page  # medians only for the primary metric
    # 3 significant digits, trailing zeros kept
    assert '<td class="num primary">0.912</td>' in page
    assert '<td class="num primary">0.654</td>' in page
    assert '<td class="num">0.123</td>' in page and '<td class="num">2.50</td>' in page
    assert '<td class="num">0.00400</td>' in page


def test_leaderboard_ranked_by_coco_ap(tmp_path):
    methods = methods_table().assign(coco_ap=[0.5, None, 0.25], rank=[1, 3, 2])
    out = tmp_path / "leaderboard.html"
    report.leaderboard_html(methods, out, metric="coco_ap")
    page = out.read_text(encoding="utf-8")
    assert '<th class="num primary">COCO mask AP ↑</th>' in page
    assert '<td class="num primary">0.250</td>' in page
    assert '<td class="num primary">–</td>' in page  # fast_bad has no AP
    assert '<th class="num">IoU mean ↑</th>' in page


def test_leaderboard_without_ground_truth_says_why_it_is_unranked(tmp_path):
    methods = methods_table().drop(columns=["iou_mean", "iou_median", "vi_split_mean",
                                            "vi_split_median"])
    # as segpipe.summary writes it when nothing ranks the methods
    methods["rank"] = pd.array([pd.NA] * 3, dtype="Int64")
    out = tmp_path / "leaderboard.html"
    report.leaderboard_html(methods, out)
    page = out.read_text(encoding="utf-8")
    assert ("Not ranked: this run has no ground truth (no <code>ground_truth_dir</code> in "
            "its config), so there is no quality metric, such as IoU") in page
    assert "primary" not in page.split("</style>")[1]
    # no column of dashes for a rank nobody has; methods by name
    assert "Rank" not in page and page.count("<tr><td class=\"method\">") == 3
    assert page.index("fast_bad") < page.index("mid &lt;b&gt;") < page.index("slow_good")


def test_leaderboard_with_ground_truth_but_no_primary_metric_says_so(tmp_path):
    # classes and regions have no IoU, but partition scores: ground truth, no ranking
    methods = methods_table().drop(columns=["iou_mean", "iou_median"])
    methods["rank"] = pd.array([pd.NA] * 3, dtype="Int64")
    out = tmp_path / "leaderboard.html"
    report.leaderboard_html(methods, out, metric="iou")
    page = out.read_text(encoding="utf-8")
    assert "Not ranked: no method has a value of IoU, the primary metric" in page
    assert "no ground truth" not in page
    assert '<th class="num">VI split mean ↓</th>' in page


def test_leaderboard_explains_its_two_timing_columns(tmp_path):
    for methods in (methods_table(), methods_table().drop(columns=["iou_mean", "iou_median"])):
        out = tmp_path / "leaderboard.html"
        report.leaderboard_html(methods.assign(segment_s_mean=0.1), out)
        page = out.read_text(encoding="utf-8")
        method, row = page.index("<dt>Method s / image</dt>"), page.index("<dt>Row s / image</dt>")
        assert "</table>" in page[:method] and method < row
        assert "the segmentation\nalone" in page[method:row]
        assert "reading and decoding it" in page[row:]
        assert "means over the images segmented without error" in page[row:]


def test_leaderboard_puts_methods_without_a_rank_last(tmp_path):
    methods = methods_table()
    methods["rank"] = pd.array([pd.NA, 2, 1], dtype="Int64")
    out = tmp_path / "leaderboard.html"
    report.leaderboard_html(methods, out)
    page = out.read_text(encoding="utf-8")
    assert page.index("mid &lt;b&gt;") < page.index("fast_bad") < page.index("slow_good")


def test_plot_objects_draws_areas_and_counts_of_methods_with_objects(tmp_path):
    rng = np.random.default_rng(0)
    objects = pd.DataFrame({
        "method": ["ws"] * 300 + ["otsu"] * 50,
        "area": np.concatenate([rng.integers(20, 400, 300), rng.integers(200, 3000, 50)]),
    })
    metrics = pd.DataFrame({
        "method": ["ws", "ws", "otsu", "otsu", "km", "km"],
        "image_id": ["a", "b"] * 3,
        "status": "ok",
        "n_objects": pd.array([200, 100, 30, 20, None, None], dtype="Int64"),
    })
    fig = report.plot_objects(objects, metrics, tmp_path / "objects.png")
    read_png(tmp_path / "objects.png")
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # km labels classes: no objects, no row. Largest median area at the top.
    assert names == ["otsu", "ws"]
    assert "350 objects of 2 images" in fig._suptitle.get_text()
    assert fig.axes[0].get_xscale() == fig.axes[1].get_xscale() == "log"


def test_plot_objects_without_any_object_method_says_so(tmp_path):
    metrics = pd.DataFrame({"method": ["km"], "image_id": ["a"], "status": "ok",
                            "n_objects": pd.array([None], dtype="Int64")})
    fig = report.plot_objects(pd.DataFrame({"method": [], "area": []}), metrics,
                              tmp_path / "o.png")
    assert "No method with objects" in fig.texts[0].get_text()


def test_leaderboard_shows_method_and_row_seconds_and_keeps_the_method_in_view(tmp_path):
    methods = methods_table().assign(segment_s_mean=[2.0, 0.001, 0.1])
    out = tmp_path / "board.html"
    report.leaderboard_html(methods, out, metric="iou")
    page = out.read_text()
    assert page.index("Method s / image") < page.index("Row s / image")
    assert "<td class=\"num\">2.00</td><td class=\"num\">2.50</td>" in page
    assert "td.method { position: sticky; left: 0" in page
    assert '<td class="method">slow_good</td>' in page


def test_examples_without_ground_truth_follow_object_counts(tmp_path):
    metrics = metrics_table({"a.png": None, "b.png": None, "c.png": None})
    metrics["n_labels"] = 1  # a threshold: always one label
    metrics["n_objects"] = [4, 40, 2]
    assert report.pick_examples(metrics, "otsu", "iou") == ["b.png", "a.png", "c.png"]


def test_distributions_draw_the_primary_metric_first(tmp_path):
    metrics = pd.concat([metrics_table({"a": 0.5, "b": 0.7}, method=m) for m in ("x", "y")])
    metrics["boundary_f1"] = [0.9, 0.8, 0.1, 0.2]
    fig = report.plot_metric_distributions(metrics, tmp_path / "d.png", primary="boundary_f1")
    assert fig.axes[0].get_title() == report.label_of("boundary_f1")
    # Methods ordered by it: x (0.85) above y (0.15).
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["x", "y"]


def test_overlays_draw_the_truth_in_its_own_colour_with_a_legend(overlay_run, tmp_path):
    from segpipe.ground_truth import GroundTruth
    from segpipe.imageio import write_png

    yy, xx = np.mgrid[:60, :80]
    truth = ((yy - 30) ** 2 + (xx - 20) ** 2 < 8**2).astype(np.uint8)  # elsewhere than the mask
    write_png(tmp_path / "truth" / "grey.png", truth)
    metrics = overlay_run.assign(height=60, width=80)
    fig = report.plot_overlays(metrics, tmp_path / "o.png", input_dir="in", method="otsu", n=1,
                               ground_truth=GroundTruth(tmp_path / "truth", kind="instances"))
    panel = fig.axes[0].get_images()[0].get_array()
    is_truth = np.all(np.isclose(panel, overlays.TRUTH_RGB), axis=-1)
    is_mask = np.all(np.isclose(panel, overlays.OUTLINE_RGB), axis=-1)
    assert is_truth[30, 20 - 7] and is_mask[30, 40 - 14] and not is_truth[30, 40 - 14]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["otsu", "ground truth"]
    # Without ground truth: no legend.
    fig = report.plot_overlays(metrics, tmp_path / "p.png", input_dir="in", method="otsu", n=1)
    assert not fig.legends


def test_overlays_of_32_bit_label_masks(tmp_path):
    from segpipe.imageio import write_labels

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((900, 1200), np.uint8))
    labels = np.zeros((900, 1200), np.uint32)
    labels[100:400, 100:500] = 70000
    write_labels(tmp_path / "m.tif", labels)
    panel = overlays._overlay(tmp_path / "big.png", tmp_path / "m.tif")
    assert np.all(np.isclose(panel, overlays.OUTLINE_RGB), axis=-1).any()


def test_quality_runtime_labels_of_close_methods_do_not_overlap(tmp_path):
    n = 8
    methods = pd.DataFrame({  # a sweep at nearly one point, and two methods far from it
        "method": [f"km_k{k}_seed{k}" for k in range(n)] + ["fast", "slow"],
        "kind": "kmeans",
        "n_error": 0,
        "seconds_per_image": [0.1 + 0.001 * k for k in range(n)] + [0.001, 10.0],
        "iou_mean": [0.5 + 0.001 * k for k in range(n)] + [0.05, 0.95],
        "rank": range(1, n + 3),
    })
    n += 2
    fig = report.plot_quality_runtime(methods, tmp_path / "q.png", metric="iou")
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == n
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


# --- the packed page --------------------------------------------------------------------

def tiny_png(path, value):
    """A small PNG whose bytes differ with ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((6, 9, 3), value, np.uint8))
    return path


def pack(tmp_path, methods, **kwargs):
    figures = [tiny_png(tmp_path / "report" / f"{n}.png", v)
               for v, n in enumerate(("quality_runtime", "distributions", "objects"))]
    overlays_ = [tiny_png(tmp_path / "report/overlays" / f"{m}.png", 100 + v)
                 for v, m in enumerate(methods["method"])]
    out = tmp_path / "report.html"
    report.write_report_page(methods, out, figures=figures, overlays=overlays_, **kwargs)
    return out.read_text(encoding="utf-8"), figures + overlays_


def test_report_page_holds_the_leaderboard_figures_and_examples_inline(tmp_path):
    import base64
    import re

    page, pngs = pack(tmp_path, methods_table().assign(n_images=10), input_dir="/data/x",
                      ground_truth_dir="/data/truth")
    # Every picture is in the page itself, in order, byte for byte; nothing outside it.
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert [base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in sources] == [
        p.read_bytes() for p in pngs]
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page and "http" not in page
    # One page, top to bottom: the run, the leaderboard table, the figures, the examples.
    assert "10 images of <code>/data/x</code>, 3 methods; ground truth" in page
    board, table = page.index('<h2 id="leaderboard">'), page.index('<td class="method">slow_good')
    figures, examples = page.index('<h2 id="figures">'), page.index('<h2 id="examples">')
    assert board < table < figures < page.index(sources[0]) < examples
    assert page.index("<h3>slow_good</h3>") > examples
    assert "<h3>mid &lt;b&gt;</h3>" in page
    assert "Quality against speed: each dot is a method" in page  # scores: the scatter's caption
    assert "best, median and worst images by the primary metric" in page
    assert "<dt>Row s / image</dt>" in page


def test_report_page_without_ground_truth_explains_the_fallbacks(tmp_path):
    methods = methods_table().drop(columns=["iou_mean", "iou_median", "vi_split_mean",
                                            "vi_split_median"])
    methods["rank"] = pd.array([pd.NA] * 3, dtype="Int64")
    page, _ = pack(tmp_path, methods)
    assert "no ground truth." in page and "Not ranked: this run has no ground truth" in page
    assert "Seconds per image of each method" in page  # the bars' caption, not the scatter's
    assert "Without ground truth: runtime per image" in page
    assert "the share of pixels outside class 0 of classes" in page


# --- what a run prints at its end --------------------------------------------------------

def finished_tables(tmp_path, *, truth):
    """methods.parquet of two methods as segpipe.summary writes it; the results folder."""
    from segpipe.summary import summarize_methods

    rows = metrics_table({"a.png": 0.5, "b.png": 0.7, "c.png": None}, method="otsu")
    rows = pd.concat([rows, metrics_table({"a.png": 0.9, "b.png": 0.8, "c.png": 0.95},
                                          method="watershed", kind="watershed")])
    rows = rows.assign(params="{}", runtime_s=[0.01, 0.02, 0.03, 1.5, 2.5, 3.5],
                       status=["ok", "ok", "error", "ok", "ok", "ok"])
    if not truth:
        rows["iou"] = np.nan
    for column in ("decode_s", "segment_s", "write_s", "n_objects", "foreground_fraction",
                   "n_instances", "mean_score"):
        rows[column] = np.nan
    results = tmp_path / "results"
    (results / "summary").mkdir(parents=True)
    summarize_methods(rows, primary_metric="iou").to_parquet(results / "summary/methods.parquet")
    return results


def test_run_summary_table_of_a_run_with_ground_truth(tmp_path):
    from segpipe.report import terminal

    results = finished_tables(tmp_path, truth=True)
    rows = terminal.read_methods(results / "summary/methods.parquet", metric="iou")
    assert terminal.methods_table(rows, metric="iou") == [
        "rank  method     kind       ok  errors  s / image  IoU mean",
        "   1  watershed  watershed   3       0       2.50     0.883",
        "   2  otsu       threshold   2       1     0.0150     0.600",
    ]


def test_run_summary_without_ground_truth_has_no_metric_and_no_rank(tmp_path):
    from segpipe.report import terminal

    results = finished_tables(tmp_path, truth=False)
    text = report.run_summary(tmp_path, results, metric="iou")
    lines = text.splitlines()
    assert lines[0] == f"segpipe: results in {results}"
    assert "  method     kind       ok  errors  s / image" in lines
    assert "  otsu       threshold   2       1     0.0150" in lines
    assert not any("IoU" in line or "rank" in line for line in lines)
    # what to do next: the report is not drawn yet
    assert lines[lines.index("next:") + 1].startswith(f"  segpipe report {tmp_path}")
    assert f"  segpipe status {tmp_path}" in text
    drawn = report.run_summary(tmp_path, results, report_page=results / "report.html")
    assert f"report: {results / 'report.html'}" in drawn and "segpipe report" not in drawn
    # a run of other targets has no summary table: only where its results are
    assert terminal.methods_table([], metric="iou") == ["method  kind  ok  errors  s / image"]
    bare = report.run_summary(tmp_path, tmp_path / "elsewhere").splitlines()
    assert bare[0] == f"segpipe: results in {tmp_path / 'elsewhere'}" and bare[1] == "next:"
