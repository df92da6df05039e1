"""End-to-end runs on hostile input: odd folder entries, edits in place, repeated runs."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.imageio import read_image, read_label_image
from segpipe.methods.edges import segment_edges
from segpipe.methods.threshold import segment_threshold

from conftest import (
    add_entries_not_to_segment,
    assert_same_outputs,
    blobs_image,
    encode,
    run_snakemake,
    write_config,
)

pytestmark = pytest.mark.e2e

def snapshot(folder):
    """Every entry under ``folder`` (links not followed) with its type, size and mtime."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def make_odd_folder(root):
    """Good images beside most of what a lab drive holds that is not one."""
    good = {
        "good1.png": blobs_image(1),
        "sub/good2.png": blobs_image(2),
        "c.png": blobs_image(3),
        "c.png.png/i.png": blobs_image(4),  # its mask path met c.png's before
        "x" * 246 + ".png": blobs_image(5),  # a 250-byte name
        "ünïcode/naïve.png": blobs_image(6),
    }
    for rel, image in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode(image, ".png"))
    pages = [Image.fromarray(blobs_image(i)) for i in (7, 8, 9)]
    pages[0].save(root / "stack.tif", save_all=True, append_images=pages[1:])
    Image.new("1", (20000, 20000)).save(root / "bomb.png")  # 400 MP in a few KB
    Image.fromarray(np.zeros((4, 4), np.float32)).save(root / "float.tif")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "truncated.png").write_bytes(encode(blobs_image(10), ".png")[:70])
    skipped = add_entries_not_to_segment(root, link_to="good1.png",
                                         data=encode(blobs_image(11), ".png"))
    return sorted(good) + ["link_to_file.png"], skipped


def test_an_odd_folder_runs_to_the_end_and_says_what_it_passed_over(tmp_path):
    images = tmp_path / "images"
    good, expected_skipped = make_odd_folder(images)
    before = snapshot(images)
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=4,
                       methods={"otsu": {"kind": "threshold"}, "sobel": {"kind": "edges"}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    assert snapshot(images) == before  # nothing written to the input folder

    rows = pd.read_parquet(work / "results/summary/metrics.parquet")
    by_id = {(r.image_id, r.method): r for r in rows.itertuples()}
    # notes.txt is no image file: listed as skipped, not given error rows.
    listed = good + ["stack.tif", "bomb.png", "float.tif", "empty.png", "truncated.png"]
    assert sorted(rows["image_id"].unique()) == sorted(listed)
    fine = [*good, "stack.tif", "float.tif"]
    for method in ("otsu", "sobel"):
        for image_id in fine:
            row = by_id[image_id, method]
            assert row.status == "ok", (image_id, row.error)
            assert (work / row.mask_path).is_file()
        errors = {i: by_id[i, method].error for i in listed if i not in fine}
        assert all(e.startswith(str(images / i)) for i, e in errors.items())
        assert "larger than max_image_pixels" in errors["bomb.png"]
        assert "empty file" in errors["empty.png"]
        assert by_id["stack.tif", method].note.startswith("multi-page file (3 pages)")
        masks = rows.loc[rows["method"] == method, "mask_path"].dropna()
        assert masks.is_unique
    # c.png and c.png.png/i.png each got their own mask, of their own image
    for image_id in ("c.png", "c.png.png/i.png"):
        expected = segment_threshold(read_image(images / image_id)).labels
        np.testing.assert_array_equal(
            read_label_image(work / by_id[image_id, "otsu"].mask_path), expected)

    skipped = pd.read_parquet(work / "results/manifest/skipped.parquet")
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert set(reasons) == expected_skipped | {"notes.txt"}
    assert reasons["notes.txt"].startswith("not an image file (extension '.txt'")
    assert "FIFO" in reasons["pipe.png"] and "loop" in reasons["loop_a"]
    assert "UTF-8" in reasons["caf\\xe9.png"] and "dangling" in reasons["dangling.png"]
    log = (work / "logs/list_images.log").read_text()
    assert "skipped 9 entries" in log


def shard_tables(work):
    return {p.relative_to(work).as_posix(): p.stat().st_mtime_ns
            for p in (work / "results/metrics").rglob("*.parquet")}


def test_runs_are_reproducible_and_edits_and_deletions_are_followed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        (images / f"{i}.png").write_bytes(encode(blobs_image(i, shape=(96, 128)), ".png"))
    methods = {"otsu": {"kind": "threshold"}, "sobel": {"kind": "edges"},
               "km": {"kind": "kmeans", "k": 3}}
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=3, methods=methods)
    first, second = tmp_path / "first", tmp_path / "second"
    for work in (first, second):
        work.mkdir()
        run_snakemake(work, "--configfile", cfg)
    assert_same_outputs(first, second)  # edge maps included (cv2.magnitude was not)

    # Edit 4.png in place: its shard (000001: 3, 4, 5) re-runs for every method, and only it.
    before = shard_tables(first)
    edited = blobs_image(99, shape=(96, 128))
    (images / "4.png").write_bytes(encode(edited, ".png"))
    run_snakemake(first, "--configfile", cfg)
    after = shard_tables(first)
    assert {p for p in after if after[p] != before[p]} == {
        f"results/metrics/{m}/000001.parquet" for m in methods}
    rows = pd.read_parquet(first / "results/summary/metrics.parquet")
    row = rows[(rows["image_id"] == "4.png") & (rows["method"] == "sobel")].iloc[0]
    expected = segment_edges(edited)
    np.testing.assert_array_equal(read_label_image(first / row.mask_path), expected.labels)
    np.testing.assert_array_equal(read_label_image(first / row.edge_path), expected.edge_map)

    # Delete 4.png: its rows, masks and edge map go; its shard's other images stay.
    gone = [first / p for p in (row.mask_path, row.edge_path)]
    # A file someone put among the masks is not segpipe's to delete, in either cleanup.
    notes = [first / f"results/masks/otsu/{shard}/notes.txt" for shard in ("000001", "000002")]
    for note in notes:
        note.write_text("mine")
    (images / "4.png").unlink()
    run_snakemake(first, "--configfile", cfg)
    rows = pd.read_parquet(first / "results/summary/metrics.parquet")
    assert "4.png" not in set(rows["image_id"]) and len(rows) == 7 * len(methods)
    assert not any(p.exists() for p in gone)
    for method in methods:
        masks = sorted(p.name for p in (first / f"results/masks/{method}/000001").iterdir())
        assert masks == ["000000-3.png", "000001-5.png"] + (["notes.txt"] if method == "otsu" else [])
    # Deleting a whole shard's images removes its folders too, but for what is not ours.
    for name in ("6.png", "7.png"):
        (images / name).unlink()
    run_snakemake(first, "--configfile", cfg)
    assert [p.relative_to(first).as_posix() for p in first.glob("results/*/*/000002*")] == [
        "results/masks/otsu/000002"]
    assert all(note.read_text() == "mine" for note in notes)
    assert [p.name for p in notes[1].parent.iterdir()] == ["notes.txt"]


def test_a_temporary_file_left_by_a_kill_is_removed_by_the_next_run(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(encode(blobs_image(i), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=3,
                       methods={"otsu": {"kind": "threshold"}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "results/manifest/images.parquet", "--configfile", cfg)
    # What a kill while writing leaves: a temporary mask beside where masks go, and a
    # temporary table beside where the shard's table goes.
    leftovers = [work / "results/masks/otsu/000000/.segpipe-0123456789abcdef.tmp"]
    from segpipe.imageio import temporary_path

    leftovers.append(temporary_path(work / "results/metrics/otsu/000000.parquet"))
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    run_snakemake(work, "--configfile", cfg)
    assert not any(p.exists() for p in leftovers)
    assert not [p for p in (work / "results").rglob("*.tmp")]
