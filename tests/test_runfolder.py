"""One config per output folder: its lock, its recorded config, clean and --force remove
only what segpipe wrote."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segpipe import cli
from segpipe.cleanup import remove_run_outputs
from segpipe.config import load_schema
from segpipe.layout import LOG_RULES, Layout
from segpipe.runfolder import (
    LOCK_FILE,
    FolderBusy,
    config_changes,
    holds_results,
    lock_folder,
    remove_stale,
)

from conftest import blob_folder, blobs_image, encode

SEGPIPE = [sys.executable, "-m", "segpipe.cli"]
SCHEMA = load_schema(cli.SCHEMA)


def fake_results(out_dir, methods=("otsu", "km")):
    """A results tree as a run writes it, for two shards of each method."""
    layout = Layout(str(out_dir))
    files = [layout.manifest, layout.skipped, layout.shard_file("000000"),
             layout.summary("metrics.parquet"), layout.summary("methods.parquet"),
             layout.report("leaderboard.html"), layout.report_page]
    for method in methods:
        for shard in ("000000", "000001"):
            files += [layout.metrics(method, shard), layout.objects(method, shard),
                      f"{layout.masks(method, shard)}/000000-a.png",
                      f"{layout.masks(method, shard)}/000001-b c.png".replace(" ", "_")]
        files += [layout.coco_ap(method), layout.overlays(method)]
    for path in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(b"x")
    return layout, files


def all_files(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


def test_a_busy_folder_is_refused_naming_the_holder(tmp_path):
    busy = rf"exp is in use by segpipe run \(pid {os.getpid()},"
    with lock_folder(tmp_path / "exp", what="run"), pytest.raises(FolderBusy, match=busy), \
            lock_folder(tmp_path / "exp"):
        pass
    with lock_folder(tmp_path / "exp", what="clean"):  # free again once released
        pass


def test_the_lock_lives_as_long_as_the_child_that_was_given_it(tmp_path):
    """Snakemake gets the lock's descriptor: killing `segpipe run` alone frees nothing."""
    with lock_folder(tmp_path) as fd:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 pass_fds=(fd,))
    try:
        with pytest.raises(FolderBusy), lock_folder(tmp_path):
            pass
    finally:
        child.kill()
        child.wait()
    with lock_folder(tmp_path):
        pass


def test_config_changes_tell_what_is_stale():
    base = {"input_dir": "/d", "methods": {"otsu": {"kind": "threshold"},
                                           "km": {"kind": "kmeans", "k": [2, 3]}}}
    same = {"input_dir": "/d", "shard_size": "auto", "report": True,
            "methods": {"otsu": {"kind": "threshold", "method": "otsu"},
                        "km_k2": {"kind": "kmeans", "k": 2}, "km_k3": {"kind": "kmeans", "k": 3}}}
    change = config_changes(base, same, SCHEMA)
    # Defaults spelled out and a sweep written as its methods are the same experiment.
    assert change.keys == ["report"] and not change.matters
    change = config_changes(base, {**base, "methods": {"otsu": {"kind": "threshold",
                                                                "method": "mean"}}}, SCHEMA)
    assert change.keys == ["methods.otsu.method", "methods.km_k2 (only in the recorded config)",
                           "methods.km_k3 (only in the recorded config)"]
    assert change.methods == ["km_k2", "km_k3", "otsu"] and change.summary
    assert not change.everything
    added = config_changes(base, {**base, "methods": {**base["methods"],
                                                      "ws": {"kind": "watershed"}}}, SCHEMA)
    assert added.keys == ["methods.ws (new)"] and added.methods == [] and added.summary
    ranking = config_changes(base, {**base, "primary_metric": "dice"}, SCHEMA)
    assert ranking.summary and not ranking.methods and not ranking.everything
    for key, value in (("shard_size", 10), ("input_dir", "/e"), ("channel", 1),
                       ("ground_truth_dir", "/gt"), ("mask_format", "tiff")):
        assert config_changes(base, {**base, key: value}, SCHEMA).everything, key


def test_remove_stale_removes_the_changed_methods_and_the_summary_only(tmp_path):
    layout, _ = fake_results(tmp_path / "results")
    (tmp_path / "results/masks/otsu/000000/notes.txt").write_text("mine")
    (tmp_path / "results/summary/mine.csv").write_text("mine")
    change = config_changes({"methods": {"otsu": {"kind": "threshold"}, "km": {"kind": "kmeans"}}},
                            {"methods": {"otsu": {"kind": "threshold"},
                                         "km": {"kind": "kmeans", "k": 5}}}, SCHEMA)
    removal = remove_stale(layout, change)
    left = all_files(tmp_path / "results")
    assert not [f for f in left if f.split("/")[1:2] == ["km"] or f.startswith("evaluation/km")
                or f in ("summary/metrics.parquet", "summary/methods.parquet")]
    assert "report.html" not in left and "report/leaderboard.html" not in left
    assert "masks/otsu/000001/000000-a.png" in left and "manifest/images.parquet" in left
    assert "masks/otsu/000000/notes.txt" in left and "summary/mine.csv" in left
    # Named as left: the foreign files in what it cleaned, not those of untouched methods.
    assert removal.foreign == [str(tmp_path / "results/summary/mine.csv")]


def test_clean_removes_what_segpipe_wrote_and_names_the_rest(tmp_path, capsys):
    out = tmp_path / "exp"
    _, files = fake_results(out / "results")
    (out / cli.RUN_CONFIG).write_text("input_dir: x\n")
    for rule in LOG_RULES[:3]:
        (out / "logs" / rule).mkdir(parents=True)
        (out / "logs" / rule / "000000.log").write_text("log")
    (out / "logs/list_images.log").write_text("log")
    (out / "logs/mine.txt").write_text("mine")
    (out / ".snakemake/metadata").mkdir(parents=True)
    (out / "resources/weights").mkdir(parents=True)
    (out / "resources/weights/w.pth").write_bytes(b"w")
    (out / "results/masks/otsu/000000/notes.txt").write_text("mine")
    (out / "results/masks/otsu/000000/link.png").symlink_to(out / "resources/weights/w.pth")
    assert cli.main(["clean", str(out)]) == 0
    assert all_files(out) == [".segpipe.lock", "logs/mine.txt", "resources/weights/w.pth",
                              "results/masks/otsu/000000/link.png",
                              "results/masks/otsu/000000/notes.txt", cli.RUN_CONFIG]
    assert (out / "results/masks/otsu/000000/link.png").is_symlink()
    assert not (out / "results/summary").exists() and not (out / ".snakemake").exists()
    printed = capsys.readouterr().out
    assert f"removed {len(files) + 4} files segpipe wrote in {out / 'results'}" in printed
    assert "left 3 files segpipe did not write" in printed and "notes.txt" in printed


def test_clean_refuses_an_out_dir_outside_the_run_folder_unless_told(tmp_path, capsys):
    out, victim = tmp_path / "exp", tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("was here before")
    out.mkdir()
    (out / cli.RUN_CONFIG).write_text("out_dir: ../victim\n")
    fake_results(victim)
    before = all_files(victim)
    assert cli.main(["clean", str(out)]) == 2
    assert "not inside it: nothing removed" in capsys.readouterr().err
    assert all_files(victim) == before
    assert cli.main(["clean", "--outside", str(out)]) == 0
    assert all_files(victim) == ["keep.txt"]
    assert "keep.txt" in capsys.readouterr().out


def test_clean_of_a_busy_folder_removes_nothing(tmp_path, capsys):
    out = tmp_path / "exp"
    fake_results(out / "results")
    (out / cli.RUN_CONFIG).write_text("input_dir: x\n")
    with lock_folder(out, what="run"):
        before = all_files(out)
        assert cli.main(["clean", str(out)]) == 2
    assert "in use by segpipe run" in capsys.readouterr().err
    assert all_files(out) == before


def test_a_shard_cleanup_keeps_files_segpipe_did_not_write(tmp_path):
    layout, _ = fake_results(tmp_path / "results")
    (tmp_path / "results/masks/km/000001/keep.txt").write_text("mine")
    removal = remove_run_outputs(tmp_path, layout.out_dir)
    assert all_files(tmp_path) == ["results/masks/km/000001/keep.txt"]
    assert removal.foreign == [str(tmp_path / "results/masks/km/000001/keep.txt")]
    assert not holds_results(layout)


def test_every_log_of_the_workflow_is_under_a_known_rule():
    rules = Path(cli.ROOT, "workflow/rules")
    named = set()
    for text in (p.read_text() for p in rules.glob("*.smk")):
        for part in text.split("log_path(")[1:]:
            named.add(part.split('"')[1].removesuffix(".log"))
    assert named == set(LOG_RULES)


# --- end to end: the command ---------------------------------------------------------

def run(*args, **kwargs):
    return subprocess.run([*SEGPIPE, *map(str, args)], capture_output=True, text=True,
                          check=False, **kwargs)


def config_file(path, methods):
    path.write_text(yaml.safe_dump({"methods": methods}))
    return path


@pytest.mark.e2e
def test_a_second_config_into_a_busy_folder_is_refused_and_the_first_run_keeps_its_own(tmp_path):
    images = blob_folder(tmp_path, n=4)
    a = config_file(tmp_path / "a.yaml", {"a_otsu": {"kind": "threshold"}})
    b = config_file(tmp_path / "b.yaml", {"b_mean": {"kind": "threshold", "method": "mean"}})
    out = tmp_path / "exp"
    first = subprocess.Popen([*SEGPIPE, "run", str(images), "--config", str(a), "--out",
                              str(out), "-j", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / LOCK_FILE).exists() or not (out / LOCK_FILE).read_text():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = run("run", images, "--config", b, "--out", out, "-j", "1")
    assert second.returncode == 2
    assert f"{out} is in use by segpipe run (pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    # It touched nothing: every file the first run had then is as it was.
    assert {p: p.stat().st_mtime_ns for p in before if p.exists()} == before
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    recorded = yaml.safe_load((out / cli.RUN_CONFIG).read_text())
    assert list(recorded["methods"]) == ["a_otsu"]
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert set(metrics["method"]) == {"a_otsu"} and (metrics["status"] == "ok").all()


@pytest.mark.e2e
def test_another_config_is_refused_naming_the_keys_and_force_redoes_what_it_changes(tmp_path):
    images = blob_folder(tmp_path)
    a = config_file(tmp_path / "a.yaml", {"otsu": {"kind": "threshold"},
                                         "km": {"kind": "kmeans", "k": 2}})
    out = tmp_path / "exp"
    proc = run("run", images, "--config", a, "--out", out, "-j", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    otsu_masks = {p: p.stat().st_mtime_ns for p in (out / "results/masks/otsu").rglob("*.png")}
    (out / "results/masks/km/000000/notes.txt").write_text("mine")
    recorded = (out / cli.RUN_CONFIG).read_bytes()

    b = config_file(tmp_path / "b.yaml", {"otsu": {"kind": "threshold"},
                                         "km": {"kind": "kmeans", "k": 3}})
    proc = run("run", images, "--config", b, "--out", out, "-j", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds the results of another config (it differs in methods.km.k)" in proc.stderr
    assert "--force" in proc.stderr
    assert (out / cli.RUN_CONFIG).read_bytes() == recorded
    # The same config again, or with only the report switched on, is a rerun.
    proc = run("run", images, "--config", a, "--out", out, "-j", "2", "--report")
    assert proc.returncode == 0, proc.stderr[-3000:]

    proc = run("run", images, "--config", b, "--out", out, "-j", "2", "--force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--force: recorded the new config (methods.km.k" in proc.stderr
    assert "notes.txt" in proc.stderr  # left, and named
    assert yaml.safe_load((out / cli.RUN_CONFIG).read_text())["methods"]["km"]["k"] == 3
    # otsu's masks were not stale: kept, not rewritten; km's were made again with k=3.
    assert {p: p.stat().st_mtime_ns for p in otsu_masks} == otsu_masks
    assert (out / "results/masks/km/000000/notes.txt").exists()
    objects = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert (objects[objects["method"] == "km"]["n_labels"] <= 3).all()
    status = run("status", out)
    assert [line.split()[0] for line in status.stdout.splitlines()[2:]] == ["km", "otsu"]


@pytest.mark.e2e
def test_clean_after_a_run_into_an_out_dir_outside_keeps_what_was_there(tmp_path):
    images = blob_folder(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("was here before the run")
    (victim / "masks").mkdir()
    (victim / "masks/mine.png").write_bytes(b"mine")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"out_dir": "../victim",
                                   "methods": {"otsu": {"kind": "threshold"}}}))
    out = tmp_path / "exp"
    proc = run("run", images, "--config", cfg, "--out", out, "-j", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (victim / "summary/metrics.parquet").exists()
    assert run("clean", out).returncode == 2
    proc = run("clean", "--outside", out)
    assert proc.returncode == 0, proc.stderr
    assert all_files(victim) == ["keep.txt", "masks/mine.png"]
    assert all_files(out) == [LOCK_FILE, cli.RUN_CONFIG]


@pytest.mark.e2e
def test_a_killed_segpipe_run_resumes_to_the_same_results_without_unlocking(tmp_path):
    import signal

    from conftest import assert_same_outputs

    images = blob_folder(tmp_path, n=12)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"shard_size": 3, "methods": {
        "otsu": {"kind": "threshold"}, "km": {"kind": "kmeans", "k": 3}}}))
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    proc = run("run", images, "--config", cfg, "--out", clean, "-j", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = subprocess.Popen([*SEGPIPE, "run", str(images), "--config", str(cfg), "--out",
                              str(killed), "-j", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((killed / "results/metrics").glob("*/*.parquet")):
        assert first.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # segpipe, Snakemake and its jobs, as a node failure
    first.wait()
    assert not (killed / "results/summary/metrics.parquet").exists()
    proc = run("run", images, "--config", cfg, "--out", killed, "-j", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "removing the lock a killed run left" in proc.stderr
    assert_same_outputs(clean / "results", killed / "results")


HOSTILE_NAMES = ["$(touch PWNED).png", "`touch PWNED`.png", "a;touch PWNED;.png",
                 "x && touch PWNED.png", "a|touch PWNED.png", "it's.png", 'say "hi".png',
                 "-rf.png", "--help.png", "*.png", "?.png", "[ab].png", "a b.png",
                 "new\nline.png", "tab\there.png", "{a,b}.png", "~user.png", "$HOME.png",
                 "a>b.png", "100%.png", "é ü 漢.png", "#hash.png", "!bang.png"]


@pytest.mark.e2e
def test_file_names_with_shell_characters_are_segmented_and_run_nothing(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for k, name in enumerate(HOSTILE_NAMES):
        (images / name).write_bytes(encode(blobs_image(k), ".png"))
    out = tmp_path / "exp"
    proc = run("run", images, "--methods", "otsu", "--out", out, "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert sorted(metrics["image_id"]) == sorted(HOSTILE_NAMES)
    assert (metrics["status"] == "ok").all()
    assert all((out / p).is_file() for p in metrics["mask_path"])
    assert not [p for p in tmp_path.rglob("PWNED*")]
    assert not Path("PWNED").exists()


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    images = blob_folder(tmp_path)
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert cli.main(["run", str(images), "--methods", "otsu", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err == (f"segpipe: cannot write {tmp_path / 'x' / LOCK_FILE}: read-only file system "
                   "(make the folder writable or choose another --out / out_dir)\n")
