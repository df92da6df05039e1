"""Benchmark `segpipe run`: small runs, and the cost per image of large ones against a
plain OpenCV loop.

1. **Small runs.** `segpipe run FOLDER --methods otsu -j 2` from an empty output folder,
   on 16 images: wall time of the whole command (Snakemake's start, listing, one segment
   job, merge), with and without `--report`. On the 16 first DSB 2018 nuclei images when
   the data set is there (`--data`), and on 16 generated 1024x1024 JPEG photographs.
2. **Marginal cost per image.** `segpipe run FOLDER --methods otsu -j 2` against a plain
   2-process loop (`multiprocessing.Pool(2)`) of OpenCV calls that decodes each image in
   grey, thresholds it with Otsu, counts its 8-connected components and writes the mask
   as PNG. Both on N1 and N2 generated 1024x1024 JPEG photographs; the marginal cost is
   (T(N2) - T(N1)) / (N2 - N1), so the fixed costs (Snakemake's start, imports, the
   merge) drop out. N1 and N2 default to 500 and 1000: with the default shard size
   (250) both split into an even number of segment jobs, so both cores are busy to the
   end in the workflow as in the loop. The workflow runs once with `measure_objects:
   false`, the like-for-like comparison (the loop measures no objects), and once with
   the defaults, which also measure every object's shape and intensity.

Every figure is the fastest of `--repeats` runs. The tables go into docs/benchmarks.md
between `<!-- command:start -->` and `<!-- command:end -->`.

    .venv/bin/python benchmarks/bench_command.py            # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_command.py --quick    # smoke test, to benchmarks/_work

Scratch files go under benchmarks/_work/command (git-ignored).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# One thread per process, as in a Snakemake job with `threads: 1`.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import cv2
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_classical  # its test photographs

from _bench import markdown_table, now, revision, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks/_work/command"
SEGPIPE = Path(sys.executable).parent / "segpipe"
SMALL_TARGET_S = 4.0
RATIO_TARGET = 1.25


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018-dev",
                   help="DSB 2018 development set (its images/ folder is used if present)")
    p.add_argument("--sizes", type=int, nargs=2, default=(500, 1000), metavar=("N1", "N2"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    p.add_argument("--quick", action="store_true",
                   help="40 and 80 images, 1 repeat, written to benchmarks/_work")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = (40, 80), 1
        args.out = WORK / "benchmarks-quick.md"
    return args


def make_photos(folder, n):
    """``n`` 1024x1024 JPEG photographs (bench_classical's generator, seed 0), cached."""
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tasks = [(i, 0, str(folder / f"photo_{i:05d}.jpg")) for i in range(n)]
    with bench_classical._pool(2, bench_classical._init_image_worker) as pool:
        pool.map(bench_classical._write_photo, tasks, chunksize=8)
    return folder


def time_segpipe(images, *, extra=(), config=None, repeats):
    """Fastest wall time of `segpipe run images --methods otsu -j 2` from an empty --out;
    with the metrics table of the last run."""
    best, out = float("inf"), WORK / "out"
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        command = [str(SEGPIPE), "run", str(images), "--methods", "otsu", "--out", str(out),
                   "-j", "2", *extra]
        if config is not None:
            command += ["--config", str(config)]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        best = min(best, wall)
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    return best, metrics


def _init_loop():
    cv2.setNumThreads(1)


def _loop_one(task):
    """The plain loop's work on one image: decode, Otsu, components, PNG."""
    path, out = task
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    _, mask = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, _ = cv2.connectedComponents(mask, connectivity=8)
    cv2.imwrite(out, mask)
    return n - 1


def time_loop(images, n, *, repeats):
    """Fastest wall time of Pool(2) over the first ``n`` images, pool start included."""
    paths = sorted(images.glob("*.jpg"))[:n]
    best, out = float("inf"), WORK / "loop"
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        tasks = [(str(p), str(out / (p.stem + ".png"))) for p in paths]
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(2, _init_loop) as pool:
            list(pool.imap_unordered(_loop_one, tasks, chunksize=8))
        best = min(best, time.perf_counter() - start)
    return best


def subset(images, n):
    """A folder of the first ``n`` images of ``images`` (hard links)."""
    folder = WORK / f"first{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in sorted(images.glob("*.jpg"))[:n]:
        os.link(path, folder / path.name)
    return folder


def small_runs(args, photos):
    folders = []
    dsb = args.data / "images"
    if dsb.is_dir():
        folder = WORK / "dsb16"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path in sorted(dsb.glob("*.png"))[:16]:
            shutil.copy2(path, folder / path.name)
        folders.append(("16 DSB 2018 nuclei images (256x256 to 1024x1024 PNG)", folder))
    folders.append(("16 photographs, 1024x1024 JPEG", subset(photos, 16)))
    rows = []
    for label, folder in folders:
        plain, metrics = time_segpipe(folder, repeats=args.repeats)
        drawn, _ = time_segpipe(folder, extra=["--report"], repeats=args.repeats)
        rows.append([label, f"{plain:.2f}", f"{drawn:.2f}",
                     f"{metrics['n_objects'].mean():.0f}",
                     "yes" if plain < SMALL_TARGET_S else "**no**"])
        print(f"  small: {label}: {plain:.2f} s, with --report {drawn:.2f} s", flush=True)
    return rows


def marginal(args, photos):
    n1, n2 = args.sizes
    lean = WORK / "lean.yaml"
    lean.write_text(yaml.safe_dump({"measure_objects": False}))
    results = {}
    for n in (n1, n2):
        folder = subset(photos, n)
        results[("loop", n)] = time_loop(folder, n, repeats=args.repeats)
        results[("lean", n)], _ = time_segpipe(folder, config=lean, repeats=args.repeats)
        results[("default", n)], m = time_segpipe(folder, repeats=args.repeats)
        results[("objects", n)] = float(m["n_objects"].mean())
        print(f"  {n} images: loop {results[('loop', n)]:.1f} s, segpipe lean "
              f"{results[('lean', n)]:.1f} s, defaults {results[('default', n)]:.1f} s",
              flush=True)
    per = {k: (results[(k, n2)] - results[(k, n1)]) / (n2 - n1) for k in ("loop", "lean", "default")}
    rows = []
    for key, label in (("loop", "plain loop, Pool(2): imread grey, Otsu, components, imwrite PNG"),
                       ("lean", "segpipe run --methods otsu -j 2, measure_objects: false"),
                       ("default", "segpipe run --methods otsu -j 2, defaults (objects measured)")):
        ratio = per[key] / per["loop"]
        verdict = "" if key == "loop" else (
            f"{ratio:.2f}x" + (" (target <= 1.25x: met)" if key == "lean" and ratio <= RATIO_TARGET
                               else " (target <= 1.25x: **missed**)" if key == "lean" else ""))
        rows.append([label, f"{results[(key, n1)]:.2f}", f"{results[(key, n2)]:.2f}",
                     f"{1000 * per[key]:.2f}", verdict])
    return rows, results[("objects", n2)]


def main(argv=None):
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    n1, n2 = args.sizes
    print(f"writing {n2} test photographs ...", flush=True)
    photos = make_photos(WORK / f"photos{n2}", n2)
    started = now()
    small = small_runs(args, photos)
    large, objects = marginal(args, photos)
    body = f"""## The segpipe command: small runs and cost per image (benchmarks/bench_command.py)

Run `.venv/bin/python benchmarks/bench_command.py` ({started}, revision {revision()}); on
{os.cpu_count()} cores of {bench_classical.machine_info()['cpu']}, nothing else running.
Every figure is the fastest of {args.repeats} runs from an empty output folder.

### A 16-image, one-method run

`segpipe run FOLDER --methods otsu -j 2`: the whole command, Snakemake's start included.
The report's figures are drawn only with `--report` (or later by `segpipe report`).

{markdown_table(["images", "wall (s)", "with --report (s)", "objects per image", f"under {SMALL_TARGET_S:.0f} s"], small)}

### Cost per image against a plain loop

1024x1024 JPEG photographs (random crops of scikit-image's sample photographs with
noise); {n1} and {n2} images; default shard size (250 images per job). Marginal cost =
(T({n2}) - T({n1})) / {n2 - n1}: what each further image costs once the run is going, on 2
cores. Otsu leaves about {objects:.0f} connected components per photograph, mostly specks.

{markdown_table(["run", f"T({n1}) (s)", f"T({n2}) (s)", "marginal (ms / image)", "vs the loop"], large)}

The like-for-like comparison is the second row: the loop measures no objects. The third
adds the objects table (area, centroid, box, eccentricity, solidity, perimeter and
intensities of every component), which `measure_objects: false` turns off.
"""
    write_section(args.out, "command", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
