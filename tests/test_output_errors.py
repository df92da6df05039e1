"""Output problems in one clear line: the final path, the cause and what to do.

Every writer of the package raises :class:`segpipe.errors.OutputError` naming the file the
user asked for (never the temporary file it goes through), a failed removal of that
temporary file never hides the first error, the job fails instead of recording an error
row, and a workflow script shows the line without a traceback.
"""

import dataclasses
import errno
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import segpipe.imageio
import segpipe.table
from segpipe import methods
from segpipe.errors import OutputError
from segpipe.finish import Finishing, finish_image
from segpipe.imageio import temporary_path, write_bytes_atomic, write_labels
from segpipe.job import ShardJob, run_shard_job
from segpipe.layout import Layout
from segpipe.manifest import write_shards
from segpipe.pool import WriterPool, fork_available
from segpipe.table import ParquetWriterAtomic, empty_row, rows_to_table, write_table_atomic

from conftest import ROOT, blobs_image, encode, write_config

HINT_FOLDER = "make the folder writable or choose another --out / out_dir"
HINT_SPACE = "free space, then run again: finished shards are kept"

REAL_REPLACE, REAL_UNLINK, REAL_MKDIR = os.replace, os.unlink, os.mkdir


def strerror(code):
    return os.strerror(code)


def fail_renames_under(monkeypatch, folder, code):
    """``os.replace`` into ``folder`` fails with ``code``, as the system's rename does: its
    error names the temporary source file."""

    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst).startswith(os.fspath(folder)):
            raise OSError(code, strerror(code), os.fspath(src), os.fspath(dst))
        return REAL_REPLACE(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def fail_unlinks(monkeypatch, code):
    """Removing any ``.segpipe-*.tmp`` file fails too (a disk that fails every write)."""

    def unlink(path, *args, **kwargs):
        if os.path.basename(os.fspath(path)).startswith(".segpipe-"):
            raise OSError(code, strerror(code), os.fspath(path))
        return REAL_UNLINK(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)


def assert_one_line(err, path, cause, hint):
    message = str(err)
    assert message == f"cannot write {path}: {cause} ({hint})"
    assert "\n" not in message and ".segpipe-" not in message and ".tmp" not in message
    assert isinstance(err.__cause__, OSError)  # kept for debugging


# -- the atomic byte writer: every mask, JSON file, figure and page goes through it ------


@pytest.mark.parametrize(("code", "cause", "hint"), [
    (errno.EROFS, "read-only file system", HINT_FOLDER),
    (errno.EACCES, "permission denied", HINT_FOLDER),
    (errno.ENOSPC, "no space left on device", HINT_SPACE),
    (errno.EDQUOT, "disk quota exceeded", HINT_SPACE),
    (errno.EIO, "input/output error",
     "fix the output folder, then run again: finished shards are kept"),
])
def test_a_failed_rename_names_the_final_file_the_cause_and_what_to_do(tmp_path, monkeypatch,
                                                                        code, cause, hint):
    path = tmp_path / "results/masks/ws/000004/000003-x.tif"
    fail_renames_under(monkeypatch, tmp_path, code)
    with pytest.raises(OutputError) as caught:
        write_bytes_atomic(path, b"data")
    assert_one_line(caught.value, path, cause, hint)
    assert caught.value.__cause__.errno == code
    assert os.listdir(path.parent) == []  # neither the file nor its temporary one


def test_a_failed_open_names_the_final_file(tmp_path, monkeypatch):
    def full_disk(file, mode="r", *args, **kwargs):
        raise OSError(errno.ENOSPC, strerror(errno.ENOSPC), os.fspath(file))

    monkeypatch.setattr(segpipe.imageio, "open", full_disk, raising=False)
    path = tmp_path / "summary/coco_m.json"
    with pytest.raises(OutputError) as caught:
        write_bytes_atomic(path, b"[]")
    assert_one_line(caught.value, path, "no space left on device", HINT_SPACE)


def test_a_failing_cleanup_never_hides_the_first_error(tmp_path, monkeypatch, caplog):
    path = tmp_path / "out/a.png"
    fail_renames_under(monkeypatch, tmp_path, errno.ENOSPC)
    fail_unlinks(monkeypatch, errno.EROFS)
    with caplog.at_level("DEBUG"), pytest.raises(OutputError) as caught:
        write_bytes_atomic(path, b"data")
    assert_one_line(caught.value, path, "no space left on device", HINT_SPACE)
    assert "read-only" not in str(caught.value)
    # The cleanup's own failure is only a debug line.
    assert [r.levelname for r in caplog.records if "temporary" in r.getMessage()] == ["DEBUG"]


def test_an_error_without_errno_keeps_its_words_with_the_final_name(tmp_path):
    from segpipe.imageio import output_errors

    path = tmp_path / "t.parquet"
    tmp = temporary_path(path)
    with pytest.raises(OutputError) as caught, output_errors(path, temporary=tmp):
        raise OSError(f"Failed to write '{tmp}': bad block")
    assert str(caught.value).startswith(f"cannot write {path}: Failed to write '{path}': bad")
    assert ".segpipe-" not in str(caught.value)


def test_a_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "masks").write_bytes(b"a file where a folder goes")
    with pytest.raises(OutputError, match=r"cannot write .*masks/m/a\.png: a file stands where "
                                          r"a folder should be \(move that file away"):
        write_bytes_atomic(tmp_path / "masks/m/a.png", b"data")


# -- masks in every format and edge maps --------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(set(segpipe.imageio.MASK_SUFFIXES.values())))
def test_masks_of_every_format_and_edge_maps_name_their_file(tmp_path, monkeypatch, suffix):
    labels = np.array([[0, 1], [2, 2]], np.uint8)
    row = empty_row(image_id="a.png", method="m", kind="edges", shard="000000", params="{}")
    row.update(decode_s=0.0, segment_s=0.0)
    mask = tmp_path / f"masks/m/000000/000000-a{suffix}"
    edge = tmp_path / "edges/m/000000/000000-a.png"
    fail_renames_under(monkeypatch, tmp_path / "masks", errno.EROFS)
    with pytest.raises(OutputError) as caught:
        write_labels(mask, labels)
    assert_one_line(caught.value, mask, "read-only file system", HINT_FOLDER)
    monkeypatch.undo()
    fail_renames_under(monkeypatch, tmp_path / "edges", errno.ENOSPC)
    with pytest.raises(OutputError) as caught:
        finish_image(row, labels, str(mask), Finishing("regions"), edge_map=labels,
                     edge_path=str(edge))
    assert_one_line(caught.value, edge, "no space left on device", HINT_SPACE)
    assert row["status"] is None  # not an image's result


# -- Parquet tables -----------------------------------------------------------------------


def test_a_table_names_its_final_path_not_the_temporary_one(tmp_path, monkeypatch):
    table = pa.table({"x": [1, 2]})
    path = tmp_path / "metrics/m/000000.parquet"
    fail_renames_under(monkeypatch, tmp_path, errno.EROFS)
    with pytest.raises(OutputError) as caught:
        write_table_atomic(table, path)
    assert_one_line(caught.value, path, "read-only file system", HINT_FOLDER)
    with pytest.raises(OutputError) as caught, ParquetWriterAtomic(path, table.schema) as writer:
        writer.write(table)
    assert_one_line(caught.value, path, "read-only file system", HINT_FOLDER)
    assert os.listdir(path.parent) == []


def test_a_table_that_cannot_be_opened_names_its_final_path(tmp_path, monkeypatch):
    class ReadOnly:
        def __init__(self, where, *args, **kwargs):
            # Arrow's own words name the file it was given: the temporary one.
            raise OSError(errno.EROFS, f"Failed to open local file '{where}'. Detail: "
                                       "[errno 30] Read-only file system")

    monkeypatch.setattr(segpipe.table.pq, "ParquetWriter", ReadOnly)
    path = tmp_path / "summary/metrics.parquet"
    with pytest.raises(OutputError) as caught:
        ParquetWriterAtomic(path, pa.schema([("x", pa.int64())]))
    assert_one_line(caught.value, path, "read-only file system", HINT_FOLDER)


def test_a_table_write_and_its_cleanup_failing_report_the_write(tmp_path, monkeypatch):
    class FillsTheDisk(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            raise OSError(errno.ENOSPC, strerror(errno.ENOSPC))

        def close(self):
            super().close()
            raise OSError(errno.EIO, strerror(errno.EIO))

    monkeypatch.setattr(segpipe.table.pq, "ParquetWriter", FillsTheDisk)
    fail_unlinks(monkeypatch, errno.EROFS)
    path = tmp_path / "summary/objects.parquet"
    table = pa.table({"x": [1]})
    with pytest.raises(OutputError) as caught, ParquetWriterAtomic(path, table.schema) as writer:
        writer.write(table)
    assert_one_line(caught.value, path, "no space left on device", HINT_SPACE)


def test_the_summary_names_the_summary_file(tmp_path, monkeypatch):
    from segpipe.summary import merge_metrics

    row = empty_row(image_id="a.png", method="m", kind="threshold", shard="000000", params="{}")
    row.update(status="ok", runtime_s=0.1)
    shard_table = tmp_path / "metrics/m/000000.parquet"
    write_table_atomic(rows_to_table([row]), shard_table)
    summary = tmp_path / "summary"
    fail_renames_under(monkeypatch, summary, errno.EDQUOT)
    with pytest.raises(OutputError) as caught:
        merge_metrics([shard_table], metrics_out=summary / "metrics.parquet",
                      methods_out=summary / "methods.parquet")
    assert_one_line(caught.value, summary / "metrics.parquet", "disk quota exceeded", HINT_SPACE)


# -- the listing's shard files ------------------------------------------------------------


def test_shard_files_name_their_path(tmp_path, monkeypatch):
    shards = tmp_path / "manifest/shards"
    write_shards(shards, {"000000": ["a.png"], "000001": ["b.png"]})

    def unlink(path, *args, **kwargs):
        raise OSError(errno.EROFS, strerror(errno.EROFS), os.fspath(path))

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(OutputError) as caught:
        write_shards(shards, {"000000": ["a.png"]})  # 000001 is gone: its file goes
    assert_one_line(caught.value, shards / "000001.json", "read-only file system", HINT_FOLDER)
    monkeypatch.undo()
    fail_renames_under(monkeypatch, shards, errno.ENOSPC)
    with pytest.raises(OutputError) as caught:
        write_shards(shards, {"000000": ["a.png", "c.png"]})
    assert_one_line(caught.value, shards / "000000.json", "no space left on device", HINT_SPACE)


# -- jobs: an output failure fails the job, it is never an image's error row ---------------


def shard_job(tmp_path, settings, names):
    (tmp_path / "in").mkdir()
    for k, name in enumerate(names):
        image = np.zeros((8, 8), np.uint8)
        image[2:4, 2 + k:4 + k] = 200
        cv2.imwrite(str(tmp_path / "in" / name), image)
    write_shards(tmp_path / "shards", {"000000": names})
    return ShardJob(method="m", settings=settings, shard_file=str(tmp_path / "shards/000000.json"),
                    input_dir=str(tmp_path / "in"), metrics_out=str(tmp_path / "m.parquet"),
                    objects_out=str(tmp_path / "o.parquet"), layout=Layout(str(tmp_path / "out")))


def test_a_read_only_masks_folder_fails_the_job_without_error_rows(tmp_path, monkeypatch):
    job = shard_job(tmp_path, {"kind": "threshold"}, ["a.png", "b.png"])
    masks = tmp_path / "out/masks"
    fail_renames_under(monkeypatch, masks, errno.EROFS)
    with pytest.raises(OutputError) as caught:
        run_shard_job(job)
    assert_one_line(caught.value, masks / "m/000000/000000-a.png", "read-only file system",
                    HINT_FOLDER)
    # No table: Snakemake does not count the shard as done, and a rerun redoes it.
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "o.parquet").exists()
    monkeypatch.undo()
    run_shard_job(job)
    assert (pd.read_parquet(tmp_path / "m.parquet")["status"] == "ok").all()


def test_a_masks_folder_that_cannot_be_made_fails_the_job_naming_it(tmp_path, monkeypatch):
    job = shard_job(tmp_path, {"kind": "threshold"}, ["a.png"])
    folder = tmp_path / "out/masks/m/000000"

    def mkdir(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(folder):
            raise OSError(errno.EROFS, strerror(errno.EROFS), os.fspath(path))
        return REAL_MKDIR(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(OutputError) as caught:
        run_shard_job(job)
    assert_one_line(caught.value, folder, "read-only file system", HINT_FOLDER)


class OneSquare:
    """A batch kind's model that finds one square per image."""

    def __init__(self):
        self.concurrent_batches = 1
        self.class_names = ("background", "square")
        self.stage_s = {}

    def canvas_of(self, height, width):
        return (height, width)

    def predict(self, tensors, batch_size, *, on_fail):
        from segpipe.maskrcnn.inference import Detections

        found = []
        for t in tensors:
            labels = np.zeros(t.shape[-2:], np.uint8)
            labels[1:3, 1:3] = 1
            found.append(Detections(labels=labels, boxes=np.array([[1, 1, 3, 3]], np.float32),
                                    class_ids=np.array([1]), scores=np.array([0.9], np.float32),
                                    areas=np.array([4]), runs=[np.array([9, 11, 17, 19])]))
        return found, batch_size


@pytest.mark.parametrize("writers", [0, 1])
def test_the_batch_runner_fails_the_job_from_its_writer_processes(tmp_path, monkeypatch, writers):
    if writers and not fork_available():
        pytest.skip("no fork here: writer processes are not used")
    spec = methods.MethodSpec("fake", print, "instances", "rgb", runner="batch",
                              load=lambda **settings: OneSquare())
    monkeypatch.setitem(methods.REGISTRY, "fake", spec)
    settings = {"kind": "fake", "batch_size": 2, "workers": 0, "writers": writers}
    job = dataclasses.replace(shard_job(tmp_path, settings, ["a.png", "b.png", "c.png"]),
                              instances_out=str(tmp_path / "i.parquet"))
    masks = tmp_path / "out/masks"
    fail_renames_under(monkeypatch, masks, errno.ENOSPC)  # inherited by the forked writers
    with pytest.raises(OutputError) as caught:
        run_shard_job(job)
    assert str(caught.value) == (f"cannot write {masks}/m/000000/000000-a.png: no space left on "
                                 f"device ({HINT_SPACE})")
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "i.parquet").exists()


def raise_output_error(context, path):
    raise OutputError.from_os_error(path, OSError(errno.EROFS, "Read-only file system"))


def test_the_writer_pool_carries_the_error_back_whole():
    if not fork_available():
        pytest.skip("no fork here")
    with WriterPool(raise_output_error, None, writers=1) as pool, \
            pytest.raises(OutputError) as caught:
        pool.submit("results/masks/m/000000/000000-a.png")
        pool.drain()
    err = caught.value
    assert (err.path, err.cause, err.hint) == ("results/masks/m/000000/000000-a.png",
                                               "read-only file system", HINT_FOLDER)
    assert str(err) == (f"cannot write results/masks/m/000000/000000-a.png: read-only file "
                        f"system ({HINT_FOLDER})")


# -- workflow scripts: one line on stderr, no traceback ------------------------------------


SCRIPT = """
from segpipe.errors import InputDirError, OutputError, one_line_errors
from segpipe.logs import log_to_file

with one_line_errors():
    log_to_file({log!r})
    raise {error}
"""


@pytest.mark.parametrize(("error", "message"), [
    ("OutputError('summary/m.parquet', 'read-only file system', 'make it writable')",
     "cannot write summary/m.parquet: read-only file system (make it writable)"),
    ("InputDirError(\"input_dir 'x' does not exist or is not a folder\")",
     "input_dir 'x' does not exist or is not a folder"),
])
def test_a_script_prints_segpipes_errors_in_one_line_and_exits_1(tmp_path, error, message):
    log = tmp_path / "job.log"
    code = textwrap.dedent(SCRIPT).format(log=str(log), error=error)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"segpipe: {message}\n"
    assert "Traceback" not in log.read_text() and message in log.read_text()


def test_a_script_keeps_the_traceback_of_a_bug(tmp_path):
    code = textwrap.dedent(SCRIPT).format(log=str(tmp_path / "job.log"),
                                          error="KeyError('bug')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "KeyError" in proc.stderr


# -- end to end: a masks folder that is truly read-only ------------------------------------


BIND_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def read_only_mounts_available(probe):
    """Why a read-only bind mount cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "read-only bind mounts need root (chmod does not stop root's writes)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "no unshare or mount command"
    probe.mkdir()
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", BIND_READ_ONLY, "sh",
         str(probe), "sh", "-c", f"touch '{probe}/x'"],
        capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return "a read-only bind mount was still writable here"
    if "Read-only file system" not in proc.stderr:
        return f"no private mount namespace with a read-only bind mount: {proc.stderr.strip()}"
    return None


@pytest.mark.e2e
def test_a_read_only_masks_folder_fails_the_run_in_one_line_and_a_rerun_completes(tmp_path):
    reason = read_only_mounts_available(tmp_path / "probe")
    if reason:
        pytest.skip(reason)
    images = tmp_path / "images"
    images.mkdir()
    for k, name in enumerate(["a.png", "b.png"]):
        (images / name).write_bytes(encode(blobs_image(k), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), shard_size=10,
                       mask_format="tiff", methods={"ws": {"kind": "watershed"}})
    work = tmp_path / "work"
    # The job's own folder exists and is read-only: its first mask cannot be written.
    masks = work / "results/masks"
    (masks / "ws/000000").mkdir(parents=True)
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d",
                 str(work), "--cores", "2", "--rerun-incomplete", "--configfile", str(cfg)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    failed = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", BIND_READ_ONLY, "sh",
         str(masks), *snakemake], capture_output=True, text=True, env=env, cwd=work, check=False)
    assert failed.returncode != 0
    line = ("segpipe: cannot write results/masks/ws/000000/000000-a.tif: read-only file system "
            f"({HINT_FOLDER})")
    assert line in failed.stderr.splitlines()
    log = (work / "logs/segment_shard/ws/000000.log").read_text()
    assert line.removeprefix("segpipe: ") in log
    assert "Traceback" not in failed.stderr and "Traceback" not in log
    assert not (work / "results/metrics/ws/000000.parquet").exists()
    # Writable again (outside the namespace it always was): the rerun redoes the shard.
    done = subprocess.run(snakemake, capture_output=True, text=True, env=env, cwd=work,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_parquet(work / "results/summary/metrics.parquet")
    assert sorted(rows["image_id"]) == ["a.png", "b.png"] and (rows["status"] == "ok").all()
