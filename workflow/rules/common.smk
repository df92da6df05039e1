import os
import sys
from pathlib import Path

# The package lives in src/ beside the workflow. Putting it on the path here (and in
# PYTHONPATH, which script jobs and cluster jobs inherit) lets the workflow run from a
# plain clone, in the project's .venv or in a conda environment from envs/.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# Set by the workflow itself, not asked of the user, so no envvars: directive.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
)

from segpipe.config import load_schema, resolve_config
from segpipe.manifest import folder_fingerprint, read_shards

SAMPLE_DIR = "resources/sample_images"
MANIFEST = "results/manifest/images.parquet"
SHARD_DIR = "results/manifest/shards"

# Validate before any job runs; a mistake stops here with the key named.
_resolved = resolve_config(
    config,
    load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"),
    configfiles=workflow.overwrite_configfiles,
    generated_input_dir=SAMPLE_DIR,
)
config.clear()
config.update(_resolved)
METHODS = sorted(config["methods"])


wildcard_constraints:
    method="|".join(METHODS),
    shard=r"\d{6}",


def get_input_dir_dependency(wildcards):
    """The sample folder is written by a rule; a user's folder is just there."""
    return [SAMPLE_DIR] if config["input_dir"] == SAMPLE_DIR else []


def get_input_fingerprint(wildcards):
    """Changes when files are added to or removed from input_dir: re-lists the folder."""
    if config["input_dir"] == SAMPLE_DIR:
        return "samples"
    return folder_fingerprint(config["input_dir"])


def get_method_settings(wildcards):
    """The method's resolved settings, kind included; a change re-runs its shards."""
    return config["methods"][wildcards.method]


def get_shards():
    """Shard names, once the listing checkpoint has run."""
    checkpoints.list_images.get()
    return sorted(read_shards(SHARD_DIR))


def get_metrics_files(wildcards):
    return expand(
        "results/metrics/{method}/{shard}.parquet", method=METHODS, shard=get_shards()
    )
