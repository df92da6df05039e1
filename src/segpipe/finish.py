"""Finishing an image, the same way for every runner: mask file, statistics, scores, row.

The classical runner finishes each image in its loop; the Mask R-CNN runner finishes
images in a pool of writer processes while the GPU works on the next batch
(:class:`WriterPool`). Both fill rows through :func:`finish_image` and report failures
through :func:`record_failure`, so a row means the same whichever runner wrote it.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

from segpipe.errors import ImageReadError, OutputWriteError
from segpipe.imageio import write_labels
from segpipe.label_stats import label_stats

log = logging.getLogger(__name__)


# Longest part of an output file name taken from the image's name, in UTF-8 bytes: with
# the index and ".png", output names stay far below the 255-byte limit of file systems.
NAME_BYTES = 64


def output_name(index, image_id, suffix=".png"):
    """The file name of an image's mask (and edge map) inside its shard's folder.

    ``{index}-{stem}{suffix}``: the image's position in its shard, which makes names
    unique whatever the image names are (``c.png`` and ``c.jpg``, or ``c.png`` and
    ``c.png.png/i.png``, cannot meet), then its file name without its extension,
    characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_`` and cut
    to :data:`NAME_BYTES` bytes, so a reader can tell which image it is. The row's
    ``mask_path`` records the exact path.

    >>> output_name(3, "plate1/a b.jpg")
    '000003-a_b.png'
    >>> output_name(0, "cells.ome.tif", ".tif")
    '000000-cells.ome.tif'
    >>> output_name(4, "stack.tif#t=0,z=3")
    '000004-stack_t0_z3.png'
    >>> len(output_name(0, "x" * 250 + ".png"))
    75
    """
    from segpipe.planes import split_plane

    rel, plane = split_plane(image_id)
    name = PurePosixPath(rel).stem + "".join(f"_{a}{k}" for a, k in plane.items())
    name = re.sub(r"[^\w.-]", "_", name) or "_"
    name = name.encode("utf-8")[:NAME_BYTES].decode("utf-8", "ignore")
    return f"{index:06d}-{name}{suffix}"


def shard_output_paths(root, method, shard, image_ids, suffix=".png"):
    """Image id to its output path under ``root/method/shard/`` (masks or edge maps).

    One folder per shard keeps every folder to at most ``shard_size`` entries, however
    flat the input folder is (10^6 files in one folder slow every listing on a shared
    file system).

    >>> shard_output_paths("results/masks", "otsu", "000003", ["plate1/a.jpg"])
    {'plate1/a.jpg': 'results/masks/otsu/000003/000000-a.png'}
    """
    return {i: f"{root}/{method}/{shard}/{output_name(k, i, suffix)}"
            for k, i in enumerate(image_ids)}


def prepare_shard_folder(folder, keep):
    """Empty ``folder`` of everything but the files named in ``keep``, creating it if needed.

    A job owns its shard's mask and edge-map folders: what else is there is left over,
    from images since removed or renamed, from an older layout, or temporary files of a
    killed run. Removing it at the start of the job leaves exactly the current images'
    files once the job ends.
    """
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = {PurePosixPath(k).name for k in keep}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name in keep and entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError as err:
                # A stale file that will not go (an NFS ".nfs*" placeholder of a file still
                # open elsewhere) must not cost the shard its results.
                log.warning("could not remove stale %s (%s)", entry.path, err.strerror or err)


def finish_image(row, labels, *, mask_path, meaning, ground_truth=None, edge_map=None,
                 edge_path=None, objects_out=None, grey=None, measure=True, scores=None,
                 class_names=None):
    """Write an image's label image (and edge map), measure it, and complete its row.

    Parameters
    ----------
    row : dict
        The image's row (:func:`segpipe.table.empty_row`); updated in place and returned.
        ``decode_s`` and ``segment_s`` must be set; ``write_s``, ``metrics_s`` and
        ``runtime_s`` are added.
    labels : (M, N) ndarray of uint8 or uint16
    mask_path : str
        Where the label image goes (:func:`shard_output_paths`); recorded as ``mask_path``.
    meaning : {"foreground", "classes", "regions", "instances"}
        What the labels mean (the method's ``MethodSpec.labels``): decides the scores that
        apply and what the objects are.
    ground_truth : segpipe.ground_truth.GroundTruth, optional
    edge_map : (M, N) ndarray, optional
        Written to ``edge_path`` and recorded as ``edge_path``.
    objects_out : list, optional
        Receives the image's per-object columns (:func:`segpipe.measure.measure_objects`)
        when the labels have objects; None measures no object.
    grey : (M, N) ndarray, optional
        The intensity image objects are measured and scored on.
    measure : bool
        Shape and intensity columns too (``measure_objects``), not only label, area, box
        and score.
    scores, class_names : sequence, optional
        Per label 1..K: the method's own confidences and class names (Mask R-CNN).

    Returns
    -------
    dict
        ``row``.

    Raises
    ------
    OutputWriteError
        If a file cannot be written: the job must fail, not the image.
    """
    from segpipe.evaluation import objects_of

    t0 = time.perf_counter()
    _write(mask_path, labels)
    if edge_map is not None:
        _write(edge_path, edge_map)
        row["edge_path"] = edge_path
    t1 = time.perf_counter()
    row.update(label_stats(labels, meaning))
    if ground_truth is not None:
        row.update(ground_truth.score(row["image_id"], labels, pred_meaning=meaning))
    if objects_out is not None and meaning in ("foreground", "instances"):
        from segpipe.measure import measure_objects

        objects_out.append(measure_objects(
            objects_of(labels, meaning), grey, image_id=row["image_id"], method=row["method"],
            scores=scores, class_names=class_names, shape=measure,
        ))
    t2 = time.perf_counter()
    row.update(
        status="ok",
        mask_path=mask_path,
        height=int(labels.shape[0]),
        width=int(labels.shape[1]),
        write_s=t1 - t0,
        metrics_s=t2 - t1,
    )
    row["runtime_s"] = row["decode_s"] + row["segment_s"] + row["write_s"] + row["metrics_s"]
    return row


def _write(path, array):
    try:
        write_labels(path, array)
    except OSError as err:
        raise OutputWriteError(path, err.strerror or str(err)) from err


def record_failure(row, path, err):
    """Turn an exception raised while handling one image into its error row.

    An :class:`ImageReadError` already names the file and the cause; anything else is
    logged with its traceback and named as a failed segmentation of ``path``. An
    :class:`OutputWriteError` is not the image's fault: it is raised again, to fail the job.
    """
    if isinstance(err, OutputWriteError):
        raise err
    if isinstance(err, ImageReadError):
        row.update(status="error", error=str(err))
    else:
        log.error("segmenting %s failed", path, exc_info=err)
        row.update(status="error", error=f"{path}: segmentation failed ({type(err).__name__}: {err})")
    log.warning(row["error"])
    return row


_CONTEXT = None


def _init_writer(context):
    global _CONTEXT
    _CONTEXT = context


def _call(task, args):
    return task(_CONTEXT, *args)


def fork_available():
    """Whether writer processes can be forked (POSIX, not macOS's default)."""
    return "fork" in multiprocessing.get_all_start_methods()


class WriterPool:
    """Runs ``task(context, *args)`` per image, in ``writers`` processes or inline.

    Results come back in submission order. At most ``depth`` tasks wait or run at once:
    :meth:`submit` blocks on the oldest beyond that, so memory is bounded by ``depth``
    images, never by the size of the shard.

    The processes are forked at construction: create the pool before CUDA is initialised
    and before loader threads start. Forking (rather than spawning) matters under
    Snakemake's ``script:``, whose generated script has no ``__main__`` guard for a spawned
    child to respect.

    Parameters
    ----------
    task : callable
        A module-level function ``task(context, *args) -> result``.
    context : object
        Passed to every call; sent to each process once.
    writers : int
        Processes; 0 runs each task inline in :meth:`submit`.
    depth : int, optional
        Most tasks in flight (default ``2 * writers``).
    """

    def __init__(self, task, context, *, writers, depth=None):
        self.task = task
        self.context = context
        self.depth = max(1, depth or 2 * writers)
        self.pending = collections.deque()
        self.wait_s = 0.0
        self.executor = None
        if writers > 0:
            import cv2

            self.executor = ProcessPoolExecutor(
                writers, mp_context=multiprocessing.get_context("fork"),
                initializer=_init_writer, initargs=(context,),
            )
            # One core per writer: OpenCV's threads would fight the other writers. Set in
            # the parent around the fork, because cv2.setNumThreads hangs in a forked child
            # of a process whose OpenCV thread pool has run.
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                # With fork, the executor starts all its processes at the first submit: now.
                self.executor.submit(int).result()
            finally:
                cv2.setNumThreads(threads)

    def submit(self, *args):
        """Queue one task; return the results that completed, oldest first."""
        if self.executor is None:
            return [self.task(self.context, *args)]
        self.pending.append(self.executor.submit(_call, self.task, args))
        done = []
        while len(self.pending) >= self.depth or (self.pending and self.pending[0].done()):
            done.append(self._next())
        return done

    def drain(self):
        """Wait for every queued task; return their results, oldest first."""
        done = []
        while self.pending:
            done.append(self._next())
        return done

    def _next(self):
        t0 = time.perf_counter()
        result = self.pending.popleft().result()
        self.wait_s += time.perf_counter() - t0
        return result

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
