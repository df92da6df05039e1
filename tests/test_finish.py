"""The shared way of finishing an image, and the writer pool that runs it beside the GPU."""

import os
import time

import numpy as np
import pytest

from segpipe.errors import ImageReadError
from segpipe.finish import WriterPool, finish_image, fork_available, record_failure
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
    done = finish_image(row(), labels, masks_dir=str(tmp_path), pred_instances=True)
    assert done["status"] == "ok" and done["mask_path"] == f"{tmp_path}/m/000000/p/a.png.png"
    np.testing.assert_array_equal(read_label_image(done["mask_path"]), labels)
    assert (done["height"], done["width"], done["n_labels"], done["n_objects"]) == (2, 4, 2, 2)
    assert done["runtime_s"] == pytest.approx(0.75 + done["write_s"] + done["metrics_s"])


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
