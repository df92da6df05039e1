"""End-to-end runs of the Snakemake workflow on tiny generated image folders."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from segpipe.imageio import read_image, read_label_image
from segpipe.methods import REGISTRY

from conftest import (
    ROOT,
    assert_same_outputs,
    blobs_image,
    encode,
    make_image_folder,
    run_snakemake,
    write_config,
)

pytestmark = pytest.mark.e2e

# Downloads go to a closed local port, so no test depends on (or uses) the network.
OFFLINE = {"SEGPIPE_WEIGHTS_URL_BASE": "http://127.0.0.1:9/"}

METHODS = {
    "otsu": {"kind": "threshold"},
    "dark": {"kind": "threshold", "method": "value", "value": 0.5, "foreground": "dark"},
    "bands": {"kind": "multi_threshold", "classes": 3},
    "lap": {"kind": "edges", "operator": "laplace"},
    "km": {"kind": "kmeans", "k": 3},
    "ws": {"kind": "watershed", "foreground": "bright", "min_size": 8},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One workflow run over the fixture folder, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("run")
    images = tmp / "images"
    make_image_folder(images)
    cfg = write_config(tmp / "user.yaml", input_dir=str(images), shard_size=3, methods=METHODS,
                       report=True)
    work = tmp / "work"
    work.mkdir()
    proc = run_snakemake(work, "--configfile", cfg)
    metrics = pd.read_parquet(work / "results/summary/metrics.parquet")
    methods = pd.read_parquet(work / "results/summary/methods.parquet")
    return {"work": work, "images": images, "metrics": metrics, "methods": methods, "proc": proc}


def test_a_row_for_every_image_and_method(finished_run):
    m = finished_run["metrics"]
    images = sorted(
        p.relative_to(finished_run["images"]).as_posix()
        for p in finished_run["images"].rglob("*")
        if p.is_file()
    )
    # The --configfile's methods replaced the six default ones instead of joining them.
    assert set(m["method"]) == set(METHODS)
    assert len(m) == len(images) * len(METHODS)
    for method in METHODS:
        assert sorted(m.loc[m["method"] == method, "image_id"]) == images
    assert set(m["kind"]) == {s["kind"] for s in METHODS.values()}
    assert (m["segpipe_version"] == "0.1.0").all()


def test_corrupt_file_gets_error_rows_and_the_rest_is_processed(finished_run):
    m = finished_run["metrics"]
    bad = m[m["image_id"] == "broken.png"]
    assert (bad["status"] == "error").all() and len(bad) == len(METHODS)
    for message in bad["error"]:
        assert "broken.png" in message and "truncated" in message
    assert bad["mask_path"].isna().all() and bad["n_labels"].isna().all()
    good = m[m["image_id"] != "broken.png"]
    assert (good["status"] == "ok").all() and good["error"].isna().all()


def test_masks_are_where_rows_say_and_match_direct_calls(finished_run):
    work, m = finished_run["work"], finished_run["metrics"]
    ok = m[m["status"] == "ok"]
    assert ok["mask_path"].is_unique  # three a.png files, three different masks
    for row in ok.itertuples():
        labels = read_label_image(work / row.mask_path)
        assert labels.shape == (row.height, row.width)
        settings = {k: v for k, v in json.loads(row.params).items() if k != "kind"}
        spec = REGISTRY[row.kind]
        image = read_image(finished_run["images"] / row.image_id, mode=spec.colour)
        expected = spec.segment(image, **settings)
        np.testing.assert_array_equal(labels, expected.labels)
        assert row.n_labels == np.count_nonzero(np.bincount(labels.ravel())[1:])
        assert row.foreground_fraction == pytest.approx((labels > 0).mean())
        assert row.runtime_s >= row.segment_s > 0
        if row.kind == "edges":
            assert (work / row.edge_path).exists()
        else:
            assert pd.isna(row.edge_path)


def test_sixteen_bit_and_dark_foreground_rows(finished_run):
    m = finished_run["metrics"].set_index(["method", "image_id"])
    assert m.loc[("otsu", "plate2/d16.png"), "n_labels"] == 1
    # value 0.5, dark: foreground is the background of these bright-blob images
    assert m.loc[("dark", "a.png"), "foreground_fraction"] > 0.5
    assert m.loc[("dark", "a.png"), "thresholds"].tolist() == [0.5]


def test_objects_follow_what_the_labels_mean(finished_run):
    work, m = finished_run["work"], finished_run["metrics"]
    objects = pd.read_parquet(work / "results/summary/objects.parquet")
    ok = m[m["status"] == "ok"]
    # Foreground (components) and instances have objects; classes and regions have none.
    assert set(objects["method"]) == {"otsu", "dark", "ws"}
    assert ok.loc[ok["method"].isin(["bands", "lap", "km"]), "n_objects"].isna().all()
    counts = objects.groupby(["method", "image_id"]).size()
    for row in ok[ok["method"].isin(["otsu", "dark", "ws"])].itertuples():
        assert counts.get((row.method, row.image_id), 0) == row.n_objects
    ws = ok[ok["method"] == "ws"]
    assert (ws["n_objects"] == ws["n_labels"]).all()  # instances: every label an object
    assert (ws["foreground"] == "bright").all()
    assert str(objects["label"].dtype) == "int32" and str(objects["area"].dtype) == "int64"
    assert objects["solidity"].between(0, 1).all() and (objects["score"] >= 0).all()
    # Per shard too, and the report's figure.
    assert len(list((work / "results/objects/ws").glob("*.parquet"))) == 3
    assert (work / "results/report/objects.png").stat().st_size > 0


def test_methods_summary(finished_run):
    s = finished_run["methods"].set_index("method")
    assert sorted(s.index) == sorted(METHODS)
    assert (s["n_images"] == 8).all() and (s["n_ok"] == 7).all() and (s["n_error"] == 1).all()
    m = finished_run["metrics"]
    ok = m[(m["method"] == "km") & (m["status"] == "ok")]
    assert s.loc["km", "seconds_per_image"] == pytest.approx(ok["runtime_s"].mean())
    assert s.loc["km", "n_labels_mean"] == pytest.approx(ok["n_labels"].mean())


def test_logs_show_progress_and_benchmarks_exist(finished_run):
    work = finished_run["work"]
    logs = sorted((work / "logs/segment_shard/otsu").glob("*.log"))
    assert len(logs) == 3  # 8 images in shards of 3
    text = logs[0].read_text()
    assert "images/s" in text and "finished 3/3 images" in text
    assert "error" in (work / "logs/segment_shard/km").joinpath("000000.log").read_text().lower()
    assert len(list((work / "logs/segment_shard/otsu").glob("*.benchmark.tsv"))) == 3


def test_second_run_does_nothing(finished_run):
    proc = run_snakemake(finished_run["work"], "--configfile",
                         finished_run["work"].parent / "user.yaml", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def metrics_mtimes(work):
    return {p.relative_to(work).as_posix(): p.stat().st_mtime_ns
            for p in (work / "results/metrics").rglob("*.parquet")}


def test_adding_images_reruns_only_the_shards_they_fall_in(tmp_path):
    images = tmp_path / "images"
    for i in range(7):
        (images / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        (images / f"sub{i % 2}" / f"img{i}.png").write_bytes(encode(blobs_image(i), ".png"))
    methods = {"otsu": {"kind": "threshold"}, "edge": {"kind": "edges"}}
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=3, methods=methods)
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    before = metrics_mtimes(work)
    assert len(before) == 3 * 2
    # one new image, in a nested folder whose name sorts first
    (images / "a_first").mkdir()
    (images / "a_first" / "new.png").write_bytes(encode(blobs_image(99), ".png"))
    proc = run_snakemake(work, "--configfile", cfg)
    after = metrics_mtimes(work)
    rerun = {p for p in after if before.get(p) != after[p]}
    assert rerun == {"results/metrics/otsu/000002.parquet", "results/metrics/edge/000002.parquet"}
    rows = pd.read_parquet(work / "results/summary/metrics.parquet")
    assert len(rows) == 8 * 2 and "a_first/new.png" in set(rows["image_id"])
    # and a removed image disappears from the summary, again re-running one shard
    (images / "sub0" / "img0.png").unlink()
    run_snakemake(work, "--configfile", cfg)
    rows = pd.read_parquet(work / "results/summary/metrics.parquet")
    assert "sub0/img0.png" not in set(rows["image_id"]) and len(rows) == 7 * 2
    assert proc.returncode == 0


@pytest.mark.parametrize("make_folder", ["missing", "empty"])
def test_bad_input_dir_fails_before_any_job(tmp_path, make_folder):
    folder = tmp_path / "in"
    if make_folder == "empty":
        folder.mkdir()
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(folder),
                       methods={"otsu": {"kind": "threshold"}})
    work = tmp_path / "work"
    work.mkdir()
    proc = run_snakemake(work, "--configfile", cfg, check=False)
    assert proc.returncode != 0
    assert "config key 'input_dir'" in proc.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_config_mistake_fails_before_any_job(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(encode(blobs_image(0), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(tmp_path / "in"),
                       methods={"km": {"kind": "kmeans", "k": "five"}})
    proc = run_snakemake(tmp_path, "--configfile", cfg, check=False)
    assert proc.returncode != 0
    assert "config key 'methods.km.k'" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_default_run_writes_samples_and_segments_them(tmp_path):
    """`make run` with no user data, offline: samples, every classical method, and the
    Mask R-CNN entry ending with what to download (its weights cannot be fetched here)."""
    proc = run_snakemake(tmp_path, check=False, env=OFFLINE)
    folder = tmp_path / "resources/sample_images"
    samples = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(samples) >= 8
    assert {n.rsplit(".", 1)[1] for n in samples} == {"png", "jpg"}
    m = pd.read_parquet(tmp_path / "results/summary/metrics.parquet")
    assert len(m) == len(samples) * m["method"].nunique()
    import yaml

    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())["methods"]
    assert set(m["method"]) == set(default)
    batched = m["kind"].map(lambda kind: REGISTRY[kind].runner == "batch")
    assert (m.loc[~batched, "status"] == "ok").all()
    assert (m.loc[batched, "status"] == "error").all()
    assert proc.returncode != 0 and "put it at resources/weights/" in proc.stderr


def test_workflow_lints_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    snakefmt = shutil.which("snakefmt") or str(ROOT / ".venv/bin/snakefmt")
    proc = subprocess.run([snakefmt, "--check", "Snakefile", "workflow/rules"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_maskrcnn_beside_the_classical_methods(tmp_path):
    images = tmp_path / "images"
    ids = make_image_folder(images)
    methods = {
        "otsu": {"kind": "threshold"},
        "mr": {
            "kind": "maskrcnn", "model": "maskrcnn_resnet50_fpn", "weights": "none", "seed": 1,
            "score_threshold": 0.0, "max_detections": 3, "min_size": 64, "max_size": 96,
            "batch_size": 4, "device": "auto",
        },
    }
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=5, methods=methods)
    run_snakemake(tmp_path, "--configfile", cfg)
    m = pd.read_parquet(tmp_path / "results/summary/metrics.parquet")
    mr = m[m["method"] == "mr"].set_index("image_id")
    assert sorted(mr.index) == ids
    assert mr.loc["broken.png", "status"] == "error"
    ok = mr[mr["status"] == "ok"]
    assert len(ok) == 7 and (ok["n_instances"] == 3).all()
    inst = pd.read_parquet(tmp_path / "results/summary/instances.parquet")
    assert len(inst) == 7 * 3 and set(inst["method"]) == {"mr"}
    coco = json.loads((tmp_path / "results/summary/mr.coco.json").read_text())
    assert len(coco) == len(inst)
    assert {c["file_name"] for c in coco} == set(ok.index)
    assert set(coco[0]) >= {"image_id", "category_id", "segmentation", "score"}
    log = (tmp_path / "logs/segment_shard/mr/000000.log").read_text()
    assert "runs on the CPU" in log
    methods_table = pd.read_parquet(tmp_path / "results/summary/methods.parquet").set_index("method")
    assert methods_table.loc["mr", "n_instances_mean"] == 3
    assert (m.loc[m["method"] == "otsu", "status"] == "ok").sum() == 7
    # Objects of the instance label image, with the detection's class and score, measured
    # on the grey image (the writer gets the decoded image).
    objects = pd.read_parquet(tmp_path / "results/summary/objects.parquet")
    mine = objects[objects["method"] == "mr"].merge(
        inst, left_on=["image_id", "label"], right_on=["image_id", "instance_id"])
    assert len(mine) == (objects["method"] == "mr").sum() == ok["n_labels"].sum()
    assert (mine["class_name_x"] == mine["class_name_y"]).all()
    assert np.allclose(mine["score_x"], mine["score_y"])
    assert mine["mean_intensity"].notna().all() and (mine["area_x"] <= mine["area_y"]).all()


def test_offline_run_without_weights_finishes_the_rest_and_says_what_to_do(tmp_path):
    images = tmp_path / "images"
    make_image_folder(images)
    # an unreachable address stands in for the offline download server
    methods = {"otsu": {"kind": "threshold"}, "mr": {"kind": "maskrcnn", "weights": "DEFAULT"}}
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), methods=methods)
    proc = run_snakemake(tmp_path, "--configfile", cfg, check=False, env=OFFLINE)
    assert proc.returncode != 0
    expected = "resources/weights/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    assert f"put it at {expected}" in proc.stderr
    assert proc.stderr.count("Traceback") == 0
    m = pd.read_parquet(tmp_path / "results/summary/metrics.parquet")
    assert (m.loc[m["method"] == "otsu", "status"] == "ok").sum() == 7
    assert (m.loc[m["method"] == "mr", "status"] == "error").all()
    # Still offline, still no file: the next run tries the download again, and says
    # what to do again (no silent "Nothing to be done").
    proc = run_snakemake(tmp_path, "--configfile", cfg, check=False, env=OFFLINE)
    assert proc.returncode != 0 and f"put it at {expected}" in proc.stderr
    assert "fetch_maskrcnn_weights" in proc.stdout + proc.stderr
    # the user puts the file in place: the next run re-runs the Mask R-CNN jobs only
    (tmp_path / expected).write_bytes(b"not really weights")
    proc = run_snakemake(tmp_path, "--configfile", cfg, "-n", env=OFFLINE)
    assert "segment_shard_batch" in proc.stdout
    assert "segment_shard " not in proc.stdout.replace("segment_shard_batch", "")


def test_ground_truth_scores_notes_and_coco_json(tmp_path):
    from pycocotools import mask as mask_utils

    from segpipe.imageio import write_png
    from segpipe.methods.threshold import segment_threshold

    images = tmp_path / "images"
    make_image_folder(images)
    truth = tmp_path / "truth"
    # Ground truth = Otsu's own objects for two images (so otsu scores 1.0 there), one
    # mask of the wrong size, and none for the rest.
    perfect = ["a.png", "plate1/a.png"]
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "blob"}]}
    for number, image_id in enumerate(perfect, start=1):
        fg = segment_threshold(read_image(images / image_id), method="otsu").labels
        _, objects = cv2.connectedComponents(fg, connectivity=8)
        write_png(truth / image_id, objects.astype(np.uint16))
        coco["images"].append({"id": number, "file_name": image_id,
                               "height": fg.shape[0], "width": fg.shape[1]})
        for obj in range(1, objects.max() + 1):
            rle = mask_utils.encode(np.asfortranarray((objects == obj).astype(np.uint8)))
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": number, "category_id": 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                "area": float(mask_utils.area(rle)), "bbox": list(mask_utils.toBbox(rle)),
                "iscrowd": 0,
            })
    write_png(truth / "b.png", np.zeros((5, 5), np.uint8))
    methods = {"otsu": {"kind": "threshold"}, "band": {"kind": "multi_threshold", "classes": [2, 3]}}
    for source, name in ((truth, "folder"), (tmp_path / "truth.json", "coco")):
        (tmp_path / "truth.json").write_text(json.dumps(coco))
        work = tmp_path / name
        work.mkdir()
        # The COCO run also measures no objects (object rows for COCO AP only) and writes
        # TIFF masks, which scoring reads back.
        cfg = write_config(tmp_path / f"{name}.yaml", input_dir=str(images), ground_truth_dir=str(source),
                           ground_truth_kind="instances", methods=methods, primary_metric="object_f1_50",
                           measure_objects=name == "folder", report=name != "folder",
                           mask_format="png" if name == "folder" else "tiff")
        run_snakemake(work, "--configfile", cfg)
        m = pd.read_parquet(work / "results/summary/metrics.parquet").set_index(["method", "image_id"])
        suffix = ".png" if name == "folder" else ".tif"
        assert m["mask_path"].dropna().str.endswith(suffix).all()
        for image_id in perfect:
            row = m.loc[("otsu", image_id)]
            for metric in ("iou", "dice", "precision", "recall", "boundary_f1",
                           "object_f1_50", "object_f1_mean"):
                assert row[metric] == pytest.approx(1.0), (name, metric)
            # one foreground label against one id per object: no false split, some merge
            assert row["vi_split"] == pytest.approx(0, abs=1e-9) and row["vi_merge"] > 0
            assert 0.5 < row["ari"] < 1 and pd.isna(row["gt_note"])
        assert pd.isna(m.loc[("otsu", "plate2/a.png"), "iou"])
        assert "no " in m.loc[("otsu", "plate2/a.png"), "gt_note"]
        if name == "folder":
            assert "is 5x5 but the image is 64x48" in m.loc[("otsu", "b.jpg"), "gt_note"]
        board = pd.read_parquet(work / "results/summary/methods.parquet").set_index("method")
        assert set(board.index) == {"otsu", "band_classes2", "band_classes3"}
        assert board.loc["otsu", "iou_n"] == 2 and board.loc["otsu", "coco_ap"] == pytest.approx(1.0)
        # Multi-Otsu labels classes: no foreground or object scores, and AP says why; both
        # rank below otsu, which is perfect by object_f1_50.
        band = m.loc["band_classes2"]
        assert band["iou"].isna().all() and band["object_f1_50"].isna().all()
        assert band.loc["a.png", "ari"] > 0.5
        assert pd.isna(board.loc["band_classes2", "coco_ap"])
        assert "classes" in board.loc["band_classes2", "coco_note"]
        assert pd.isna(board.loc["otsu", "coco_note"])
        assert list(board["rank"]) == [1, 2, 2] and board.index[0] == "otsu"
        shard_objects = pd.concat(pd.read_parquet(p)
                                  for p in (work / "results/objects/otsu").glob("*.parquet"))
        assert len(shard_objects) == m.loc["otsu", "n_objects"].sum()
        summary_objects = work / "results/summary/objects.parquet"
        if name == "folder":
            assert summary_objects.exists() and shard_objects["solidity"].notna().all()
        else:  # measure_objects: false
            assert not summary_objects.exists() and shard_objects["solidity"].isna().all()
            # The report is drawn, without the objects figure.
            assert (work / "results/report/leaderboard.html").is_file()
            assert not (work / "results/report/objects.png").exists()


def test_killed_run_resumes_to_the_same_results(tmp_path):
    import os
    import signal
    import time

    images = tmp_path / "images"
    for i in range(20):
        (images / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (images / f"d{i % 3}" / f"{i}.png").write_bytes(encode(blobs_image(i, colour=True), ".png"))
    methods = {"km": {"kind": "kmeans", "k": 3}, "otsu": {"kind": "threshold"}}
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=5, methods=methods)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    run_snakemake(clean, "--configfile", cfg)

    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(killed),
           "--cores", "2", "--configfile", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((killed / "results/metrics").glob("*/*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, jobs included, as a node failure would
    proc.wait()
    assert not (killed / "results/summary/metrics.parquet").exists()

    # what a user does after a kill: release Snakemake's lock, run the same command again
    # (the default profile sets rerun-incomplete)
    run_snakemake(killed, "--configfile", cfg, "--unlock")
    run_snakemake(killed, "--configfile", cfg)
    assert_same_outputs(clean, killed)  # every file, masks and tables alike
    timing = ["decode_s", "segment_s", "write_s", "metrics_s", "runtime_s"]
    a = pd.read_parquet(clean / "results/summary/metrics.parquet").drop(columns=timing)
    b = pd.read_parquet(killed / "results/summary/metrics.parquet").drop(columns=timing)
    pd.testing.assert_frame_equal(a, b)
    for row in a.itertuples():
        np.testing.assert_array_equal(read_label_image(clean / row.mask_path),
                                      read_label_image(killed / row.mask_path))
    leftovers = [p for p in (killed / "results").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_out_dir_holds_every_output(tmp_path):
    images = tmp_path / "images"
    for k in range(3):
        (images / f"i{k}.png").parent.mkdir(parents=True, exist_ok=True)
        (images / f"i{k}.png").write_bytes(encode(blobs_image(k), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), out_dir="exp/a",
                       methods={"otsu": {"kind": "threshold"}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    assert not (work / "results").exists()
    m = pd.read_parquet(work / "exp/a/summary/metrics.parquet")
    assert m["mask_path"].str.startswith("exp/a/masks/otsu/").all()
    assert all((work / p).is_file() for p in m["mask_path"])
    # The report only when asked for: the draw_report target draws it from the tables.
    assert not (work / "exp/a/report").exists()
    proc = run_snakemake(work, "draw_report", "--configfile", cfg)
    assert (work / "exp/a/report/leaderboard.html").is_file()
    assert "segment_shard" not in proc.stderr.split("Job stats:")[1].split("\n\n")[0]
