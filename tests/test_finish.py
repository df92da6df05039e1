"""The shared way of finishing an image, and the writer pool that runs it beside the GPU."""

import os
import time

import cv2
import numpy as np
import pytest

from segpipe.errors import ImageReadError, OutputWriteError
from segpipe.finish import (
    WriterPool,
    finish_image,
    fork_available,
    output_name,
    prepare_shard_folder,
    record_failure,
    shard_output_paths,
)
from segpipe.imageio import read_label_image
from segpipe.table import empty_row


def slow_square(context, x, delay):
    time.sleep(delay)
    return context["offset"] + x * x, os.getpid()


def row():
    r = empty_row(image_id="p/a.png", method="m", kind="threshold", shard="000000", params="{}")
    r.update(decode_s=0.5, segment_s=0.25)
    return r


def test_finish_image_writes_the_mask_and_completes_the_row(tmp_path):
    labels = np.array([[1, 1, 0, 0], [0, 0, 0, 2]], np.uint8)
    path = f"{tmp_path}/m/000000/000000-a.png.png"
    done = finish_image(row(), labels, mask_path=path, meaning="instances")
    assert done["status"] == "ok" and done["mask_path"] == path
    np.testing.assert_array_equal(read_label_image(done["mask_path"]), labels)
    assert (done["height"], done["width"], done["n_labels"], done["n_objects"]) == (2, 4, 2, 2)
    assert done["runtime_s"] == pytest.approx(0.75 + done["write_s"] + done["metrics_s"])


def test_output_paths_are_distinct_for_names_that_used_to_collide():
    # "c.png" and "c.png.png/i.png" both mapped to masks/.../c.png.png(/...) before.
    ids = ["c.png", "c.png.png/i.png", "C.png", "a b.png", "a_b.png", "x/c.png"]
    paths = shard_output_paths("results/masks", "m", "000001", ids)
    assert len(set(paths.values())) == len(ids)
    assert all(p.startswith("results/masks/m/000001/") and p.count("/") == 4 for p in paths.values())


def test_output_names_stay_short_for_names_at_the_file_system_limit():
    for image_id in ["a" * 251 + ".png", "d/" + "é" * 125 + ".tif", "new\nline.png"]:
        name = output_name(123456, image_id)
        assert len(name.encode()) < 100 and "/" not in name and "\n" not in name
        name.encode("utf-8")  # whole characters only


def test_a_long_image_name_gets_its_mask_written(tmp_path):
    (image_id,) = ids = ["z" * 250 + ".png"]
    path = shard_output_paths(str(tmp_path), "m", "000000", ids)[image_id]
    done = finish_image(row(), np.ones((2, 2), np.uint8), mask_path=path, meaning="foreground")
    assert os.path.exists(done["mask_path"])


def test_prepare_shard_folder_keeps_only_the_current_files(tmp_path):
    folder = tmp_path / "m" / "000000"
    (folder / "old-layout").mkdir(parents=True)
    (folder / "old-layout" / "a.png.png").write_bytes(b"x")
    for name in ["000000-a.png.png", "000001-gone.png.png", ".segpipe-0123456789abcdef.tmp"]:
        (folder / name).write_bytes(b"x")
    prepare_shard_folder(folder, [f"{folder}/000000-a.png.png", f"{folder}/000001-b.png.png"])
    assert sorted(os.listdir(folder)) == ["000000-a.png.png"]
    prepare_shard_folder(tmp_path / "new", [])
    assert (tmp_path / "new").is_dir()


def test_a_stale_file_that_will_not_go_is_logged_not_fatal(tmp_path, monkeypatch, caplog):
    (tmp_path / ".nfs0001").write_bytes(b"x")

    def busy(path):
        raise OSError(16, "Device or resource busy", path)

    monkeypatch.setattr(os, "unlink", busy)
    prepare_shard_folder(tmp_path, [])
    assert "could not remove stale" in caplog.text and ".nfs0001" in caplog.text


def test_a_failed_mask_write_fails_the_job_not_the_image(tmp_path, monkeypatch):
    # A folder that cannot be made (a file is in the way), as root too.
    (tmp_path / "m").write_bytes(b"not a folder")
    with pytest.raises(OutputWriteError, match="cannot write .*a.png.png"):
        finish_image(row(), np.ones((2, 2), np.uint8), mask_path=f"{tmp_path}/m/a.png.png",
                     meaning="foreground")
    # A full disk while writing: the temporary file is removed.
    import segpipe.imageio

    class FullDisk:
        def __init__(self, path, mode):
            self.fh = open(path, mode)

        def __enter__(self):
            return self

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(segpipe.imageio, "open", FullDisk, raising=False)
    (tmp_path / "ok").mkdir()
    with pytest.raises(OutputWriteError, match="No space left on device"):
        finish_image(row(), np.ones((2, 2), np.uint8), mask_path=f"{tmp_path}/ok/a.png.png",
                     meaning="foreground")
    assert os.listdir(tmp_path / "ok") == []


def test_record_failure_raises_output_errors_again():
    with pytest.raises(OutputWriteError):
        record_failure(row(), "in/a.png", OutputWriteError("out/a.png", "No space left on device"))


def test_record_failure_names_the_file_and_the_cause(tmp_path):
    read = record_failure(row(), tmp_path / "a.png", ImageReadError(tmp_path / "a.png", "bad header"))
    assert read["status"] == "error" and "a.png" in read["error"] and "bad header" in read["error"]
    other = record_failure(row(), "in/a.png", ValueError("k too large"))
    assert other["error"] == "in/a.png: segmentation failed (ValueError: k too large)"


@pytest.mark.parametrize("writers", [0, 3])
def test_pool_returns_results_in_submission_order(writers):
    if writers and not fork_available():
        pytest.skip("no fork here")
    delays = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0, 0.02]
    got = []
    with WriterPool(slow_square, {"offset": 100}, writers=writers, depth=3) as pool:
        for x, delay in enumerate(delays):
            got += pool.submit(x, delay)
            assert len(pool.pending) < 3  # never more than depth in flight
        got += pool.drain()
    assert [value for value, _ in got] == [100 + x * x for x in range(len(delays))]
    pids = {pid for _, pid in got}
    assert (pids == {os.getpid()}) if writers == 0 else (os.getpid() not in pids)


def test_pool_passes_a_task_error_to_the_caller():
    if not fork_available():
        pytest.skip("no fork here")
    with WriterPool(slow_square, {"offset": None}, writers=1) as pool:
        with pytest.raises(TypeError):
            pool.submit(1, 0.0)
            pool.drain()


def test_more_than_65535_instances_need_a_tiff_mask(tmp_path):
    from segpipe.imageio import read_label_image

    labels = np.arange(1, 70001, dtype=np.uint32).reshape(280, 250)
    done = finish_image(row(), labels, mask_path=f"{tmp_path}/m.tif", meaning="instances",
                        objects_out=None)
    assert done["n_labels"] == done["n_objects"] == 70000
    np.testing.assert_array_equal(read_label_image(f"{tmp_path}/m.tif"), labels)
    with pytest.raises(ValueError, match="do not fit in a 16-bit PNG.*mask_format: tiff"):
        finish_image(row(), labels, mask_path=f"{tmp_path}/m.png", meaning="instances")


def test_imports_are_not_timed_in_the_first_image(tmp_path, monkeypatch):
    """The per-image runner warms a method up before timing images."""
    import time as time_module

    from segpipe import shard
    from segpipe.methods import get_method

    calls = []
    spec = get_method("threshold")

    def slow_first(grey, **kwargs):
        if not calls:
            time_module.sleep(0.3)  # as an import would
        calls.append(grey.shape)
        return spec.segment(grey, **kwargs)

    monkeypatch.setattr(shard, "get_method", lambda kind: dataclass_replace(spec, segment=slow_first))
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.full((8, 8), 200, np.uint8))
    table = shard.segment_images(["a.png"], input_dir=tmp_path / "in", method="m",
                                 settings={"kind": "threshold"}, shard="000000",
                                 masks_dir=tmp_path / "masks", edges_dir=tmp_path / "edges")
    assert calls[0] == (16, 16) and table.column("segment_s")[0].as_py() < 0.2


def dataclass_replace(spec, **changes):
    import dataclasses

    return dataclasses.replace(spec, **changes)
