"""One shard job, whatever its runner: the work of one Snakemake ``segment_shard*`` job.

The frame owns everything the runners share:

- reading the shard's image list and planning its output paths (:class:`ShardPlan`);
- preparing the shard's folders (stale files of earlier runs removed);
- the rows, objects and instances of the images, one error policy, progress
  (:class:`ShardResults`);
- the atomic table writes at the end (:func:`run_shard_job`).

A runner only turns the shard's images into label images and hands each image's outcome
to :class:`ShardResults`: :mod:`segpipe.image_runner` one image at a time,
:mod:`segpipe.batch_runner` in batches on a device. The method's descriptor
(``MethodSpec.runner``) chooses it, never the kind's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.finish import Finishing, record_failure
from segpipe.imageio import DEFAULT_MAX_PIXELS, MASK_SUFFIXES, output_errors
from segpipe.layout import WEIGHTS_DIR, Layout, shard_output_paths
from segpipe.planes import DEFAULT_READING, Reading, for_plane, split_plane
from segpipe.progress import Progress
from segpipe.table import empty_row, params_json
from segpipe.tiles import DEFAULT_MAX_TILED_PIXELS, parse_tiling

if TYPE_CHECKING:
    from snakemake.script import Snakemake

    from segpipe.methods import MethodSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardJob:
    """Everything one (method, shard) job is given: its rule's input, outputs and params.

    Attributes
    ----------
    method : str
        The method's name in the config (the ``method`` column and its output folders).
    settings : mapping
        The method's resolved settings, ``kind`` included.
    shard_file : str
        The shard's image list (``manifest/shards/{shard}.json``).
    input_dir : str
    metrics_out : str
        The metrics table this job writes.
    objects_out, instances_out : str, optional
        The objects table and (batch kinds) the instances table it writes.
    layout : segpipe.layout.Layout
        Where the masks and edge maps go.
    ground_truth : segpipe.ground_truth.GroundTruth, optional
    threads : int
        The job's cores.
    max_pixels : int
        Larger images get an error row without being decoded (``max_image_pixels``).
    measure_objects : bool
        Shape and intensity columns in the objects table.
    mask_format : {"png", "tiff", "zarr"}
    reading : segpipe.planes.Reading
        Channel, slice, time point and intensity range of the images.
    weights_dir : str
        Where named model weights are read from.
    tiles : Tiling, "auto" or None
        The method's tiles setting (its own, or the run's): see :mod:`segpipe.tiles`.
    memory_mb : int, optional
        The job's memory (its rule's ``mem_mb``): ``tiles: auto`` tiles an image that
        would not fit in it whole.
    max_tiled_pixels : int
        Larger tiled images get an error row.
    """

    method: str
    settings: Mapping = field(hash=False)
    shard_file: str
    input_dir: str
    metrics_out: str
    objects_out: str | None = None
    instances_out: str | None = None
    layout: Layout = field(default_factory=Layout)
    ground_truth: object = None
    threads: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    measure_objects: bool = True
    mask_format: str = "png"
    reading: Reading = DEFAULT_READING
    weights_dir: str = WEIGHTS_DIR
    tiles: object = None
    memory_mb: int | None = None
    max_tiled_pixels: int = DEFAULT_MAX_TILED_PIXELS

    @property
    def spec(self) -> MethodSpec:
        """The method's registry entry (:class:`segpipe.methods.MethodSpec`)."""
        from segpipe.methods import get_method

        return get_method(self.settings["kind"])

    @property
    def options(self) -> dict:
        """The settings the method's function takes: all but ``kind`` and ``tiles`` (the
        runner's)."""
        return {k: v for k, v in self.settings.items() if k not in ("kind", "tiles")}

    @property
    def shard(self) -> str:
        return Path(self.shard_file).stem

    @property
    def finishing(self) -> Finishing:
        """Objects are measured when ``measure_objects`` is set or there is ground truth
        (COCO AP ranks the objects by their scores), and only into an objects table."""
        wanted = self.objects_out is not None and (
            self.measure_objects or self.ground_truth is not None)
        return Finishing(self.spec.labels, self.ground_truth, objects=wanted,
                         shapes=self.measure_objects)

    @classmethod
    def from_snakemake(cls, smk: Snakemake) -> ShardJob:
        """The job of a ``segment_shard*`` rule, from a script's ``snakemake`` object."""
        from segpipe.ground_truth import load_ground_truth

        return cls(
            method=smk.wildcards.method,
            settings=dict(smk.params.settings),
            shard_file=smk.input.shard,
            input_dir=smk.params.input_dir,
            metrics_out=smk.output.metrics,
            objects_out=smk.output.get("objects"),
            instances_out=smk.output.get("instances"),
            layout=Layout(smk.params.out_dir),
            ground_truth=load_ground_truth(smk.params.truth),
            threads=smk.threads,
            max_pixels=smk.params.max_image_pixels,
            measure_objects=smk.params.measure_objects,
            mask_format=smk.params.mask_format,
            reading=Reading.from_config(smk.params.reading),
            weights_dir=smk.params.weights_dir,
            tiles=parse_tiling(smk.params.tiles),
            memory_mb=smk.resources.get("mem_mb"),
            max_tiled_pixels=smk.params.max_tiled_pixels,
        )


@dataclass(frozen=True)
class ShardPlan:
    """The shard's images and where each one's outputs go.

    Attributes
    ----------
    image_ids : tuple of str
        Paths relative to ``input_dir`` (with ``#z=..`` for a plane of a stack).
    mask_paths, edge_paths : dict
        Image id to its label image and edge map.
    """

    image_ids: tuple
    mask_paths: dict
    edge_paths: dict

    @classmethod
    def of(cls, job: ShardJob) -> ShardPlan:
        """Read the shard's list and prepare its folders: stale files of earlier runs go."""
        from segpipe.cleanup import prepare_shard_folder
        from segpipe.manifest import read_shard

        image_ids = tuple(read_shard(job.shard_file))
        masks = job.layout.masks(job.method, job.shard)
        edges = job.layout.edges(job.method, job.shard)
        plan = cls(image_ids, shard_output_paths(masks, image_ids, MASK_SUFFIXES[job.mask_format]),
                   shard_output_paths(edges, image_ids))
        # A folder that cannot be made (read-only, full) fails the job here, in one line.
        with output_errors(masks):
            prepare_shard_folder(masks, plan.mask_paths.values())
        if job.spec.edge_maps or Path(edges).exists():
            with output_errors(edges):
                prepare_shard_folder(edges, plan.edge_paths.values())
        return plan

    def source(self, job: ShardJob, image_id: str) -> tuple[Path, Reading]:
        """The image's file and how to read it (its plane of a stack, if any)."""
        rel, plane = split_plane(image_id, job.input_dir)
        return Path(job.input_dir) / rel, for_plane(job.reading or DEFAULT_READING, plane)


class ShardResults:
    """The rows, objects and instances of a shard's images, filled as they are done.

    Every image has its row from the start (:func:`segpipe.table.empty_row`); a runner
    fills it and reports each image once, through :meth:`done` or :meth:`fail`. The tables
    come out in the shard's order whatever order images finish in.
    """

    def __init__(self, job: ShardJob, plan: ShardPlan, *,
                 progress_every_s: float = 10.0) -> None:
        params = params_json(job.settings)
        kind = job.settings["kind"]
        self.rows = {i: empty_row(image_id=i, method=job.method, kind=kind, shard=job.shard,
                                  params=params) for i in plan.image_ids}
        self.objects = {}
        self.instances = {}
        self.plan = plan
        self.job = job
        self.progress = Progress(len(plan.image_ids), log,
                                 label=f"{job.method} shard {job.shard}",
                                 every_s=progress_every_s)

    def done(self, row: dict, objects: dict[str, Any] | None = None,
             instances: Iterable[dict[str, Any]] = ()) -> None:
        """An image is finished (its row has ``status`` set, ok or error)."""
        image_id = row["image_id"]
        self.rows[image_id] = row
        if objects is not None:
            self.objects[image_id] = objects
        if instances:
            self.instances[image_id] = list(instances)
        self.progress.update(errors=row["status"] == "error")

    def fail(self, image_id: str, err: Exception) -> None:
        """An image failed: its row says why (:func:`segpipe.finish.record_failure`); a
        failure to write an output is raised again, to fail the job."""
        path, _ = self.plan.source(self.job, image_id)
        self.done(record_failure(self.rows[image_id], path, err))

    def fail_all(self, message: str) -> None:
        """Every image gets the same error (the method could not start at all)."""
        log.error(message)
        for row in self.rows.values():
            row.update(status="error", error=message)

    def ordered(self, found: dict) -> list:
        """Values of ``found`` (by image id) in the shard's order."""
        return [found[i] for i in self.plan.image_ids if i in found]

    def write(self) -> None:
        """Write the job's tables, each atomically (a killed job leaves none half-written).

        Raises
        ------
        OutputError
            If a table cannot be written.
        """
        import pyarrow as pa

        from segpipe.measure import objects_table
        from segpipe.table import INSTANCES_SCHEMA, rows_to_table, write_table_atomic

        self.progress.close()
        job = self.job
        table = rows_to_table([self.rows[i] for i in self.plan.image_ids])
        write_table_atomic(table, job.metrics_out)
        if job.instances_out is not None:
            instances = [row for rows in self.ordered(self.instances) for row in rows]
            write_table_atomic(pa.Table.from_pylist(instances, schema=INSTANCES_SCHEMA),
                               job.instances_out)
        if job.objects_out is not None:
            write_table_atomic(objects_table(self.ordered(self.objects)), job.objects_out)


def runner_of(spec: MethodSpec) -> Callable[[ShardJob, ShardPlan, ShardResults], dict]:
    """The function that runs a kind's images: ``run(job, plan, results) -> stats``."""
    if spec.runner == "batch":
        from segpipe.batch_runner import run_batches

        return run_batches
    from segpipe.image_runner import run_images

    return run_images


def run_shard_job(job: ShardJob, *, progress_every_s: float = 10.0) -> dict:
    """Segment the shard's images with the job's method and write its tables.

    Returns
    -------
    dict
        Where the time went, as the runner measured it (see the runners).

    Raises
    ------
    OutputError
        If a mask, edge map or table cannot be written (read-only folder, full disk):
        the job fails and writes no table, so a rerun redoes it; no image gets an error
        row for it.
    """
    plan = ShardPlan.of(job)
    log.info("%s shard %s: %d images, settings %s", job.method, job.shard,
             len(plan.image_ids), dict(job.settings))
    results = ShardResults(job, plan, progress_every_s=progress_every_s)
    stats = runner_of(job.spec)(job, plan, results)
    results.write()
    return stats
