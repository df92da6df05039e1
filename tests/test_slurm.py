"""The workflow on a real SLURM cluster through profiles/slurm, against a local run.

tools/local-slurm.sh starts a one-node cluster on localhost (Debian's slurmctld, slurmd and
munge, as root), whose node has a stand-in GPU, so the Mask R-CNN job's --gpus=1 request is
placed and runs (on the CPU, random weights, tiny images). The cluster is left running
after the tests (`tools/local-slurm.sh stop` stops it): with the SLURM client installed and
no controller answering, every Snakemake start would wait seconds for it.
"""

import importlib.util
import os
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, make_image_folder, run_snakemake, write_config
from segpipe.imageio import read_label_image

pytestmark = pytest.mark.e2e

TIMING = ["runtime_s", "decode_s", "segment_s", "write_s", "metrics_s"]


@pytest.fixture(scope="module")
def partition():
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    proc = subprocess.run([str(ROOT / "tools/local-slurm.sh"), "start"], capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode in (3, 4):  # not root, or no packages: this machine cannot host one
        pytest.skip(f"no local SLURM cluster here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, partition):
    tmp = tmp_path_factory.mktemp("slurm")
    make_image_folder(tmp / "images")
    methods = {
        "otsu": {"kind": "threshold"},
        "mr": {"kind": "maskrcnn", "model": "maskrcnn_resnet50_fpn", "weights": "none",
               "seed": 1, "score_threshold": 0.0, "max_detections": 3, "min_size": 64,
               "max_size": 96, "batch_size": 2},
    }
    # max_image_pixels sizes every job's memory request (checked below).
    config = write_config(tmp / "c.yaml", input_dir=str(tmp / "images"), shard_size=4,
                          methods=methods, max_image_pixels=10**6)
    local, cluster = tmp / "local", tmp / "cluster"
    local.mkdir()
    cluster.mkdir()
    run_snakemake(local, "--configfile", config)
    env = {"SBATCH_PARTITION": partition, "SEGPIPE_GPU_PARTITION": partition}
    proc = run_snakemake(
        cluster, "--configfile", config, "--workflow-profile", ROOT / "profiles/slurm",
        # the test node has 2 cores; the profile's 16 for the GPU job would never be placed
        "--set-threads", "segment_shard_maskrcnn=2", "--jobs", "4", env=env,
    )
    return {"local": local, "cluster": cluster, "log": proc.stdout + proc.stderr}


def read(work, name):
    return pd.read_parquet(work / f"results/summary/{name}.parquet")


def submitted(log):
    """SLURM job id by rule, from the executor's "submitted with SLURM jobid" lines."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", log)
    jobs = {}
    for job_id, rule in found:
        jobs.setdefault(rule, []).append(job_id)
    return jobs


def test_jobs_ran_through_slurm(runs):
    jobs = submitted(runs["log"])
    assert len(jobs["segment_shard"]) == 2 and len(jobs["segment_shard_maskrcnn"]) == 2
    assert {"list_images", "merge_metrics"} <= set(jobs)
    assert "write_sample_images" not in jobs and "fetch_maskrcnn_weights" not in jobs


def test_the_gpu_job_asked_for_and_got_a_gpu(runs):
    for job_id in submitted(runs["log"])["segment_shard_maskrcnn"]:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                               text=True).stdout
        assert "TresPerJob=gres:gpu:1" in shown and "JobState=COMPLETED" in shown, shown
        # the time and memory the rule states, not the plugin's defaults: 4000 MB, 500 per
        # thread (2 here), and 32 bytes per pixel of the largest image allowed (10^6)
        assert "TimeLimit=00:15:00" in shown and re.search(r"mem=(\d+)M", shown).group(1) == "5032"


def test_results_equal_a_local_run(runs):
    for name in ("metrics", "instances"):
        local, cluster = read(runs["local"], name), read(runs["cluster"], name)
        drop = [c for c in TIMING if c in local.columns]
        pd.testing.assert_frame_equal(local.drop(columns=drop), cluster.drop(columns=drop))
    metrics = read(runs["local"], "metrics")
    assert (metrics["status"] == "ok").sum() == 14 and (metrics["status"] == "error").sum() == 2
    for path in metrics["mask_path"].dropna():
        np.testing.assert_array_equal(read_label_image(runs["local"] / path),
                                      read_label_image(runs["cluster"] / path))


def test_profile_sizes_every_job_and_reads_the_partition_from_the_environment(runs, partition):
    assert "No wall time information given" not in runs["log"]
    # SBATCH_PARTITION reached the jobs through the profile (the test sets it only for
    # the cluster run, not in its own environment)
    assert f"slurm_partition={partition}," in runs["log"]
    assert os.environ.get("SBATCH_PARTITION") is None  # run_snakemake's env did not leak
    # A threshold job asks for 500 MB plus 4 bytes per pixel of the largest image allowed.
    for job_id in submitted(runs["log"])["segment_shard"]:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                               text=True).stdout
        assert re.search(r"mem=(\d+)M", shown).group(1) == "504", shown
