import os

import pytest

import segpipe.manifest as manifest_module
from segpipe.manifest import (
    assign_shards,
    folder_fingerprint,
    iter_files,
    read_shards,
    shard_names,
    shard_sizes,
    update_manifest,
    write_shards,
)

from conftest import add_entries_not_to_segment


def ids(n, prefix="img"):
    return [f"{prefix}{i:04d}.png" for i in range(n)]


def test_first_assignment_fills_shards_in_order():
    shards = assign_shards(ids(7), {}, 3)
    assert list(shards) == ["000000", "000001", "000002"]
    assert [len(v) for v in shards.values()] == [3, 3, 1]
    assert [i for ids_ in shards.values() for i in ids_] == ids(7)


@pytest.mark.parametrize("k", [1, 2, 5, 17, 40])
def test_adding_k_images_changes_at_most_k_shards(k):
    shard_size = 10
    before = assign_shards(ids(95), {}, shard_size)
    # new names sort before, between and after the old ones
    added = [f"aaa{i}.png" for i in range(k // 2)] + [f"zzz{i}.png" for i in range(k - k // 2)]
    after = assign_shards(ids(95) + added, before, shard_size)
    changed = {name for name in after if before.get(name) != after[name]}
    assert len(changed) <= k
    assert len(changed) <= 1 + -(-k // shard_size)
    assert sorted([i for ids_ in after.values() for i in ids_]) == sorted(ids(95) + added)
    assert all(len(v) <= shard_size for v in after.values())


def test_removed_images_only_touch_their_shard_and_empty_shards_go():
    before = assign_shards(ids(9), {}, 3)
    gone = set(before["000001"]) | {before["000002"][0]}
    after = assign_shards([i for i in ids(9) if i not in gone], before, 3)
    assert "000001" not in after
    assert after["000000"] == before["000000"]
    assert after["000002"] == before["000002"][1:]
    # a later addition does not reuse the name of the emptied shard
    again = assign_shards([i for ids_ in after.values() for i in ids_] + ["z1.png", "z2.png"], after, 3)
    assert "000001" not in again


def test_write_shards_rewrites_only_changed_files(tmp_path):
    shard_dir = tmp_path / "shards"
    first = assign_shards(ids(6), {}, 3)
    assert write_shards(shard_dir, first) == ["000000", "000001"]
    old = {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    for p in shard_dir.iterdir():
        os.utime(p, ns=(1, 1))
    second = assign_shards(ids(6) + ["x.png"], read_shards(shard_dir), 3)
    assert write_shards(shard_dir, second) == ["000002"]
    assert (shard_dir / "000000.json").stat().st_mtime_ns == 1
    assert read_shards(shard_dir) == second
    assert set(old) == {"000000.json", "000001.json"}


def test_odd_file_names_survive_the_shard_files(tmp_path):
    names = ["a b.png", "ü/é.png", "quote\".png", "new\nline.png"]
    write_shards(tmp_path, assign_shards(names, {}, 10))
    assert sorted(i for ids_ in read_shards(tmp_path).values() for i in ids_) == sorted(names)


def test_iter_files_is_recursive_posix_and_skips_hidden(tmp_path):
    for rel in ["b.png", "a/c.jpg", "a/b/d.tif", ".hidden.png", ".git/x.png", "notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert sorted(iter_files(tmp_path)) == ["a/b/d.tif", "a/c.jpg", "b.png", "notes.txt"]


def listing(tmp_path, **kwargs):
    """update_manifest's output arguments under ``tmp_path``, plus ``kwargs``."""
    return dict(shard_dir=tmp_path / "shards", manifest_out=tmp_path / "images.parquet",
                skipped_out=tmp_path / "skipped.parquet", **kwargs)


def odd_folder(root):
    """Every kind of entry a lab drive holds that is not an image to segment, and two that are."""
    (root / "sub").mkdir(parents=True)
    (root / "good.png").write_bytes(b"x")
    (root / "sub" / "good2.png").write_bytes(b"x")
    (root / "locked").mkdir()
    (root / "locked" / "inside.png").write_bytes(b"x")
    return add_entries_not_to_segment(root, link_to="good.png") | {"locked"}


def lock(monkeypatch, name="locked"):
    """Make folders called ``name`` unreadable, as chmod 0 would for anyone but root."""
    scandir = os.scandir

    def refusing(path="."):
        if os.path.basename(os.fspath(path)) == name:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(manifest_module.os, "scandir", refusing)


def test_scan_reports_every_entry_it_does_not_segment_and_never_raises(tmp_path, monkeypatch):
    odd_folder(tmp_path)
    lock(monkeypatch)
    found = {rel: info for _, rel, info in manifest_module.scan(tmp_path)}
    files = sorted(rel for rel, info in found.items() if not isinstance(info, str))
    assert files == ["good.png", "link_to_file.png", "sub/good2.png"]
    reasons = {manifest_module.display_path(rel): info for rel, info in found.items()
               if isinstance(info, str)}
    assert reasons[".hidden.png"] == reasons[".git"] == manifest_module.HIDDEN
    assert "FIFO" in reasons["pipe.png"]
    assert reasons["dangling.png"] == manifest_module.DANGLING
    assert reasons["loop_a"] == reasons["loop_b"] == manifest_module.LOOP
    assert reasons["link_to_folder"] == manifest_module.LINK_TO_FOLDER
    assert reasons["caf\\xe9.png"] == manifest_module.NOT_UTF8
    assert reasons["locked"] == "folder cannot be read (Permission denied)"


def test_update_manifest_writes_the_skipped_table_and_goes_on(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    images = tmp_path / "in"
    expected = odd_folder(images)
    lock(monkeypatch)
    update_manifest(images, **listing(tmp_path, shard_size=10))
    assert manifest_module.folder_fingerprint(images) != "missing"  # no PermissionError
    skipped = pq.read_table(tmp_path / "skipped.parquet").to_pydict()
    assert set(skipped["path"]) == expected
    assert all(skipped["reason"])
    table = pq.read_table(tmp_path / "images.parquet").to_pydict()
    assert {"good.png", "link_to_file.png", "sub/good2.png"} <= set(table["image_id"])
    assert table["size"][table["image_id"].index("good.png")] == 1


def test_an_edited_image_changes_only_its_shard_file(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for i in range(6):
        (images / f"{i}.png").write_bytes(b"x")
    kwargs = listing(tmp_path, shard_size=2)
    update_manifest(images, **kwargs)
    before = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    fingerprint = folder_fingerprint(images)
    (images / "3.png").write_bytes(b"edited")  # in place: same folder entries
    assert folder_fingerprint(images) != fingerprint
    update_manifest(images, **kwargs)
    after = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    assert [n for n in before if before[n] != after[n]] == ["000001.json"]
    assert manifest_module.read_shard(tmp_path / "shards" / "000001.json") == ["2.png", "3.png"]


def test_with_hashing_a_touch_is_not_a_change_but_new_content_is(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    (images / "a.png").write_bytes(b"one")
    (images / "b.png").write_bytes(b"two")
    kwargs = listing(tmp_path, shard_size=1, hash_images=True)
    update_manifest(images, **kwargs)
    shard_a = tmp_path / "shards" / "000000.json"
    first = shard_a.read_bytes()
    os.utime(images / "a.png", ns=(10**18, 10**18))
    update_manifest(images, **kwargs)
    assert shard_a.read_bytes() == first
    (images / "a.png").write_bytes(b"ONE")
    update_manifest(images, **kwargs)
    assert shard_a.read_bytes() != first


def test_outputs_of_shards_whose_images_all_went_are_removed(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for name in "abc":
        (images / f"{name}.png").write_bytes(b"x")
    results = tmp_path / "results"
    kwargs = listing(tmp_path, shard_size=1, results_dir=results)
    update_manifest(images, **kwargs)
    for tree in ("masks/otsu/000001", "edges/sobel/000001", "masks/otsu/000002"):
        (results / tree).mkdir(parents=True)
        (results / tree / "000000-b.png.png").write_bytes(b"x")
    (results / "metrics/otsu").mkdir(parents=True)
    (results / "metrics/otsu/000001.parquet").write_bytes(b"x")
    (images / "b.png").unlink()
    update_manifest(images, **kwargs)
    assert not (results / "masks/otsu/000001").exists()
    assert not (results / "edges/sobel/000001").exists()
    assert not (results / "metrics/otsu/000001.parquet").exists()
    assert (results / "masks/otsu/000002").exists()


def test_fingerprint_sees_added_and_removed_files_in_subfolders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"x")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    # pretend time passed, as on a real file system between two runs
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        os.utime(folder, ns=(10**18, 10**18))
    stable = folder_fingerprint(tmp_path)
    (tmp_path / "a" / "b" / "y.png").write_bytes(b"y")
    added = folder_fingerprint(tmp_path)
    assert added != stable
    (tmp_path / "a" / "b" / "x.png").unlink()
    assert folder_fingerprint(tmp_path) != added
    assert folder_fingerprint(tmp_path / "missing") == "missing"


def test_shard_names_come_from_the_manifest_and_follow_its_changes(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for name in "abcde":
        (images / f"{name}.png").write_bytes(b"x")
    manifest = tmp_path / "images.parquet"
    update_manifest(images, **listing(tmp_path, shard_size=2))
    assert shard_names(manifest) == ["000000", "000001", "000002"]
    stray = tmp_path / "shards" / "999999.json"
    stray.write_text("[]")  # the folder is not what is read
    assert shard_names(manifest) == ["000000", "000001", "000002"]
    stray.unlink()
    for name in "fg":
        (images / f"{name}.png").write_bytes(b"x")
    update_manifest(images, **listing(tmp_path, shard_size=2))
    assert shard_names(manifest) == ["000000", "000001", "000002", "000003"]


def test_auto_shard_size_follows_the_image_count(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for i in range(600):
        (images / f"{i:03d}.png").write_bytes(b"x")
    manifest = tmp_path / "images.parquet"
    update_manifest(images, **listing(tmp_path, shard_size="auto"))
    # 600 images: far fewer than 1,000 jobs' worth, so the smallest auto size, 250
    assert shard_sizes(manifest) == {"000000": 250, "000001": 250, "000002": 100}
    assert manifest_module.auto_shard_size(2_000_000) == 2000


def test_include_and_exclude_choose_the_images_and_list_the_rest(tmp_path):
    import pandas as pd

    folder = tmp_path / "in"
    for rel in ["plate1/a.tif", "plate1/a_masks.tif", "b.png", "C.JPG", "notes.txt", "run.log"]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"x")

    def run(**kwargs):
        update_manifest(folder, shard_size=10, **listing(tmp_path, **kwargs))
        images = pd.read_parquet(tmp_path / "images.parquet")["image_id"].tolist()
        skipped = pd.read_parquet(tmp_path / "skipped.parquet")
        return sorted(images), dict(zip(skipped["path"], skipped["reason"]))

    images, skipped = run()
    assert images == ["C.JPG", "b.png", "plate1/a.tif", "plate1/a_masks.tif"]
    assert set(skipped) == {"notes.txt", "run.log"}
    assert skipped["run.log"] == "not an image file (extension '.log'; see include)"
    images, skipped = run(exclude=["*_MASKS.tif"])
    assert "plate1/a_masks.tif" not in images
    assert skipped["plate1/a_masks.tif"] == "excluded by pattern '*_MASKS.tif'"
    images, skipped = run(include=["plate1/*", "*.log"], exclude=["*_masks*"])
    assert images == ["plate1/a.tif", "run.log"]
    assert skipped["b.png"] == "not matched by include (plate1/*, *.log)"
