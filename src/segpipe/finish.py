"""Finishing an image, the same way for every runner: mask file, statistics, scores, row.

The per-image runner finishes each image in its loop; the batch runner finishes images in
a pool of writer processes while the device works on the next batch
(:class:`segpipe.pool.WriterPool`). Both fill rows through :func:`finish_image` and report
failures through :func:`record_failure`, so a row means the same whichever runner wrote it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segpipe.errors import ImageReadError, OutputError
from segpipe.imageio import write_labels
from segpipe.label_stats import label_stats

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finishing:
    """How a job finishes each of its images, whatever its runner.

    Attributes
    ----------
    meaning : {"foreground", "classes", "regions", "instances"}
        What the labels mean (the method's ``MethodSpec.labels``): decides the scores that
        apply and what the objects are.
    ground_truth : segpipe.ground_truth.GroundTruth, optional
        Scores each image against it, in the same row.
    objects : bool
        Measure the image's objects (one row each in the objects table), for labels that
        have objects.
    shapes : bool
        Shape and intensity columns too (``measure_objects``), not only label, area, box
        and score.
    """

    meaning: str
    ground_truth: object = None
    objects: bool = False
    shapes: bool = True

    @property
    def measures_objects(self) -> bool:
        """Whether this job's images get object rows at all."""
        return self.objects and self.meaning in ("foreground", "instances")


def finish_image(row: dict[str, Any], labels: np.ndarray, mask_path: str, how: Finishing, *,
                 edge_map: np.ndarray | None = None, edge_path: str | None = None,
                 grey: np.ndarray | None = None,
                 scores: Sequence[float] | np.ndarray | None = None) -> dict[str, Any] | None:
    """Write an image's label image (and edge map), measure it, and complete its row.

    Parameters
    ----------
    row : dict
        The image's row (:func:`segpipe.table.empty_row`); updated in place. ``decode_s``
        and ``segment_s`` must be set; ``write_s``, ``metrics_s`` and ``runtime_s`` are
        added.
    labels : (M, N) ndarray of uint8 or uint16
    mask_path : str
        Where the label image goes; recorded as ``mask_path``.
    how : Finishing
    edge_map : (M, N) ndarray, optional
        Written to ``edge_path`` and recorded as ``edge_path``.
    grey : (M, N) ndarray, optional
        The intensity image objects are measured on.
    scores : sequence of float, optional
        Per label 1..K: the method's own confidences (batch kinds).

    Returns
    -------
    dict or None
        The image's per-object columns (:func:`segpipe.measure.measure_objects`), or None
        when ``how`` measures no objects.

    Raises
    ------
    OutputError
        If a file cannot be written: the job must fail, not the image.
    """
    from segpipe.evaluation import objects_of

    t0 = time.perf_counter()
    write_labels(mask_path, labels)
    if edge_map is not None:
        write_labels(edge_path, edge_map)
        row["edge_path"] = edge_path
    t1 = time.perf_counter()
    row.update(label_stats(labels, how.meaning))
    if how.ground_truth is not None:
        row.update(how.ground_truth.score(row["image_id"], labels, pred_meaning=how.meaning))
    objects = None
    if how.measures_objects:
        from segpipe.measure import measure_objects

        objects = measure_objects(
            objects_of(labels, how.meaning), grey, image_id=row["image_id"],
            method=row["method"], scores=scores, shape=how.shapes,
        )
    complete_row(row, mask_path, labels.shape, write_s=t1 - t0,
                 metrics_s=time.perf_counter() - t1)
    return objects


def complete_row(row: dict[str, Any], mask_path: str, shape: tuple[int, ...], *,
                 write_s: float, metrics_s: float) -> None:
    """Mark a finished image's row ok, with its mask, size and times."""
    row.update(
        status="ok",
        mask_path=mask_path,
        height=int(shape[0]),
        width=int(shape[1]),
        write_s=write_s,
        metrics_s=metrics_s,
    )
    row["runtime_s"] = row["decode_s"] + row["segment_s"] + row["write_s"] + row["metrics_s"]


def record_failure(row: dict[str, Any], path: str | os.PathLike,
                   err: Exception) -> dict[str, Any]:
    """Turn an exception raised while handling one image into its error row.

    An :class:`ImageReadError` already names the file and the cause; anything else is
    logged with its traceback and named as a failed segmentation of ``path``. An
    :class:`OutputError` is not the image's fault: it is raised again, to fail the job
    (an error row would record our disk's problem as the image's result, and the shard
    as done).
    """
    if isinstance(err, OutputError):
        raise err
    if isinstance(err, ImageReadError):
        row.update(status="error", error=str(err))
    else:
        log.error("segmenting %s failed", path, exc_info=err)
        row.update(status="error", error=f"{path}: segmentation failed ({type(err).__name__}: {err})")
    log.warning(row["error"])
    return row
