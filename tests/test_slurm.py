"""The workflow on a real SLURM cluster through profiles/slurm, against a local run.

tools/local-slurm.sh starts a one-node cluster on localhost (Debian's slurmctld, slurmd and
munge, as root) in a folder of its own, here a temporary one: its configuration, state,
logs, pid files and munge key all live there, and SLURM's commands and the Snakemake SLURM
executor reach it only through the ``SLURM_CONF`` these tests give the processes they start.
Its node has a stand-in GPU, so the Mask R-CNN job's --gpus=1 request is placed and runs (on
the CPU, random weights, tiny images). The cluster is stopped after the tests, failed or
not, and the stop is checked: none of its daemons may be left running.
"""

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segpipe.imageio import read_label_image

from conftest import ROOT, make_image_folder, run_snakemake, write_config

pytestmark = pytest.mark.e2e

TIMING = ["runtime_s", "decode_s", "segment_s", "write_s", "metrics_s"]
# Where a machine-wide SLURM or munge keeps its configuration and state: the local cluster
# must neither write these folders nor create any of these paths.
SYSTEM_FOLDERS = ["/etc/slurm", "/etc/munge"]
SYSTEM_PATHS = ["/etc/slurm/slurm.conf", "/etc/slurm/gres.conf", "/run/slurm", "/run/munge",
                "/var/spool/slurm", "/var/spool/slurmctld", "/var/spool/slurmd",
                "/var/lib/slurm/slurmctld/clustername", "/var/log/slurm/slurmctld.log",
                "/var/log/slurm/slurmd.log", "/var/log/munge/munged.log"]


def local_slurm(action, folder):
    """Run ``tools/local-slurm.sh ACTION FOLDER``; return the finished process."""
    return subprocess.run([str(ROOT / "tools/local-slurm.sh"), action, str(folder)], check=False,
                          capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def daemon_pids(folder):
    """Pid of each daemon of the cluster in ``folder``, read from its pid files there."""
    files = {"munged": "munge/munged.pid", "slurmctld": "run/slurmctld.pid",
             "slurmd": "run/slurmd.pid"}
    return {name: int((folder / rel).read_text()) for name, rel in files.items()
            if (folder / rel).is_file()}


def alive(pid, name=None):
    """Whether process ``pid`` runs (a zombie does not), called ``name`` if given."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = re.match(r"\d+ \((.*)\) (\S)", stat, re.DOTALL).groups()
    return state != "Z" and name in (None, comm)


def processes_of(folder):
    """Command lines of the live processes that name ``folder`` in theirs."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if f"{folder}/".encode() in cmdline and alive(proc.name):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def system_state():
    """What the machine-wide SLURM and munge folders hold, to see that nothing changed."""
    state = {path: os.path.lexists(path) for path in SYSTEM_PATHS}
    for top in SYSTEM_FOLDERS:
        for folder, dirs, files in os.walk(top):
            for name in [".", *dirs, *files]:
                info = os.lstat(os.path.join(folder, name))
                state[os.path.join(folder, name)] = (info.st_mtime_ns, info.st_size)
    return state


def slurm(cluster, *args):
    """Output of a SLURM command run against ``cluster``."""
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **cluster["env"]})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def config_value(conf, key):
    return re.search(rf"^{key}=(.*)$", Path(conf).read_text(), re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """A local cluster in a temporary folder; stopped at the end, even after failures."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    folder = tmp_path_factory.mktemp("slurm")
    started = {}

    def stop():
        proc = local_slurm("stop", folder)
        left = {name: pid for name, pid in started.items() if alive(pid, name)}
        assert proc.returncode == 0 and not left, f"left running: {left}\n{proc.stderr}"

    # Registered before the start: a start that fails half-way is cleaned up too.
    request.addfinalizer(stop)
    before = system_state()
    proc = local_slurm("start", folder)
    if proc.returncode in (3, 4):  # not root, or no packages: this machine cannot host one
        pytest.skip(f"no local SLURM cluster here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    started.update(daemon_pids(folder))
    env = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    return {"folder": folder, "env": env, "pids": started, "system_before": before,
            "start_log": proc.stderr}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cluster):
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
    local, on_slurm = tmp / "local", tmp / "cluster"
    local.mkdir()
    on_slurm.mkdir()
    # As `segpipe run` does for a local run: a SLURM configured on the machine (with a
    # controller that may not answer) is none of its business.
    run_snakemake(local, "--configfile", config, env={"SLURM_CONF": os.devnull})
    partition = cluster["env"]["SBATCH_PARTITION"]
    # SLURM_CONF and SBATCH_PARTITION from the start; the jobs inherit them through sbatch.
    env = {**cluster["env"], "SEGPIPE_GPU_PARTITION": partition}
    proc = run_snakemake(
        on_slurm, "--configfile", config, "--workflow-profile", ROOT / "profiles/slurm",
        # the test node has 2 cores; the profile's 16 for the GPU job would never be placed
        "--set-threads", "segment_shard_batch=2", "--jobs", "4", env=env,
    )
    return {"local": local, "cluster": on_slurm, "log": proc.stdout + proc.stderr}


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
    assert len(jobs["segment_shard"]) == 2 and len(jobs["segment_shard_batch"]) == 2
    assert {"list_images", "merge_metrics"} <= set(jobs)
    assert "write_sample_images" not in jobs and "fetch_maskrcnn_weights" not in jobs


def test_the_gpu_job_asked_for_and_got_a_gpu(runs, cluster):
    for job_id in submitted(runs["log"])["segment_shard_batch"]:
        shown = slurm(cluster, "scontrol", "show", "job", job_id)
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


def test_profile_sizes_every_job_and_reads_the_partition_from_the_environment(runs, cluster):
    partition = cluster["env"]["SBATCH_PARTITION"]
    assert "No wall time information given" not in runs["log"]
    # SBATCH_PARTITION reached the jobs through the profile (the test sets it only for
    # the cluster run, not in its own environment)
    assert f"slurm_partition={partition}," in runs["log"]
    # run_snakemake's env did not leak
    assert os.environ.get("SBATCH_PARTITION") is None and os.environ.get("SLURM_CONF") is None
    # A threshold job asks for 500 MB plus 4 bytes per pixel of the largest image allowed.
    for job_id in submitted(runs["log"])["segment_shard"]:
        shown = slurm(cluster, "scontrol", "show", "job", job_id)
        assert re.search(r"mem=(\d+)M", shown).group(1) == "504", shown


def test_the_cluster_lives_in_its_folder(cluster):
    folder = cluster["folder"]
    assert cluster["env"]["SLURM_CONF"] == str(folder / "etc/slurm.conf")
    shown = slurm(cluster, "scontrol", "show", "config")
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdPidFile",
                "SlurmctldLogFile", "SlurmdLogFile"):
        assert re.search(rf"^{key}\s*= {re.escape(str(folder))}/", shown, re.MULTILINE), key
    assert re.search(rf"^AuthInfo\s*= socket={re.escape(str(folder))}/munge/", shown, re.MULTILINE)
    assert re.search(r"^ClusterName\s*= segpipe-local$", shown, re.MULTILINE)
    assert set(cluster["pids"]) == {"munged", "slurmctld", "slurmd"}
    assert all(alive(pid, name) for name, pid in cluster["pids"].items())
    if "installing" in cluster["start_log"]:
        pytest.skip("this start installed the SLURM packages, which write under /etc")
    assert system_state() == cluster["system_before"]


def test_a_second_cluster_starts_and_stops_beside_the_first(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    try:
        proc = local_slurm("start", folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
        second = {"env": dict(line.split("=", 1) for line in proc.stdout.splitlines())}
        assert config_value(second["env"]["SLURM_CONF"], "SlurmctldPort") != config_value(
            cluster["env"]["SLURM_CONF"], "SlurmctldPort")
        assert "idle" in slurm(second, "sinfo", "-h", "-o", "%T")
        pids = daemon_pids(folder)
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
    finally:
        stopped = local_slurm("stop", folder)
    assert stopped.returncode == 0, stopped.stderr
    # stopped: every daemon it started, nothing of its folder, and nothing of the first
    assert not any(alive(pid, name) for name, pid in pids.items())
    assert processes_of(folder) == []
    assert all(alive(pid, name) for name, pid in cluster["pids"].items())
    assert "UP" in slurm(cluster, "scontrol", "ping")


def test_a_failed_start_prints_the_cause_and_leaves_nothing_running(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    # What the newcomer met: state of another cluster where slurmctld keeps its own.
    (folder / "state").mkdir()
    (folder / "state/clustername").write_text("another-cluster\n")
    try:
        proc = local_slurm("start", folder)
    finally:
        left = processes_of(folder)
        local_slurm("stop", folder)
    assert proc.returncode == 5
    assert "started munged" in proc.stderr  # so there was a daemon to stop
    assert "slurmctld did not start" in proc.stderr
    assert "CLUSTER NAME MISMATCH" in proc.stderr  # from slurmctld.log, shown on screen
    assert left == []
