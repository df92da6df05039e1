"""Training inside the DAG: `segpipe run` trains, segments with the model by name and
scores it beside a classical method; `segpipe train` killed with SIGKILL resumes to the
same bytes."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml
from test_training import write_set

pytestmark = pytest.mark.e2e

TINY = {"base": "none", "backbone": "resnet18", "batch_size": 2, "rois_per_image": 16,
        "proposals_per_image": 50, "crop_size": 48, "val_fraction": 0.3, "device": "cpu",
        "lr": 0.01}


def segpipe(*args, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "segpipe.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, check=False, **kwargs)


def config_file(tmp_path, data, *, epochs, methods=None):
    model = {"input_dir": str(data / "images"), "ground_truth_dir": str(data / "masks"),
             "epochs": epochs, **TINY}
    config = {"train": {"tiny": model}, "methods": methods or {"otsu": {"kind": "threshold"}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_model_trained_in_the_dag_is_used_and_scored_by_name(tmp_path):
    data = write_set(tmp_path / "train", 8)
    test = write_set(tmp_path / "test", 3, start=100)
    methods = {"learned": {"kind": "maskrcnn", "weights": {"trained": "tiny"}, "device": "cpu",
                           "score_threshold": 0.05},
               "otsu": {"kind": "threshold", "method": "otsu"}}
    config = config_file(tmp_path, data, epochs=2, methods=methods)
    text = yaml.safe_load(config.read_text())
    text["ground_truth_dir"] = str(test / "masks")
    config.write_text(yaml.safe_dump(text))
    proc = segpipe("run", test / "images", "--config", config, "--out", tmp_path / "out", "-j", 2,
                   "--report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "out" / "results" / "models" / "tiny"
    assert {p.name for p in folder.iterdir()} == {"model.pt", "last.pt", "history.parquet",
                                                  "model.json"}
    methods_table = pq.read_table(tmp_path / "out" / "results" / "summary" / "methods.parquet")
    rows = {r["method"]: r for r in methods_table.to_pylist()}
    assert set(rows) == {"learned", "otsu"}
    assert rows["learned"]["coco_ap50"] is not None and 0 <= rows["learned"]["coco_ap50"] <= 1
    instances = pq.read_table(tmp_path / "out" / "results" / "summary" / "instances.parquet")
    learned = [r for r in instances.to_pylist() if r["method"] == "learned"]
    assert {r["class_name"] for r in learned} <= {"object"}
    report = tmp_path / "out" / "results" / "report"
    assert (report / "training.png").stat().st_size > 0
    assert "Training" in (tmp_path / "out" / "results" / "report.html").read_text()
    status = segpipe("status", tmp_path / "out")
    assert "model tiny: trained" in status.stdout, status.stdout


def test_segpipe_train_killed_with_sigkill_resumes_to_the_same_bytes(tmp_path):
    data = write_set(tmp_path / "train", 8)
    config = config_file(tmp_path, data, epochs=4)
    whole = segpipe("train", config, "--out", tmp_path / "whole", "-j", 1)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "model tiny: trained" in whole.stdout

    killed_out = tmp_path / "killed"
    last = killed_out / "results" / "models" / "tiny" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "segpipe.cli", "train", str(config), "--out",
                             str(killed_out), "-j", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), "training wrote no last.pt"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    model = killed_out / "results" / "models" / "tiny" / "model.pt"
    assert not model.exists(), "killed too late: training had finished"

    resumed = segpipe("train", config, "--out", killed_out, "-j", 1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (killed_out / "logs" / "train_maskrcnn" / "tiny.log").read_text()
    assert "resuming after epoch" in log
    whole_dir = tmp_path / "whole" / "results" / "models" / "tiny"
    assert model.read_bytes() == (whole_dir / "model.pt").read_bytes()
    drop = ["seconds"]
    assert pq.read_table(model.parent / "history.parquet").drop(drop).equals(
        pq.read_table(whole_dir / "history.parquet").drop(drop))
