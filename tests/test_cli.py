"""The segpipe command: run, methods, status, report."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from segpipe import cli
from segpipe.live import progress_line
from segpipe.methods import REGISTRY
from segpipe.status import progress_counts

from conftest import blob_folder, blobs_image, encode


def test_methods_lists_every_kind_with_its_meaning_and_defaults(capsys):
    assert cli.main(["methods"]) == 0
    text = capsys.readouterr().out
    for kind, spec in REGISTRY.items():
        assert f"{kind}: {spec.summary}" in text
        assert f"labels: {spec.labels}" in text
    assert cli.main(["methods", "superpixels"]) == 0
    text = capsys.readouterr().out
    assert "algorithm [slic, felzenszwalb] (default 'slic')" in text
    assert "n_segments (default 250)" in text
    assert cli.main(["methods", "blobs"]) == 2
    assert "unknown kind 'blobs'" in capsys.readouterr().err


def test_run_config_selects_methods_by_name_or_kind(tmp_path):
    images = blob_folder(tmp_path)
    config = cli.run_config(images, methods="otsu,watershed,region_growing")
    assert list(config["methods"]) == ["otsu", "watershed", "region_growing"]
    assert config["methods"]["region_growing"] == {"kind": "region_growing"}
    assert config["input_dir"] == str(images.resolve())
    with pytest.raises(cli.CommandError, match="'nope' is neither a method of the config"):
        cli.run_config(images, methods="otsu,nope")


def test_a_config_file_with_a_yaml_mistake_names_the_line(tmp_path):
    images = blob_folder(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods:\n  otsu: {kind: threshold\n  km: {kind: kmeans}\n")
    with pytest.raises(cli.CommandError, match=r"bad.yaml: not valid YAML \(line 3, column"):
        cli.run_config(images, config_file=bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("methods:\n  otsu: {kind: threshold, method: otsuu}\n")
    with pytest.raises(cli.CommandError, match="methods.otsu.method"):
        cli.run_config(images, config_file=wrong)


@pytest.mark.e2e
def test_run_status_and_report_of_one_experiment(tmp_path):
    images = blob_folder(tmp_path)
    out = tmp_path / "exp1"
    segpipe = [sys.executable, "-m", "segpipe.cli"]
    proc = subprocess.run([*segpipe, "run", str(images), "--methods", "otsu,watershed",
                           "--out", str(out), "-j", "2"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = yaml.safe_load((out / "segpipe-config.yaml").read_text())
    assert sorted(recorded["methods"]) == ["otsu", "watershed"]
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert len(metrics) == 6 and (metrics["status"] == "ok").all()
    assert not (out / "results/report").exists()  # figures only when asked for
    # The run ends with where its results are, its methods and what to do next.
    printed = proc.stdout.splitlines()
    assert printed[0] == f"segpipe: results in {out / 'results'}"
    table = [line.split() for line in printed if line.startswith("  ")]
    assert ["method", "kind", "ok", "errors", "s", "/", "image"] in table
    assert [row[:4] for row in table if row[0] in ("otsu", "watershed")] == [
        ["otsu", "threshold", "3", "0"], ["watershed", "watershed", "3", "0"]]
    assert f"  segpipe report {out}" in proc.stdout and f"  segpipe status {out}" in proc.stdout

    proc = subprocess.run([*segpipe, "status", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "3 images listed" in proc.stdout
    assert [line.split() for line in proc.stdout.splitlines()[2:]] == [
        ["otsu", "3", "0", "0"], ["watershed", "3", "0", "0"]]

    # Another folder into the same output folder would mix two experiments: refused.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.png").write_bytes(encode(blobs_image(9), ".png"))
    proc = subprocess.run([*segpipe, "run", str(other), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "use another --out" in proc.stderr

    tables = sorted((out / "results/metrics").rglob("*.parquet"))
    written = [p.stat().st_mtime_ns for p in tables]
    proc = subprocess.run([*segpipe, "report", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"report: {out / 'results/report.html'}"
    # Drawn from the tables: the overlays of both methods, nothing segmented again.
    assert {p.name for p in (out / "results/report/overlays").iterdir()} == {
        "otsu.png", "watershed.png"}
    assert [p.stat().st_mtime_ns for p in tables] == written
    # One page: the leaderboard inline, the 3 figures and 2 overlays embedded.
    page = (out / "results/report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 5
    assert '<td class="method">otsu</td>' in page and "<h3>watershed</h3>" in page
    assert "Not ranked: this run has no ground truth" in page


@pytest.mark.e2e
def test_run_with_report_packs_the_report_page_too(tmp_path):
    images = blob_folder(tmp_path)
    out = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "segpipe.cli", "run", str(images), "--methods",
                           "otsu", "--out", str(out), "-j", "2", "--report"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = out / "results/report.html"
    text = page.read_text(encoding="utf-8")
    assert text.count('<img src="data:image/png;base64,') == 4  # 3 figures, otsu's examples
    assert '<td class="method">otsu</td>' in text
    assert f"report: {page}" in proc.stdout.splitlines()
    assert "segpipe report" not in proc.stdout  # drawn already: not a next step


def test_progress_counts_finished_tables_and_running_logs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "exp"
    (out / "results/manifest").mkdir(parents=True)
    pq.write_table(pa.table({"image_id": [f"i{k}" for k in range(500)]}),
                   out / "results/manifest/images.parquet")
    logs = out / "logs/segment_shard/otsu"
    logs.mkdir(parents=True)
    (out / "results/metrics/otsu").mkdir(parents=True)
    (logs / "000000.log").write_text("x: finished 250/250 images (0 errors) in 3.0 s\n")
    pq.write_table(pa.table({"status": ["ok"] * 250}), out / "results/metrics/otsu/000000.parquet")
    (logs / "000001.log").write_text("otsu shard 000001: 40/250 images (0 errors), ...\n"
                                     "otsu shard 000001: 120/250 images (1 errors), ...\n")
    total, done = progress_counts(out)
    assert (total, done) == (500, {"otsu": 370})
    line = progress_line(total, done, 10.0, start_done=250)
    assert line.startswith("otsu 370/500 · 12.0 images/s · about 11 s left")


def test_clean_removes_a_runs_outputs_only(tmp_path, capsys):
    out = tmp_path / "exp"
    for sub in ("results/masks/otsu", "logs", ".snakemake"):
        (out / sub).mkdir(parents=True)
    (out / cli.RUN_CONFIG).write_text("input_dir: x\n")
    assert cli.main(["clean", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".segpipe.lock", cli.RUN_CONFIG]
    other = tmp_path / "not_a_run"
    (other / "results").mkdir(parents=True)
    assert cli.main(["clean", str(other)]) == 2
    assert (other / "results").exists() and "nothing removed" in capsys.readouterr().err


def test_a_dry_run_says_how_many_images_and_writes_no_record(tmp_path):
    images = blob_folder(tmp_path)
    (images / "notes.txt").write_text("x")
    out = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "segpipe.cli", "run", str(images), "--out",
                           str(out), "--methods", "otsu", "--dry-run"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 images in" in proc.stderr and "(1 other entries skipped), 1 methods: otsu" in proc.stderr
    assert not (out / cli.RUN_CONFIG).exists()


def test_local_runs_do_not_wait_for_a_slurm_controller(tmp_path, monkeypatch):
    # The SLURM plugin asks scontrol at every Snakemake start; a local run points it at an
    # empty config, which fails at once instead of waiting for a controller.
    monkeypatch.delenv("SLURM_CONF", raising=False)
    assert cli.snakemake_env(None, ["--keep-going"])["SLURM_CONF"] == os.devnull
    for profile, extra in (("slurm", []), (None, ["--executor", "slurm"]),
                           (None, ["-e", "slurm"]), (None, ["--executor=slurm"])):
        assert cli.uses_slurm(profile, extra)
        assert "SLURM_CONF" not in cli.snakemake_env(profile, extra)
    mine = tmp_path / "prof"
    mine.mkdir()
    (mine / "config.yaml").write_text("executor: local\ncores: 4\n")
    assert not cli.uses_slurm(str(mine), [])
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/mine.conf")
    assert cli.snakemake_env(None, [])["SLURM_CONF"] == "/etc/slurm/mine.conf"


def test_a_closed_pipe_is_not_a_traceback():
    """`segpipe methods | head -1`: the reader leaves early; the command ends quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "segpipe.cli", "methods"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the command prints (its imports take a while)
    stderr = proc.stderr.read()
    assert proc.wait() == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
