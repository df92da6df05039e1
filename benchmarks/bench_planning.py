"""What a large run costs the Snakemake process itself: planning and scheduling.

- *Planning*: a folder of N empty ``.png`` files, listed once (the ``list_images``
  checkpoint), then ``snakemake -n`` over four methods timed: wall seconds and peak memory
  of the dry run, which every start pays, dry runs included.
- *Scheduling*: J tiny real images in shards of one image, one method, run for real with
  ``--cores 2``; the CPU seconds of the main Snakemake process alone (sampled with psutil,
  children excluded), per job.

Writes its table to ``docs/benchmarks.md`` between the ``planning`` markers.

    .venv/bin/python benchmarks/bench_planning.py --images 10000 100000 --jobs 40 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from _bench import ROOT, machine, markdown_table, now, revision, write_section

METHODS = {
    "otsu": {"kind": "threshold"},
    "mean": {"kind": "threshold", "method": "mean"},
    "sobel": {"kind": "edges"},
    "km": {"kind": "kmeans"},
}


def snakemake(work, config, *args):
    """Run snakemake in ``work``; return (wall s, main-process CPU s, peak RSS MB of it)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
           "--configfile", str(config), "--cores", "2", *args]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    cpu = rss = 0.0
    while proc.poll() is None:
        try:
            times = proc.cpu_times()
            cpu = times.user + times.system
            rss = max(rss, proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed in {work} (see its .snakemake/log)")
    return wall, cpu, rss


def planning(tmp, n_images, shard_sizes):
    """Dry-run cost over a folder of n_images empty files, for each shard size."""
    from segpipe.manifest import auto_shard_size

    folder = tmp / f"plan{n_images}" / "images"
    for sub in range(max(1, -(-n_images // 10000))):
        (folder / f"d{sub:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        (folder / f"d{i // 10000:03d}" / f"{i:07d}.png").touch()
    rows = []
    for shard_size in shard_sizes:
        work = folder.parent / f"work-{shard_size}"
        config = folder.parent / f"config-{shard_size}.yaml"
        value = shard_size if shard_size == "auto" else int(shard_size)
        config.write_text(yaml.safe_dump({"input_dir": str(folder), "shard_size": value,
                                          "methods": METHODS}))
        subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d",
                        str(work), "results/manifest/images.parquet", "--configfile",
                        str(config), "--cores", "1"], check=True, capture_output=True)
        wall, cpu, rss = snakemake(work, config, "-n")
        size = auto_shard_size(n_images) if shard_size == "auto" else int(shard_size)
        jobs = len(METHODS) * -(-n_images // size)
        label = f"auto ({size})" if shard_size == "auto" else str(size)
        rows.append([f"{n_images:,}", label, f"{jobs:,}", f"{wall:.1f}", f"{cpu:.1f}",
                     f"{rss:.0f}", f"{1000 * cpu / jobs:.2f}"])
        print("planning", rows[-1], flush=True)
    return rows


def scheduling(tmp, n_jobs):
    import cv2
    import numpy as np

    folder = tmp / f"sched{n_jobs}" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_jobs):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rng.integers(0, 256, (16, 16), np.uint8))
    work = folder.parent / "work"
    config = folder.parent / "config.yaml"
    config.write_text(yaml.safe_dump({"input_dir": str(folder), "shard_size": 1,
                                      "methods": {"otsu": {"kind": "threshold"}}}))
    wall, cpu, rss = snakemake(work, config)
    # Each segment job's own wall time (Snakemake's benchmark files): with one 16x16 image
    # per job, nearly all of it is the job's overhead (interpreter, imports, table write).
    job_walls = [float(path.read_text().splitlines()[1].split("\t")[0])
                 for path in (work / "logs/segment_shard/otsu").glob("*.benchmark.tsv")]
    return [f"{n_jobs:,}", f"{wall:.1f}", f"{cpu:.1f}", f"{rss:.0f}", f"{cpu / n_jobs:.3f}",
            f"{sum(job_walls) / len(job_walls):.2f}"]


def merging(tmp, n_rows, shard_size=250):
    """merge_metrics over n_rows rows in shards of shard_size, four methods, in a child
    process: wall seconds and its peak memory (ru_maxrss)."""
    import pyarrow as pa

    from segpipe.table import empty_row, rows_to_table, write_table_atomic

    paths = []
    per_method = n_rows // len(METHODS)
    for method in METHODS:
        base = rows_to_table([
            {**empty_row(image_id=f"plate/img{i:07d}.png", method=method, kind="threshold",
                         shard="000000", params='{"kind":"threshold"}'),
             "status": "ok", "runtime_s": 0.01, "n_labels": 3, "height": 1024, "width": 1024}
            for i in range(shard_size)
        ])
        column = base.schema.get_field_index("image_id")
        for start in range(0, per_method, shard_size):
            ids = pa.array([f"plate{start // 10000:03d}/img{i:07d}.png"
                            for i in range(start, start + shard_size)])
            path = tmp / "merge" / method / f"{start // shard_size:06d}.parquet"
            write_table_atomic(base.set_column(column, "image_id", ids), path)
            paths.append(str(path))
    listing = tmp / "merge" / "paths.txt"
    listing.write_text("\n".join(paths))
    code = (
        "import resource, sys, time; from segpipe.summary import merge_metrics; "
        f"paths = open({str(listing)!r}).read().split(); t = time.perf_counter(); "
        f"merge_metrics(paths, metrics_out={str(tmp / 'merge/out.parquet')!r}, "
        f"methods_out={str(tmp / 'merge/methods.parquet')!r}); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall, rss_kb = out.stdout.split()
    return [f"{n_rows:,}", str(len(paths)), f"{float(wall):.1f}", f"{int(rss_kb) / 1024:.0f}"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="*", default=[10000, 100000])
    p.add_argument("--shard-sizes", nargs="+", default=["auto", "250"])
    p.add_argument("--jobs", type=int, nargs="*", default=[40, 400, 4000])
    p.add_argument("--merge-rows", type=int, nargs="*", default=[4_000_000])
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    args = p.parse_args(argv)
    plan_rows, sched_rows, merge_rows = [], [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for n in args.images:
            plan_rows += planning(Path(tmp), n, args.shard_sizes)
        for n in args.jobs:
            sched_rows.append(scheduling(Path(tmp), n))
            print("scheduling", sched_rows[-1], flush=True)
        for n in args.merge_rows:
            merge_rows.append(merging(Path(tmp), n))
            print("merging", merge_rows[-1], flush=True)
    command = "benchmarks/bench_planning.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = f"""- Command: `.venv/bin/python {command.strip()}`
- Date: {now()}; code: {revision()}
- Machine: {machine()}; load average at the end {os.getloadavg()[0]:.2f}."""
    if plan_rows:
        write_section(args.out, "planning", f"""## Planning cost of the Snakemake process (benchmarks/bench_planning.py)

{header}
- The dry run after the listing, four methods (`otsu`, `mean`, `sobel`, `km`) over N empty
  files; wall and CPU seconds and peak memory of the Snakemake process.

{markdown_table(["images", "shard size", "jobs", "wall s", "CPU s", "peak MB", "CPU ms/job"], plan_rows)}
""")
    if sched_rows:
        write_section(args.out, "scheduling", f"""## Scheduling cost and per-job overhead (benchmarks/bench_planning.py)

{header}
- A real run of J 16x16 images, one `threshold` method, one image per shard (J segment jobs
  plus about 5 others), `--cores 2`, the default profile (`profiles/default`). *Main CPU*:
  CPU seconds of the main Snakemake process only (psutil, children excluded), start-up and
  DAG included. *Job wall*: the mean wall time of a segment job from Snakemake's benchmark
  files; with one tiny image per job it is almost all per-job overhead.

{markdown_table(["segment jobs", "wall s", "main CPU s", "peak MB", "CPU s/job", "job wall s"], sched_rows)}
""")
    if merge_rows:
        write_section(args.out, "merge", f"""## Merging the shard tables (benchmarks/bench_planning.py)

{header}
- `segpipe.summary.merge_metrics` (what the `merge_metrics` rule runs) over generated shard
  tables of 250 rows, four methods, in a child process: wall seconds and its peak memory
  (`ru_maxrss`). It reads, sorts and writes one method at a time.

{markdown_table(["rows", "shard tables", "wall s", "peak MB"], merge_rows)}
""")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
