"""Benchmark the classical methods of segpipe and the workflow that runs them.

Measures, on generated 1024x1024 colour photographs:

1. per-image seconds of every classical method in ``config/config.yaml``, split into
   decode, segment, write and metrics, on JPEG and on PNG files;
2. the k-means inertia of segpipe's subsampled fit against a full scikit-learn fit;
3. the wall time of ``snakemake --cores N`` on a folder of images against a plain
   ``multiprocessing.Pool(N)`` loop making the same library calls.

and writes the results as a Markdown section of ``docs/benchmarks.md`` (between the
``<!-- classical:start -->`` and ``<!-- classical:end -->`` markers; the rest of the file
is kept).

Run from anywhere; paths default to the repository this file belongs to::

    .venv/bin/python benchmarks/bench_classical.py              # full run, ~11 min on 2 cores
    .venv/bin/python benchmarks/bench_classical.py --quick      # smoke test, < 1 min

Scratch files (test images, the copy of the code that is measured, outputs, the
Snakemake working directory) go under ``benchmarks/_work/``, which git ignores.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import multiprocessing
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# One thread per process for OpenMP (scikit-learn's k-means) and BLAS, as in a Snakemake
# job with `threads: 1` (Snakemake sets these variables for it). They only take effect
# if set before the libraries load, here for this process, and through the environment
# for the spawned workers and the snakemake subprocess.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import cv2
import numpy as np
import yaml

# segpipe is imported inside the functions, from the copy of the code that main() makes
# (see snapshot_code), never from the working tree itself.
ROOT = Path(__file__).resolve().parents[1]

START_MARKER = "<!-- classical:start -->"
END_MARKER = "<!-- classical:end -->"
SIZE = 1024
FORMATS = ("jpg", "png")
STAGE_COLUMNS = ("decode_s", "segment_s", "write_s", "metrics_s", "runtime_s")

# Full run and --quick; an option given on the command line wins over both.
FULL = {
    "n_images": 1000,
    "per_format": 30,
    "repeats": 3,
    "inertia_images": 5,
    "out": "docs/benchmarks.md",
}
QUICK = {
    "n_images": 40,
    "per_format": 5,
    "repeats": 1,
    "inertia_images": 2,
    # A smoke test must not overwrite the published numbers.
    "out": "benchmarks/_work/benchmarks-quick.md",
}

# The code that is measured: the package and everything a workflow run reads.
CODE_PATHS = ("src/segpipe", "workflow", "Snakefile", "config", "envs", "profiles/default")

# The method kinds this benchmark is about (called once segpipe is importable): those of the per-image CPU runner, read from
# the registry; others in the config (the batch runner's Mask R-CNN, which wants weights
# and a GPU) are left out and named in the report.
def _classical_kinds():
    from segpipe.methods import REGISTRY

    return frozenset(kind for kind, spec in REGISTRY.items() if spec.runner == "image")

# Targets of the design; each is checked and reported as pass/fail.
OTSU_E2E_TARGET_S = 0.020
KMEANS_SEGMENT_TARGET_S = 0.150
KMEANS_INERTIA_TARGET = 0.01
WORKFLOW_RATIO_TARGET = 1.25

# skimage.data images that ship with scikit-image (no download). Grey ones are stored
# as colour files, as monochrome photographs often are.
SOURCE_IMAGES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
    "camera",
    "coins",
)


def parse_args(argv=None):
    """Command-line options; unset ones take the full-run or ``--quick`` defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smoke test: 40 images, 5 per format, 1 pass, 2 inertia images, output to "
            f"{QUICK['out']}"
        ),
    )
    parser.add_argument(
        "--n-images",
        type=int,
        help=f"images for the workflow comparison, half JPEG, half PNG "
        f"(default {FULL['n_images']})",
    )
    parser.add_argument(
        "--per-format",
        type=int,
        help=f"images per format for the stage timings (default {FULL['per_format']})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"passes of the stage timings; the fastest counts (default {FULL['repeats']})",
    )
    parser.add_argument(
        "--inertia-images",
        type=int,
        help=f"images for the k-means inertia check (default {FULL['inertia_images']})",
    )
    parser.add_argument(
        "--shard-size", type=int, help="images per Snakemake segment job (default: the config's)"
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="Snakemake --cores and loop processes (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the test images")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / "benchmarks/_work",
        help="scratch folder, emptied parts of it are rewritten",
    )
    parser.add_argument(
        "--keep-outputs",
        action="store_true",
        help="keep the test images, masks and edge maps in the work folder (gigabytes)",
    )
    parser.add_argument("--out", type=Path, help=f"Markdown file to update (default {FULL['out']})")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, ROOT / value if key == "out" else value)
    if not 1 <= args.per_format <= args.n_images // 2:
        parser.error("--per-format must be between 1 and half of --n-images")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not 1 <= args.inertia_images <= args.n_images:
        parser.error("--inertia-images must be between 1 and --n-images")
    return args


# --- machine ----------------------------------------------------------------------------


def machine_info():
    """CPU, cores, memory, load and library versions, for the report header."""
    import pyarrow
    import skimage
    import sklearn
    import snakemake

    from segpipe import __version__ as segpipe_version

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": mem_kb / 2**20,
        "os": f"{platform.system()} {platform.release()}",
        "loadavg_start": loadavg(),
        "versions": {
            "python": platform.python_version(),
            "segpipe": segpipe_version,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "scikit-image": skimage.__version__,
            "scikit-learn": sklearn.__version__,
            "snakemake": snakemake.__version__,
            "pyarrow": pyarrow.__version__,
        },
    }


def git_revision():
    """The commit the benchmark ran on, and whether the working tree differed from it."""

    def git(*cmd):
        return subprocess.run(
            ["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", *CODE_PATHS)
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def snapshot_code(dest):
    """Copy the measured code into ``dest`` and run everything from there.

    The working tree may be edited while a long run goes on, and numbers taken partly
    before and partly after an edit describe no version of the code. This process, its
    workers (through PYTHONPATH, which precedes the editable install's path) and the
    Snakemake run (``-s`` the copied Snakefile, which puts its own ``src`` first) all use
    the copy.

    Returns
    -------
    str
        A digest of the copied files, naming the version measured.
    """
    shutil.rmtree(dest, ignore_errors=True)
    digest = hashlib.sha256()
    for top in CODE_PATHS:
        source = ROOT / top
        if source.is_dir():
            shutil.copytree(source, dest / top, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            (dest / top).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / top)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(dest)}\0".encode() + path.read_bytes())
    sys.path.insert(0, str(dest / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(dest / "src"), os.environ.get("PYTHONPATH")) if p
    )
    import segpipe

    if not Path(segpipe.__file__).is_relative_to(dest):
        raise RuntimeError(f"segpipe was imported from {segpipe.__file__}, not from {dest}")
    return digest.hexdigest()[:12]


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class CpuMeter:
    """Wall time, our CPU time and other processes' CPU time over a ``with`` block.

    The machine may be shared. Our CPU time (this process and its waited-for children,
    Snakemake's jobs included) subtracted from the machine's busy time in /proc/stat
    says how much else ran meanwhile; steal time says how much the hypervisor took.

    Attributes
    ----------
    wall_s, own_s, others_s, steal_s : float
        Set when the block ends.
    """

    def __enter__(self):
        self._start = (time.perf_counter(), _own_cpu_s(), *_machine_cpu_s())
        return self

    def __exit__(self, *exc_info):
        wall, own, busy, steal = (
            b - a
            for a, b in zip(self._start, (time.perf_counter(), _own_cpu_s(), *_machine_cpu_s()))
        )
        self.wall_s, self.own_s, self.steal_s = wall, own, steal
        self.others_s = max(busy - own, 0.0)
        return False


def _own_cpu_s():
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def _machine_cpu_s():
    """Busy and steal seconds of all CPUs since boot, from the first line of /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _limit_threads():
    """One OpenCV thread per process, as run_shard sets for a ``threads: 1`` job.

    With OpenMP and BLAS limited at import (top of this file), every timing here is
    taken under the same limits as a segment job, so the numbers are per core.
    """
    cv2.setNumThreads(1)


# --- test images ------------------------------------------------------------------------

_sources = []


def _init_image_worker():
    """Load the source photographs (BGR uint8) once per worker process."""
    import skimage.data

    _limit_threads()
    for name in SOURCE_IMAGES:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        _sources.append(image)


def _write_photo(task):
    """Write test image ``index`` as ``path``; the content depends on seed and index only.

    A random square crop of a source photograph, maybe mirrored, scaled to 1024x1024,
    with an exposure change and mild sensor noise. The sources are at most 1411 px wide,
    so most crops are enlarged; without the noise they would be smoother than a real
    1-megapixel photograph and compress (and decode) unrealistically well as PNG.
    """
    index, seed, path = task
    rng = np.random.default_rng([seed, index])
    src = _sources[rng.integers(len(_sources))]
    h, w = src.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = src[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    photo = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    photo = photo * rng.uniform(0.85, 1.15) + rng.normal(0.0, 2.0, photo.shape)
    photo = np.clip(photo + 0.5, 0, 255).astype(np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.endswith(".jpg") else []
    if not cv2.imwrite(path, photo, params):
        raise OSError(f"could not write {path}")


def make_test_images(folder, n_images, seed, processes):
    """Write ``n_images`` photographs into an emptied ``folder``, alternating JPEG and PNG.

    Returns
    -------
    dict of str to list of str
        Image ids (file names) per format, in index order.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ids = [f"photo_{i:05d}.{FORMATS[i % 2]}" for i in range(n_images)]
    tasks = [(i, seed, str(folder / image_id)) for i, image_id in enumerate(ids)]
    with _pool(processes, _init_image_worker) as pool:
        pool.map(_write_photo, tasks, chunksize=8)
    return {fmt: [i for i in ids if i.endswith(fmt)] for fmt in FORMATS}


def _pool(processes, initializer, initargs=()):
    # "spawn": fresh interpreters like Snakemake's jobs, and safe after this process has
    # used OpenMP (forking after libgomp has started threads can hang the children).
    return multiprocessing.get_context("spawn").Pool(processes, initializer, initargs)


# --- config -----------------------------------------------------------------------------


def load_config(code, input_dir, shard_size):
    """The repository's config: its classical methods, ``input_dir`` (and ``shard_size``) set.

    Returns
    -------
    raw : dict
        To be written as the workflow's ``--configfile`` (whose ``methods`` replace the
        default ones, so the workflow runs the classical methods only).
    resolved : dict
        With every default filled in, as the workflow resolves it.
    skipped : list of str
        Names of the config's other methods, left out.
    """
    from segpipe.config import load_schema, resolve_config

    with open(code / "config/config.yaml") as fh:
        raw = yaml.safe_load(fh)
    skipped = [m for m, s in raw["methods"].items() if s["kind"] not in _classical_kinds()]
    raw["methods"] = {m: s for m, s in raw["methods"].items() if m not in skipped}
    raw["input_dir"] = str(input_dir)
    if shard_size is not None:
        raw["shard_size"] = shard_size
    schema = load_schema(code / "workflow/schemas/config.schema.yaml")
    return raw, resolve_config(copy.deepcopy(raw), schema), skipped


def find_method(methods, **wanted):
    """Name and settings of the first method whose settings include ``wanted``.

    The targets are about a kind of method (Otsu, k-means with k=5), not a config name.

    >>> find_method({"a": {"kind": "kmeans", "k": 3}, "b": {"kind": "kmeans", "k": 5}}, k=5)
    ('b', {'kind': 'kmeans', 'k': 5})
    """
    for name, settings in methods.items():
        if all(settings.get(key) == value for key, value in wanted.items()):
            return name, settings
    raise SystemExit(f"config/config.yaml has no method with {wanted}")


# --- 1. stages --------------------------------------------------------------------------


def measure_stages(input_dir, ids_by_format, methods, scratch, repeats):
    """Per-image stage seconds of every method on every format, in this process.

    Every image is segmented ``repeats`` times, in passes over all methods, and its
    fastest pass (by ``runtime_s``, kept whole with its split into stages) counts: on a
    shared machine a slow pass measures the other work as much as segpipe. The first
    pass begins each (method, format) with one untimed image, so imports and first-call
    set-up (scikit-learn is imported lazily) land in no image's numbers.

    Returns
    -------
    dict of (str, str) to dict of str to list of float
        ``(method, format)`` to the columns of :data:`STAGE_COLUMNS`.
    """
    fastest = {}
    for repeat in range(repeats):
        for method, settings in methods.items():
            for fmt, ids in ids_by_format.items():
                kwargs = {"input_dir": input_dir, "method": method, "settings": settings,
                          "scratch": scratch}
                if repeat == 0:
                    segment_shard(ids[:1], **kwargs)
                table = segment_shard(ids, **kwargs)
                errors = [e for s, e in zip(table["status"], table["error"]) if s != "ok"]
                if errors:
                    raise RuntimeError(f"{method} failed on {len(errors)} images: {errors[0]}")
                rows = [dict(zip(STAGE_COLUMNS, v)) for v in zip(*map(table.get, STAGE_COLUMNS))]
                kept = fastest.setdefault((method, fmt), rows)
                fastest[method, fmt] = [
                    min(a, b, key=lambda row: row["runtime_s"]) for a, b in zip(kept, rows)
                ]
        print(f"  pass {repeat + 1} of {repeats} done")
    results = {}
    for (method, fmt), rows in fastest.items():
        results[method, fmt] = {c: [row[c] for row in rows] for c in STAGE_COLUMNS}
        total = statistics.median(results[method, fmt]["runtime_s"])
        print(f"  {method:12s} {fmt}: median {_ms(total)} ms")
    return results


# --- 2. k-means inertia -----------------------------------------------------------------


def inertia(pixels, labels, k):
    """Sum of squared distances of ``pixels`` to the mean colour of their label.

    The means are taken over all pixels, so a fit on a subsample and a fit on all pixels
    are judged by the same yardstick.
    """
    labels = labels.ravel()
    counts = np.bincount(labels, minlength=k)
    sums = np.stack([np.bincount(labels, weights=pixels[:, c], minlength=k) for c in range(3)])
    means = sums.T / np.maximum(counts, 1)[:, None]
    return float(((pixels - means[labels]) ** 2).sum())


def measure_inertia(input_dir, image_ids, settings):
    """segpipe's k-means against ``KMeans(n_init=3, random_state=0)`` on all pixels.

    Returns
    -------
    list of dict
        Per image: ``image_id``, ``segpipe``, ``full`` (inertias) and ``rel_diff``
        (segpipe / full - 1; negative means segpipe's clustering is tighter).
    """
    from sklearn.cluster import KMeans

    from segpipe.imageio import read_image
    from segpipe.methods import get_method

    spec = get_method("kmeans")
    kwargs = {k: v for k, v in settings.items() if k != "kind"}
    k = settings["k"]
    rows = []
    for image_id in image_ids:
        rgb = read_image(Path(input_dir) / image_id, mode="rgb")
        pixels = rgb.reshape(-1, 3).astype(np.float32) / np.float32(255)
        ours = inertia(pixels.astype(np.float64), spec.segment(rgb, **kwargs).labels, k)
        full_labels = KMeans(n_clusters=k, n_init=3, random_state=0).fit(pixels).labels_
        full = inertia(pixels.astype(np.float64), full_labels, k)
        rows.append(
            {"image_id": image_id, "segpipe": ours, "full": full, "rel_diff": ours / full - 1}
        )
        print(
            f"  {image_id}: segpipe {ours:.2f}, full fit {full:.2f}, "
            f"{100 * rows[-1]['rel_diff']:+.2f}%"
        )
    return rows


# --- 3. workflow against a loop ---------------------------------------------------------


def run_workflow(code, config, work_dir, cores):
    """Run the whole workflow from an empty working directory; return its numbers.

    Returns
    -------
    dict
        ``meter`` (a :class:`CpuMeter`); ``wall_s``; ``jobs`` (steps Snakemake reports
        done); ``segment_jobs``; ``job_s`` (sum of the segment jobs' wall times from their
        benchmark files); ``image_s`` (sum of per-image runtime_s in the merged metrics);
        ``rows`` and ``errors`` of the merged metrics.
    """
    import pandas as pd

    run_dir = work_dir / "workflow"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # Outside the run directory, so that the directory really starts empty.
    config_file = work_dir / "workflow-config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    log_file = work_dir / "snakemake.log"
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "-s",
        str(code / "Snakefile"),
        "-d",
        str(run_dir),
        "--cores",
        str(cores),
        "--configfile",
        str(config_file),
    ]
    with open(log_file, "w") as log, CpuMeter() as meter:
        # From the copy, so that Snakemake finds the copied workflow profile wherever it
        # looks for it (next to the Snakefile or in the current directory).
        proc = subprocess.run(cmd, cwd=code, check=False, stdout=log, stderr=subprocess.STDOUT)
    output = log_file.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}); see {log_file}")
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", output)
    if not done:
        raise RuntimeError(f"no '... steps (100%) done' line in {log_file}")
    benchmarks = list((run_dir / "logs/segment_shard").glob("*/*.benchmark.tsv"))
    metrics = pd.read_parquet(run_dir / "results/summary/metrics.parquet")
    return {
        "meter": meter,
        "wall_s": meter.wall_s,
        "jobs": int(done[-1][1]),
        "segment_jobs": len(benchmarks),
        "job_s": sum(float(pd.read_csv(p, sep="\t")["s"].iloc[0]) for p in benchmarks),
        "image_s": float(metrics["runtime_s"].sum()),
        "rows": len(metrics),
        "errors": int((metrics["status"] != "ok").sum()),
    }


_loop_methods = {}
_loop_paths = {}


def _init_loop_worker(methods, input_dir, out_dir):
    """Give a loop worker the settings and folders once, not with every task."""
    _limit_threads()
    _loop_methods.update(methods)
    _loop_paths.update(input_dir=Path(input_dir), out_dir=out_dir)


def segment_shard(ids, *, input_dir, method, settings, scratch):
    """One shard job's per-image loop (the production frame, :mod:`segpipe.job`) over
    ``ids``; its metrics table as a dict of columns."""
    import pyarrow.parquet as pq

    from segpipe.job import ShardJob, run_shard_job
    from segpipe.layout import Layout
    from segpipe.manifest import write_shards

    write_shards(scratch / "shards", {"bench": list(ids)})
    metrics = scratch / "bench.parquet"
    run_shard_job(ShardJob(method=method, settings=settings,
                           shard_file=str(scratch / "shards" / "bench.json"),
                           input_dir=str(input_dir), metrics_out=str(metrics),
                           layout=Layout(str(scratch))))
    return pq.read_table(metrics).to_pydict()


def _loop_task(task):
    """Segment one (image, method): the library calls a segment job makes for it."""
    from segpipe.imageio import read_image, write_png
    from segpipe.label_stats import label_stats
    from segpipe.layout import Layout, shard_output_paths
    from segpipe.methods import get_method

    image_id, method = task
    settings = _loop_methods[method]
    spec = get_method(settings["kind"])
    kwargs = {k: v for k, v in settings.items() if k != "kind"}
    out_dir = _loop_paths["out_dir"]
    image = read_image(_loop_paths["input_dir"] / image_id, mode=spec.colour)
    seg = spec.segment(image, **kwargs)
    layout = Layout(str(out_dir))
    write_png(shard_output_paths(layout.masks(method, "000000"), [image_id])[image_id],
              seg.labels)
    if seg.edge_map is not None:
        write_png(shard_output_paths(layout.edges(method, "000000"), [image_id])[image_id],
                  seg.edge_map)
    label_stats(seg.labels)


def run_loop(input_dir, image_ids, methods, work_dir, processes):
    """Time a ``Pool(processes)`` over every (image, method) into an emptied folder.

    Returns
    -------
    dict
        ``meter`` (a :class:`CpuMeter`), ``wall_s`` (pool start to the workers' exit) and
        ``tasks``.
    """
    out_dir = work_dir / "loop"
    shutil.rmtree(out_dir, ignore_errors=True)
    tasks = [(image_id, method) for image_id in image_ids for method in methods]
    with CpuMeter() as meter:
        pool = _pool(processes, _init_loop_worker, (methods, str(input_dir), str(out_dir)))
        # Small chunks keep both processes busy to the end (k-means tasks are the long ones).
        for _ in pool.imap_unordered(_loop_task, tasks, chunksize=4):
            pass
        # Joined, not terminated: the workers' CPU time is counted once they are reaped.
        pool.close()
        pool.join()
    return {"meter": meter, "wall_s": meter.wall_s, "tasks": len(tasks)}


# --- report -----------------------------------------------------------------------------


def _ms(seconds):
    return f"{1000 * seconds:.1f}"


def _med_mean(values):
    return f"{_ms(statistics.median(values))} / {_ms(statistics.fmean(values))}"


def check_targets(r):
    """The design's targets against the results ``r``: (what, limit, measured, passed)."""
    otsu_name, _ = find_method(r["methods"], kind="threshold", method="otsu")
    kmeans_name, _ = find_method(r["methods"], kind="kmeans", k=5)
    otsu = r["stages"][otsu_name, "jpg"]
    otsu_e2e = statistics.median(
        map(sum, zip(otsu["decode_s"], otsu["segment_s"], otsu["write_s"]))
    )
    kmeans_seg = [t for fmt in FORMATS for t in r["stages"][kmeans_name, fmt]["segment_s"]]
    worst_inertia = max(row["rel_diff"] for row in r["inertia"])
    ratio = r["workflow"]["wall_s"] / r["loop"]["wall_s"]
    cores = r["args"].cores
    return [
        (
            f"Otsu (`{otsu_name}`) end to end (decode + segment + write), 1024x1024 JPEG, median",
            f"<= {_ms(OTSU_E2E_TARGET_S)} ms",
            f"{_ms(otsu_e2e)} ms",
            otsu_e2e <= OTSU_E2E_TARGET_S,
        ),
        (
            (
                f"k-means k=5 (`{kmeans_name}`) segment time, 1 megapixel, median of "
                f"{len(kmeans_seg)} (JPEG and PNG)"
            ),
            f"<= {_ms(KMEANS_SEGMENT_TARGET_S)} ms",
            f"{_ms(statistics.median(kmeans_seg))} ms",
            statistics.median(kmeans_seg) <= KMEANS_SEGMENT_TARGET_S,
        ),
        (
            f"k-means k=5 inertia vs. full scikit-learn fit, worst of {len(r['inertia'])} images",
            f"<= +{100 * KMEANS_INERTIA_TARGET:.0f}%",
            f"{100 * worst_inertia:+.2f}%",
            worst_inertia <= KMEANS_INERTIA_TARGET,
        ),
        (
            (
                f"`snakemake --cores {cores}` wall time / Pool({cores}) loop, "
                f"{r['args'].n_images} images"
            ),
            f"<= {WORKFLOW_RATIO_TARGET:.2f}x",
            f"{ratio:.2f}x",
            ratio <= WORKFLOW_RATIO_TARGET,
        ),
    ]


def render(r):
    """The Markdown section for the results ``r`` (see :func:`main`), markers included."""
    args, info, wf, loop = r["args"], r["info"], r["workflow"], r["loop"]
    command = shlex.join(
        [os.path.relpath(sys.executable, ROOT), os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    phases = [
        ("stage timings (1 process)", r["stages_meter"]),
        (f"snakemake --cores {args.cores}", wf["meter"]),
        (f"Pool({args.cores}) loop", loop["meter"]),
    ]
    # A tenth of a core on average is more than this idle machine's own background.
    shared = any(m.others_s / m.wall_s > 0.1 for _, m in phases)
    lines = [
        START_MARKER,
        "## Classical methods",
        "",
        "Written by `benchmarks/bench_classical.py`; rerun it rather than editing by hand.",
        "",
        f"- Command: `{command}` (from the repository root)",
        f"- Date: {r['date']}",
        (
            f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']:.1f} GiB RAM, "
            f"{info['os']}"
        ),
        f"- Load average (1/5/15 min) at start: {info['loadavg_start']}; at end: "
        f"{r['loadavg_end']}"
        + (
            ". Other processes were running during the measurements (see *Machine use* "
            "below), so these timings are pessimistic."
            if shared
            else "."
        ),
        f"- Versions: {versions}",
        (
            f"- Images: {args.n_images} generated 1024x1024 colour photographs (random square "
            "crops of scikit-image's bundled photographs, mirrored at random, scaled, with an "
            "exposure change and noise of sigma 2 grey levels), alternately JPEG (quality 90, "
            f"mean {r['file_kb']['jpg']:.0f} kB) and PNG (OpenCV's default compression, mean "
            f"{r['file_kb']['png']:.0f} kB), written with cv2.imwrite. They had just been written, "
            "so every run read them from the page cache, not the disk."
        ),
        (
            "- Threads: one per process everywhere (OpenCV, OpenMP, BLAS), as in a "
            "`threads: 1` segment job."
        ),
        (
            f"- Code: {r['revision']}. {', '.join(CODE_PATHS)} were copied at the start "
            f"(digest {r['digest']}) and every run used the copy, so edits to the working "
            "tree during the run do not mix in."
        ),
        (
            f"- Methods: the classical methods of `config/config.yaml` ({', '.join(r['methods'])})"
            + (f"; left out: {', '.join(r['skipped'])}." if r["skipped"] else ".")
        ),
        "",
        "### Targets",
        "",
        "| target | limit | measured | result |",
        "|---|---:|---:|---|",
        *(
            f"| {what} | {limit} | {value} | {'**pass**' if ok else '**FAIL**'} |"
            for what, limit, value, ok in check_targets(r)
        ),
        *(
            [
                "",
                (
                    "*A `--quick` smoke test: with so few images Snakemake's fixed costs (start, "
                    "listing, merging, plots) dominate the workflow ratio and the medians rest on "
                    "a handful of images; the targets are meant for the full run.*"
                ),
            ]
            if args.quick
            else []
        ),
        "",
        "### Per-image time by stage",
        "",
        (
            f"the shard-job frame (`segpipe.job.run_shard_job`) in one process, {args.per_format} images per "
            f"format, each segmented in {args.repeats} passes over all methods; its fastest "
            "pass counts, since on a shared machine a slow pass measures the other work too. "
            "One untimed warm-up image per method and format first. Settings from "
            "`config/config.yaml` with the schema's defaults; k-means decodes to RGB, the "
            "others to grey. Milliseconds per image, median / mean over the images; *total* "
            "is `runtime_s`, all four stages."
        ),
        "",
        "| method | format | decode | segment | write | metrics | total |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(
            f"| {method} | {fmt.upper()} | "
            + " | ".join(_med_mean(cols[c]) for c in STAGE_COLUMNS)
            + " |"
            for (method, fmt), cols in r["stages"].items()
        ),
        "",
        "### k-means inertia",
        "",
        (
            "Sum over all pixels (RGB scaled to 0..1, as the method does) of the squared "
            "distance to the mean colour of the pixel's cluster: segpipe's labels (centres fitted "
            "on a subsample, then every pixel assigned) against those of "
            "`sklearn.cluster.KMeans(n_clusters=5, n_init=3, random_state=0).fit(all_pixels)`."
        ),
        "",
        "| image | segpipe | full fit | difference |",
        "|---|---:|---:|---:|",
        *(
            f"| {row['image_id']} | {row['segpipe']:.2f} | {row['full']:.2f} | "
            f"{100 * row['rel_diff']:+.2f}% |"
            for row in r["inertia"]
        ),
        "",
        "### Whole workflow against a plain loop",
        "",
        (
            f"{args.n_images} images (half JPEG, half PNG), the {len(r['methods'])} methods "
            f"above, shard size {r['shard_size']}."
        ),
        "",
        (
            f"- Snakemake: `snakemake -s Snakefile -d <empty folder> --cores {args.cores} "
            f"--configfile <config with input_dir set>`: {wf['jobs']} jobs "
            f"({wf['segment_jobs']} segment jobs), {wf['rows']} metric rows, "
            f"{wf['errors']} errors."
        ),
        (
            f"- Loop: `multiprocessing.Pool({args.cores})` of spawned processes over the "
            f"{loop['tasks']} (image, method) pairs, each doing `read_image`, the method's "
            "segment function, `write_png` (the mask, and the edge map for edge methods) and "
            "`label_stats`, into a separate folder; no tables."
        ),
        "",
        "| run | wall time (s) | CPU time (s) |",
        "|---|---:|---:|",
        f"| snakemake --cores {args.cores} | {wf['wall_s']:.1f} | {wf['meter'].own_s:.1f} |",
        f"| Pool({args.cores}) loop | {loop['wall_s']:.1f} | {loop['meter'].own_s:.1f} |",
        (
            f"| ratio | {wf['wall_s'] / loop['wall_s']:.2f}x | "
            f"{wf['meter'].own_s / loop['meter'].own_s:.2f}x |"
        ),
        "",
        (
            "The target is on wall time, which counts cores left idle (for example while "
            "the last, longest jobs run) as well as the work done; CPU time counts the work "
            "only. Other work on the machine slows both (shared caches, hypervisor steal), "
            "so compare the runs only where *Machine use* shows little of it in both."
        ),
        "",
        (
            f"The {wf['segment_jobs']} segment jobs took {wf['job_s']:.1f} s together "
            f"(Snakemake's benchmark files), {wf['image_s']:.1f} s of it per-image work "
            f"(`runtime_s`): {(wf['job_s'] - wf['image_s']) / max(wf['segment_jobs'], 1):.1f} s "
            "per job outside the image loop (interpreter start, imports, table write)."
        ),
        "",
        "### Machine use during the timed runs",
        "",
        (
            "*Our CPU*: this script and its children (Snakemake's jobs included). *Others*: "
            "the rest of the machine's busy time in /proc/stat over the same interval, as "
            "mean cores. *Steal*: time the hypervisor gave to other virtual machines."
        ),
        "",
        "| phase | wall (s) | our CPU (s) | others (mean cores) | steal (s) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {m.wall_s:.1f} | {m.own_s:.1f} | {m.others_s / m.wall_s:.2f} | "
            f"{m.steal_s:.1f} |"
            for name, m in phases
        ),
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def remove_bulk(work_dir):
    """Delete the test images, masks and edge maps; keep logs, metrics and summaries.

    A full run leaves about 7 GB otherwise, the 16-bit edge maps most of it.
    """
    for folder in ("images", "stages", "loop", "workflow/results/masks", "workflow/results/edges"):
        shutil.rmtree(work_dir / folder, ignore_errors=True)


def write_section(path, section):
    """Replace the marked section of ``path``, or append it; keep the rest of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(END_MARKER) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# --- main -------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir.resolve()
    image_dir = work_dir / "images"
    code = work_dir / "code"
    r = {"args": args, "revision": git_revision(), "digest": snapshot_code(code)}
    r["info"] = machine_info()
    r["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"load average at start: {r['info']['loadavg_start']}; code {r['digest']}")

    t0 = time.perf_counter()
    ids_by_format = make_test_images(image_dir, args.n_images, args.seed, args.cores)
    print(f"wrote {args.n_images} images in {time.perf_counter() - t0:.1f} s")
    r["file_kb"] = {
        fmt: statistics.fmean((image_dir / i).stat().st_size for i in ids) / 1e3
        for fmt, ids in ids_by_format.items()
    }
    raw_config, config, r["skipped"] = load_config(code, image_dir, args.shard_size)
    r["methods"], r["shard_size"] = config["methods"], config["shard_size"]

    print("stage timings")
    _limit_threads()
    stage_dir = work_dir / "stages"
    shutil.rmtree(stage_dir, ignore_errors=True)
    subset = {fmt: ids[: args.per_format] for fmt, ids in ids_by_format.items()}
    with CpuMeter() as r["stages_meter"]:
        r["stages"] = measure_stages(str(image_dir), subset, r["methods"], stage_dir, args.repeats)

    print("k-means inertia")
    all_ids = sorted(i for ids in ids_by_format.values() for i in ids)
    r["inertia"] = measure_inertia(
        image_dir, all_ids[: args.inertia_images], find_method(r["methods"], kind="kmeans", k=5)[1]
    )

    print(f"snakemake --cores {args.cores} on {args.n_images} images")
    r["workflow"] = run_workflow(code, raw_config, work_dir, args.cores)
    print(f"  {r['workflow']['wall_s']:.1f} s, {r['workflow']['jobs']} jobs")
    print(f"Pool({args.cores}) loop on {args.n_images} images")
    r["loop"] = run_loop(image_dir, all_ids, r["methods"], work_dir, args.cores)
    print(f"  {r['loop']['wall_s']:.1f} s")

    r["loadavg_end"] = loadavg()
    section = render(r)
    write_section(args.out, section)
    print(section)
    print(f"wrote {args.out}")
    if not args.keep_outputs:
        remove_bulk(work_dir)


if __name__ == "__main__":
    main()
