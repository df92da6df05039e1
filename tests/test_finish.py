"""The shared way of finishing an image: mask file, statistics, objects, row."""

import os

import numpy as np
import pytest

from segpipe.errors import ImageReadError, OutputError
from segpipe.finish import Finishing, finish_image, record_failure
from segpipe.imageio import read_label_image
from segpipe.layout import shard_output_paths
from segpipe.table import empty_row


def row():
    r = empty_row(image_id="p/a.png", method="m", kind="threshold", shard="000000", params="{}")
    r.update(decode_s=0.5, segment_s=0.25)
    return r


def test_finish_image_writes_the_mask_and_completes_the_row(tmp_path):
    labels = np.array([[1, 1, 0, 0], [0, 0, 0, 2]], np.uint8)
    path = f"{tmp_path}/m/000000/000000-a.png.png"
    done = row()
    assert finish_image(done, labels, path, Finishing("instances")) is None
    assert done["status"] == "ok" and done["mask_path"] == path
    np.testing.assert_array_equal(read_label_image(done["mask_path"]), labels)
    assert (done["height"], done["width"], done["n_labels"], done["n_objects"]) == (2, 4, 2, 2)
    assert done["runtime_s"] == pytest.approx(0.75 + done["write_s"] + done["metrics_s"])


def test_a_long_image_name_gets_its_mask_written(tmp_path):
    (image_id,) = ids = ["z" * 250 + ".png"]
    path = shard_output_paths(str(tmp_path), ids)[image_id]
    done = row()
    finish_image(done, np.ones((2, 2), np.uint8), path, Finishing("foreground"))
    assert os.path.exists(done["mask_path"])


def test_a_failed_mask_write_fails_the_job_not_the_image(tmp_path, monkeypatch):
    # A folder that cannot be made (a file is in the way), as root too.
    (tmp_path / "m").write_bytes(b"not a folder")
    with pytest.raises(OutputError, match="cannot write .*a.png.png: a file stands where"):
        finish_image(row(), np.ones((2, 2), np.uint8), f"{tmp_path}/m/a.png.png",
                     Finishing("foreground"))
    # A full disk while writing: the temporary file is removed.
    import segpipe.imageio

    class FullDisk:
        def __init__(self, path, mode):
            self.fh = open(path, mode)  # noqa: SIM115 - closed in __exit__, as a file is

        def __enter__(self):
            return self

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(segpipe.imageio, "open", FullDisk, raising=False)
    (tmp_path / "ok").mkdir()
    with pytest.raises(OutputError, match="ok/a.png.png: no space left on device"):
        finish_image(row(), np.ones((2, 2), np.uint8), f"{tmp_path}/ok/a.png.png",
                     Finishing("foreground"))
    assert os.listdir(tmp_path / "ok") == []


def test_record_failure_raises_output_errors_again():
    with pytest.raises(OutputError):
        record_failure(row(), "in/a.png", OutputError("out/a.png", "no space left on device"))


def test_record_failure_names_the_file_and_the_cause(tmp_path):
    read = record_failure(row(), tmp_path / "a.png", ImageReadError(tmp_path / "a.png", "bad header"))
    assert read["status"] == "error" and "a.png" in read["error"] and "bad header" in read["error"]
    other = record_failure(row(), "in/a.png", ValueError("k too large"))
    assert other["error"] == "in/a.png: segmentation failed (ValueError: k too large)"


def test_more_than_65535_instances_need_a_tiff_mask(tmp_path):
    from segpipe.imageio import read_label_image

    labels = np.arange(1, 70001, dtype=np.uint32).reshape(280, 250)
    done = row()
    finish_image(done, labels, f"{tmp_path}/m.tif", Finishing("instances"))
    assert done["n_labels"] == done["n_objects"] == 70000
    np.testing.assert_array_equal(read_label_image(f"{tmp_path}/m.tif"), labels)
    with pytest.raises(ValueError, match="do not fit in a 16-bit PNG.*mask_format: tiff"):
        finish_image(row(), labels, f"{tmp_path}/m.png", Finishing("instances"))




def test_objects_are_measured_only_when_asked_and_only_for_labels_with_objects(tmp_path):
    labels = np.array([[1, 1, 0, 0], [0, 0, 0, 2]], np.uint8)
    grey = np.full((2, 4), 100, np.uint8)
    objects = finish_image(row(), labels, f"{tmp_path}/a.png", Finishing("instances", objects=True),
                           grey=grey)
    assert list(objects["label"]) == [1, 2] and list(objects["area"]) == [2, 1]
    assert "eccentricity" in objects
    basic = finish_image(row(), labels, f"{tmp_path}/b.png",
                         Finishing("instances", objects=True, shapes=False), grey=grey)
    assert "eccentricity" not in basic or all(v is None for v in basic["eccentricity"])
    for meaning in ("classes", "regions"):
        assert finish_image(row(), labels, f"{tmp_path}/c.png", Finishing(meaning, objects=True)) is None
