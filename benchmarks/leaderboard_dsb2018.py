"""Run every classical method (with sweeps) on the DSB 2018 development images and write
the leaderboard into docs/leaderboard.md.

    .venv/bin/python benchmarks/leaderboard_dsb2018.py [--data ../shared/data/dsb2018-dev]

The workflow runs in benchmarks/_work/dsb2018 (git-ignored) with benchmarks/dsb2018.yaml,
its paths filled in. The data set is not part of the repository (see its README).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["rank", "method", "kind", "labels", "object_f1_50_mean", "coco_ap50", "coco_ap",
           "iou_mean", "colour_iou", "dice_mean", "boundary_f1_mean", "ari_mean",
           "vi_split_mean", "vi_merge_mean", "object_f1_mean_mean", "segment_s_mean",
           "seconds_per_image", "n_ok", "n_error"]
# The targets for the new methods (issue 10), on these images.
TARGETS = {"object_f1_50_mean": 0.76, "coco_ap50": 0.50, "colour_iou": 0.70}


def fmt(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(frame, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame[columns].itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018-dev")
    p.add_argument("--out", type=Path, default=ROOT / "docs/leaderboard.md")
    p.add_argument("--config", type=Path, default=ROOT / "benchmarks/dsb2018.yaml",
                   help="the methods to compare (benchmarks/dsb2018_watershed_sweep.yaml: "
                        "the sweep behind watershed's defaults)")
    p.add_argument("--section", default="dsb2018",
                   help="the section of --out to write (its <!-- NAME:start/end --> markers)")
    args = p.parse_args(argv)
    start, end = f"<!-- {args.section}:start -->", f"<!-- {args.section}:end -->"
    config_name = args.config.resolve().relative_to(ROOT).as_posix()
    work = ROOT / "benchmarks/_work" / args.section
    work.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(args.config.read_text())
    title = config.pop("title", "classical methods")
    config["input_dir"] = str(args.data.resolve() / "images")
    config["ground_truth_dir"] = str(args.data.resolve() / "masks")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
               "--cores", "2", "--configfile", str(work / "config.yaml")]
    subprocess.run(command, check=True)
    from segpipe.methods import get_method

    methods = pd.read_parquet(work / "results/summary/methods.parquet")
    metrics = pd.read_parquet(work / "results/summary/metrics.parquet")
    meta = pd.read_csv(args.data / "meta.csv")
    metrics["modality"] = metrics["image_id"].str.removesuffix(".png").map(meta.set_index("id")["modality"])
    by_modality = (metrics[metrics["status"] == "ok"]
                   .pivot_table(index="method", columns="modality", values="iou", aggfunc="mean",
                                dropna=False)
                   .reindex(methods["method"]).reset_index())
    methods["labels"] = methods["kind"].map(lambda k: get_method(k).labels)
    methods["colour_iou"] = methods["method"].map(by_modality.set_index("method")["color"])
    best = {c: methods.loc[pd.to_numeric(methods[c], errors="coerce").idxmax()] for c in TARGETS}
    targets = pd.DataFrame([
        {"measure": c, "target": f">= {t}", "best": best[c][c], "method": best[c]["method"],
         "met": "yes" if best[c][c] >= t else "no"}
        for c, t in TARGETS.items()
    ])
    counts = meta["modality"].value_counts().to_dict()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    section = "\n".join([
        start,
        f"## DSB 2018 development set: {title}",
        "",
        ("Every classical kind with its default settings (and the polarity where "
         "it matters). `n/a`: the metric does not apply to what the method's labels mean "
         "(foreground IoU, Dice, object F1 and COCO AP need objects: `foreground` or "
         "`instances` labels; `classes` and `regions` get partition scores only). "
         "`segment_s_mean` is the method alone; `seconds_per_image` adds decoding, writing, "
         "object measurement and scoring."),
        "",
        ("Command: `.venv/bin/python benchmarks/leaderboard_dsb2018.py`"
         + ("" if args.section == "dsb2018" else f" --config {config_name} --section {args.section}")
         + f" (config `{config_name}`)  "),
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Machine: {cpu}, 2 cores, Python {platform.python_version()}  ",
        (f"Data: {len(meta)} images with instance masks ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
         "ground_truth_kind instances, boundary tolerance 2 px. Ranked by mean object F1 at IoU "
         "0.5. `colour_iou`: mean foreground IoU of the 11 colour (H&E) images."),
        "",
        markdown(methods, [c for c in COLUMNS if c in methods]),
        "",
        "Targets of issue 10 (best method on each):",
        "",
        markdown(targets, list(targets.columns)),
        "",
        "Mean foreground IoU by image modality:",
        "",
        markdown(by_modality, list(by_modality.columns)),
        "",
        ("Reference from the data set's README: scikit-image's Otsu on grey images gave a "
         "mean IoU of 0.64 over the 300 images this set was drawn from, 0.81 on the "
         "fluorescence images. Settings were chosen on these 60 images (a sweep of watershed "
         "h, sigma, min_distance and min_size, region-growing tolerance, clean-up size and "
         "polarity rules); per-image object F1 has a standard deviation of about 0.24, so "
         "the mean over 60 images has a standard error of about 0.03."),
        end,
    ])
    text = args.out.read_text() if args.out.exists() else "# Leaderboards\n"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    args.out.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
