import os
import re
import sys
import time
from pathlib import Path

# In a clone the package lives in src/ beside the workflow. Putting it on the path here
# (and in PYTHONPATH, which script jobs and cluster jobs inherit) lets the workflow run
# from a plain clone, in the project's .venv or in a conda environment from envs/. The
# copy of the workflow inside an installed package has no src/: the package that carries
# it is the one imported, and nothing is added.
_SRC = Path(SEGPIPE_ROOT) / "src"
if (_SRC / "segpipe").is_dir():
    sys.path.insert(0, str(_SRC))
    # Set by the workflow itself, not asked of the user, so no envvars: directive.
    os.environ.update(
        PYTHONPATH=os.pathsep.join(
            p for p in (str(_SRC), os.environ.get("PYTHONPATH")) if p
        )
    )

from segpipe.config import load_schema, resolve_config
from segpipe.errors import ConfigError
from segpipe.layout import SAMPLE_DIR, WEIGHTS_DIR, Layout, log_path, weights_path
from segpipe.manifest import (
    folder_fingerprint,
    iter_files,
    read_shard,
    shard_names,
    shard_sizes,
)
from segpipe.maskrcnn.weights import (
    missing_weights_message,
    read_status,
    refresh_status,
    resolve_weights,
)
from segpipe.methods import get_method
from segpipe.planes import Reading
from segpipe.scheduling import coalesce_reevaluation_timers
from segpipe.tiles import Tiling, parse_tiling, tiled_job_bytes, tiled_settings

# Validate before any job runs; a mistake stops here with the key named, in one line:
# the exception's frames would only bury the message.
try:
    _resolved = resolve_config(
        config,
        load_schema(Path(SEGPIPE_ROOT) / "workflow/schemas/config.schema.yaml"),
        configfiles=workflow.overwrite_configfiles,
        command_line=workflow.config_settings.overwrite_config,
        generated_input_dir=SAMPLE_DIR,
    )
except ConfigError as _err:
    sys.exit(f"segpipe: {_err}")
config.clear()
config.update(_resolved)
# Every output of the run is under out_dir (default results/); segpipe.layout names them.
OUT = os.path.normpath(config["out_dir"])
LAYOUT = Layout(OUT)


def report_figures():
    """The report's files (rules in report.smk), drawn when config["report"] is set."""
    figures = [
        LAYOUT.report_page,
        LAYOUT.report("leaderboard.html"),
        *expand(LAYOUT.overlays(), method=METHODS),
    ]
    return (
        figures
        + ([LAYOUT.report("objects.png")] if config["measure_objects"] else [])
        + ([LAYOUT.report("training.png")] if TRAINED else [])
    )


METHODS = sorted(config["methods"])
SPECS = {m: get_method(config["methods"][m]["kind"]) for m in METHODS}
# Methods of the batch runner have their own rule, the one device (GPU) rule.
BATCHED = [m for m in METHODS if SPECS[m].runner == "batch"]
PER_IMAGE = [m for m in METHODS if m not in BATCHED]
# Models the run trains (train_maskrcnn jobs), by name, into results/models/{name}/.
TRAINED = sorted(config["train"])
# Model weights the jobs read, by method, for kinds that have them: {trained: NAME}
# is the trained model's model.pt, so the DAG trains before it segments.
WEIGHTS = {
    m: SPECS[m].weights(config["methods"][m], models_dir=LAYOUT.path("models"))
    for m in METHODS
    if SPECS[m].weights
}
# Weights training starts from (base: DEFAULT), fetched by the same rule.
TRAIN_BASES = {
    name: resolve_weights(config["train"][name]["model"], config["train"][name]["base"])
    for name in TRAINED
}
if workflow.is_main_process:
    # One pending scheduler wake-up at a time: without it the main process's CPU grows
    # with the square of the job count (see segpipe/scheduling.py).
    coalesce_reevaluation_timers()
    for _source in [*WEIGHTS.values(), *TRAIN_BASES.values()]:
        if _source.kind == "named":
            refresh_status(_source)


def one_of(names):
    """A wildcard regex matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    method=one_of(METHODS),
    shard=r"\d{6}",
    name=one_of(TRAINED),


def get_input_dir_dependency(wildcards):
    """The sample folder is written by a rule; a user's folder is just there."""
    return [SAMPLE_DIR] if config["input_dir"] == SAMPLE_DIR else []


def get_input_fingerprint(wildcards):
    """Changes when files are added to or removed from input_dir: re-lists the folder."""
    if config["input_dir"] == SAMPLE_DIR:
        return "samples"
    return folder_fingerprint(config["input_dir"])


def get_truth_settings(wildcards):
    """Ground-truth settings; a change re-scores (re-runs) every shard."""
    return {
        k: config[k]
        for k in (
            "ground_truth_dir",
            "ground_truth_kind",
            "ground_truth_pattern",
            "boundary_tolerance",
        )
    }


def get_reading_settings(wildcards):
    """Channel, slice, time point and intensity range; a change re-runs every shard."""
    return {k: config[k] for k in Reading.fields()}


def get_method_tiles(wildcards):
    """The method's tiles setting: its own, or the run's."""
    return tiled_settings(config, config["methods"][wildcards.method])


def get_method_settings(wildcards):
    """The method's resolved settings, kind included; a change re-runs its shards."""
    return config["methods"][wildcards.method]


def get_shards():
    """Shard names, once the listing checkpoint has run, from its manifest."""
    return shard_names(checkpoints.list_images.get().output[0])


def get_metrics_files(wildcards):
    return expand(LAYOUT.metrics(), method=METHODS, shard=get_shards())


def get_instance_files(wildcards):
    return expand(LAYOUT.instances(), method=BATCHED, shard=get_shards())


def get_object_files(wildcards):
    return expand(LAYOUT.objects(), method=METHODS, shard=get_shards())


def get_method_object_files(wildcards):
    return expand(
        LAYOUT.objects(),
        method=wildcards.method,
        shard=get_shards(),
    )


def get_method_metrics_files(wildcards):
    return expand(
        LAYOUT.metrics(),
        method=wildcards.method,
        shard=get_shards(),
    )


def get_method_instance_files(wildcards):
    if wildcards.method not in BATCHED:
        return []
    return expand(
        LAYOUT.instances(),
        method=wildcards.method,
        shard=get_shards(),
    )


def get_merge_inputs(wildcards):
    """Shard tables, Mask R-CNN instances and, with ground truth, whole-method scores."""
    inputs = {
        "metrics": get_metrics_files(wildcards),
        "instances": get_instance_files(wildcards),
    }
    if config["measure_objects"]:
        inputs["objects"] = get_object_files(wildcards)
    if config["ground_truth_dir"] is not None:
        inputs["scores"] = expand(LAYOUT.coco_ap(), method=METHODS)
    return inputs


def get_weights_input(wildcards):
    """Named weights: the fetch rule's record; a checkpoint path: the file itself."""
    source = WEIGHTS.get(wildcards.method)
    if source is None:
        return []
    if source.kind == "named":
        return source.status_path
    return [source.path] if source.kind in ("path", "trained") else []


def get_weights_url(wildcards):
    for source in [*WEIGHTS.values(), *TRAIN_BASES.values()]:
        if source.kind == "named" and source.path == weights_path(wildcards.file):
            return source.url
    raise ValueError(f"no configured method uses weights {wildcards.file}")


# Read once per run: a failed fetch gets a new value at each run, so it runs again.
_RUN_TOKEN = str(time.time_ns())


def get_weights_retry(wildcards):
    """A new value at every run while the last download failed and the file is missing
    (the fetch re-runs: a retry); empty once the weights are there."""
    path = weights_path(wildcards.file)
    status = read_status(f"{path}.status.json")
    if status is not None and not status["ok"] and not Path(path).exists():
        return _RUN_TOKEN
    return ""


def get_weights_path(wildcards, output):
    """The weights file sits beside the fetch rule's record of it."""
    return output[0].removesuffix(".status.json")


def report_missing_weights():
    """End the run by saying which weights file to put where, if a fetch failed."""
    messages = set()
    for source in [*WEIGHTS.values(), *TRAIN_BASES.values()]:
        status = read_status(source.status_path) if source.kind == "named" else None
        if status is not None and not status["ok"]:
            messages.add(missing_weights_message(status))
    for message in sorted(messages):
        print(f"\nsegpipe: {message}\n", file=sys.stderr)
    return bool(messages)


# Scheduler sizing: what a job asks a cluster for (SLURM's --time in minutes and --mem in
# MB; local runs ignore both). Generous bounds on the measured costs in docs/benchmarks.md,
# doubled at each retry, so a job killed for time or memory comes back with more.
SECONDS_PER_IMAGE = {"image": 2.0, "batch_gpu": 1.0, "batch_cpu": 15.0}


def _minutes(seconds, attempt, least=10):
    return attempt * max(least, int(seconds / 60) + 5)


def _images_in(shard_file):
    """The shard's image count (shard_size may be auto).

    From the manifest's shard column, read once per version of the file (parsing 4,000
    shard files of 250 to 5,000 entries at every start costs seconds at 10^6 images),
    opened by path: asking the checkpoint for it in a resource function fails inside
    SLURM job steps (Snakemake 9.27: "'int' object has no attribute 'constrain'"). The
    shard's own list, the job's input, where the manifest cannot be read.
    """
    try:
        return shard_sizes(LAYOUT.manifest)[Path(shard_file).stem]
    except (OSError, KeyError):
        return len(read_shard(shard_file))


def get_segment_runtime(wildcards, input, attempt):
    """Minutes for one per-image shard: its images at 2 s each (1 MP: < 0.1 s)."""
    return _minutes(_images_in(input.shard) * SECONDS_PER_IMAGE["image"], attempt)


def get_batch_runtime(wildcards, input, attempt):
    """Minutes for one batch shard (Mask R-CNN's rate), on a GPU or (device: cpu) on the
    CPU."""
    on_cpu = config["methods"][wildcards.method].get("device") == "cpu"
    per_image = SECONDS_PER_IMAGE["batch_cpu" if on_cpu else "batch_gpu"]
    return _minutes(_images_in(input.shard) * per_image, attempt, least=15)


# Per pixel of the largest image allowed, on top of a method's own peak: ground-truth
# scoring (label maps, matching) when there is ground truth.
TRUTH_BYTES_PER_PIXEL = 16


def _image_mb(method):
    """MB one image of max_image_pixels may take while a job segments and scores it."""
    per_pixel = get_method(config["methods"][method]["kind"]).bytes_per_pixel
    if config["ground_truth_dir"] is not None:
        per_pixel += TRUTH_BYTES_PER_PIXEL
    return int(per_pixel * config["max_image_pixels"] / 1e6)


def get_segment_mem_mb(wildcards, threads, attempt):
    """One image at a time: the interpreter and libraries, then the largest image allowed
    (max_image_pixels) at the method's bytes per pixel: by design, not by luck. Under a
    fixed tiles setting, the tiles in flight on the job's threads instead
    (segpipe.tiles.tiled_job_bytes); tiles: auto tiles what would not fit this."""
    tiling = parse_tiling(get_method_tiles(wildcards))
    spec = get_method(config["methods"][wildcards.method]["kind"])
    if isinstance(tiling, Tiling) and spec.tiled is not None:
        needed = tiled_job_bytes(
            tiling,
            bytes_per_pixel=spec.bytes_per_pixel,
            threads=threads,
            whole_pixels=config["max_image_pixels"],
            truth=config["ground_truth_dir"] is not None,
        )
        return (500 + int(needed / 1e6)) * attempt
    return (500 + _image_mb(wildcards.method)) * attempt


def get_batch_mem_mb(wildcards, threads, attempt):
    """The model and a bounded queue of images in the main process, plus one image per
    loader worker and writer process (each can hold one of the largest allowed)."""
    return (4000 + 500 * threads + _image_mb(wildcards.method)) * attempt


def get_out_dir(wildcards):
    """The run's out_dir: where a job's layout (masks, edge maps) is rooted, and where the
    listing removes the outputs of shards that are gone."""
    return OUT


def model_outputs(name):
    """What train_maskrcnn writes for model ``name`` (last.pt too, undeclared: a job's
    outputs are deleted before it runs, and a killed training resumes from it)."""
    folder = LAYOUT.model(name)
    return {
        "model": f"{folder}/model.pt",
        "history": f"{folder}/history.parquet",
        "card": f"{folder}/model.json",
    }


def get_train_inputs(wildcards):
    """The base weights: the fetch rule's record (DEFAULT) or the checkpoint file."""
    source = TRAIN_BASES[wildcards.name]
    if source.kind == "named":
        return [source.status_path]
    return [source.path] if source.kind == "path" else []


def get_train_settings(wildcards):
    """The model's resolved settings; a change retrains it."""
    return config["train"][wildcards.name]


def get_train_fingerprint(wildcards):
    """Changes when images are added to or removed from the model's folders: retrains."""
    settings = config["train"][wildcards.name]
    folders = [settings["input_dir"], settings["ground_truth_dir"]]
    folders += [settings["val_dir"], settings["val_ground_truth_dir"]]
    return [folder_fingerprint(f) if Path(f).is_dir() else f for f in folders if f]


def get_train_gpus(wildcards):
    """One GPU, unless the model trains on the CPU."""
    return 0 if config["train"][wildcards.name]["device"] == "cpu" else 1


def get_train_runtime(wildcards, attempt):
    """Minutes: epochs x images at 1 s each on a GPU, 10 s on the CPU, at least an hour,
    doubled at each retry. Generous guesses: the one measured rate is a ResNet-18 on
    160-px images, about 0.33 s per image and epoch on 2 CPU cores (docs/benchmarks.md,
    "Training on synthetic ellipses"); ResNet-50 and GPUs are unmeasured."""
    settings = config["train"][wildcards.name]
    per_image = 10.0 if settings["device"] == "cpu" else 1.0
    images = sum(1 for _ in iter_files(settings["input_dir"]))
    return _minutes(settings["epochs"] * images * per_image, attempt, least=60)


def get_train_mem_mb(wildcards, threads, attempt):
    """8 GB for the model, optimiser and a batch of crops (a guess for a ResNet-50 on
    512-px crops; unmeasured without a GPU), 500 MB per thread, and one image of the
    largest allowed at 8 bytes a pixel."""
    return (8000 + 500 * threads + _image_mb_of(8)) * attempt


def _image_mb_of(bytes_per_pixel):
    return int(bytes_per_pixel * config["max_image_pixels"] / 1e6)
