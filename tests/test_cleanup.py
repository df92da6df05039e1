"""Removing what a run no longer needs, and nothing else."""

import os

from segpipe.cleanup import prepare_shard_folder, remove_shard_outputs
from segpipe.layout import Layout


def test_prepare_shard_folder_keeps_only_the_current_files(tmp_path):
    folder = tmp_path / "m" / "000000"
    (folder / "old-layout").mkdir(parents=True)
    (folder / "old-layout" / "a.png.png").write_bytes(b"x")
    for name in ["000000-a.png.png", "000001-gone.png.png", ".segpipe-0123456789abcdef.tmp"]:
        (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_text("someone else's")
    removal = prepare_shard_folder(folder, [f"{folder}/000000-a.png.png",
                                            f"{folder}/000001-b.png.png"])
    # What segpipe did not write (by name) stays: an older layout's folder, a note.
    assert sorted(os.listdir(folder)) == ["000000-a.png.png", "notes.txt", "old-layout"]
    assert removal.removed == 2 and len(removal.foreign) == 2
    prepare_shard_folder(tmp_path / "new", [])
    assert (tmp_path / "new").is_dir()


def test_a_stale_file_that_will_not_go_is_logged_not_fatal(tmp_path, monkeypatch, caplog):
    (tmp_path / "000001-gone.png").write_bytes(b"x")

    def busy(path):
        raise OSError(16, "Device or resource busy", path)

    monkeypatch.setattr(os, "unlink", busy)
    removal = prepare_shard_folder(tmp_path, [])
    assert "could not remove" in caplog.text and "000001-gone.png" in caplog.text
    assert removal.failed == [str(tmp_path / "000001-gone.png")]




def test_a_gone_shard_loses_its_outputs_of_every_method_and_nothing_else(tmp_path):
    layout = Layout(str(tmp_path / "results"))
    for method in ("otsu", "mrcnn"):
        for shard in ("000000", "000001"):
            for path in layout.shard_outputs(method, shard):
                if path.endswith(".parquet"):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, "wb").close()
                else:
                    os.makedirs(path)
                    open(os.path.join(path, "000000-a.png"), "wb").close()
    (tmp_path / "results" / "masks" / "keep.txt").write_text("not ours")
    remove_shard_outputs(layout, ["000001"])
    for method in ("otsu", "mrcnn"):
        assert all(os.path.exists(p) for p in layout.shard_outputs(method, "000000"))
        assert not any(os.path.exists(p) for p in layout.shard_outputs(method, "000001"))
    assert (tmp_path / "results" / "masks" / "keep.txt").exists()


def test_a_kept_zarr_mask_is_kept_whole_and_a_stale_one_goes(tmp_path):
    folder = tmp_path / "000000"
    for name in ("000000-a.zarr", "000001-gone.zarr"):
        (folder / name / "labels" / "mask" / "0").mkdir(parents=True)
        (folder / name / "labels" / "mask" / "0" / "0.0").write_bytes(b"x")
        (folder / name / ".zattrs").write_text("{}")
    removal = prepare_shard_folder(folder, [f"{folder}/000000-a.zarr"])
    assert sorted(os.listdir(folder)) == ["000000-a.zarr"]
    assert (folder / "000000-a.zarr/labels/mask/0/0.0").exists() and removal.removed == 2
