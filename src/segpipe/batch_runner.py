"""The batch runner: a staged pipeline whose rate is its slowest stage.

For kinds whose ``MethodSpec.runner`` is ``"batch"`` (Mask R-CNN): ``MethodSpec.load``
gives a model that predicts batches of same-canvas images on a device::

    DataLoader workers      main process (the device's)              writer processes
    decode, pinned    ──►   group by canvas ──► predict ──► paste, ──► label image, RLE,
    integer tensors         (full batches)                label image,  statistics, scores,
                                                          runs; 1 copy  rows

Decoding runs in loader processes and finishing (the host work per image) in writer
processes, so the main process only feeds the device. The queue to the writers is bounded
(:class:`segpipe.pool.WriterPool`), and at most ``4 * batch_size`` decoded images wait for
their canvas bucket to fill: memory is bounded by those depths, never by the shard. The
frame around it (reading the shard, rows, tables, the error policy) is :mod:`segpipe.job`.

Tiles. For a kind with a tiled face (``MethodSpec.tiled``), an image that ``tiles`` says
to tile (:func:`segpipe.tiles.choose_tiling`, as the per-image runner decides) reaches the
main process as its tiles' read regions, decoded by the loader (a tiled TIFF tile by
tile). Each tile is one more item of the canvas bucket of its own size, at its own scale
(``native``: no resize), so the tiles of all the shard's images, and whole images of the
same canvas, fill batches together. A tile's detections go to the image's
:class:`segpipe.maskrcnn.tiled.DetectionStitcher` as they come back, in any order; when
the image's last tile is back, its stitched detections are finished as a whole image's
are. A tile that fails fails its image, never the shard.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from segpipe.errors import ImageReadError, WeightsMissingError
from segpipe.finish import Finishing, finish_image, record_failure
from segpipe.imageio import DEFAULT_MAX_PIXELS
from segpipe.maskrcnn.inference import to_chw_tensor
from segpipe.maskrcnn.model import wants_cuda
from segpipe.maskrcnn.tiled import DetectionStitcher
from segpipe.planes import DEFAULT_READING, for_plane, split_plane
from segpipe.pool import WriterPool, fork_available
from segpipe.sources import Opened, open_image
from segpipe.tiles import DEFAULT_MAX_TILED_PIXELS, Tile, read_tile

if TYPE_CHECKING:
    from segpipe.job import ShardJob, ShardPlan, ShardResults
    from segpipe.maskrcnn.inference import Detections
    from segpipe.planes import Reading
    from segpipe.tiles import Tiling

log = logging.getLogger(__name__)

# The runner's own settings of a batch kind; the others go to the kind's ``load``.
RUN_SETTINGS = ("batch_size", "workers", "writers")



class Decoded(NamedTuple):
    """One image from the loader: whole (``tensor``), as its tiles (``tiles``), or the
    error that kept it from being read.

    Tensors are (C, M, K), kept in their integer type (converted to float on the device).
    A named tuple, so that the DataLoader pins the tensors it holds.
    """

    index: int
    tensor: torch.Tensor | None
    error: str | None
    seconds: float
    note: str | None
    info: dict
    # A tiled image: its shape, its grid's tiles with their read regions, in the grid's
    # order, and its grey image when objects are measured (assembled from the cores).
    shape: tuple[int, int] | None = None
    tiles: list[tuple[Tile, torch.Tensor]] | None = None
    grey: np.ndarray | None = None


class ImageFiles(Dataset):
    """Decodes images for the DataLoader's workers; a bad file becomes an error item.

    With ``tiles`` (the job's setting, for a kind that is tiled), an image is opened as
    the per-image runner opens it (:func:`segpipe.sources.open_image`): whole, or, when
    it is to be tiled, read region by read region (a tiled TIFF through its chunks).
    ``measuring``: a tiled image's grey image is assembled from its tiles' cores too, for
    its objects' intensity columns.
    """

    def __init__(self, input_dir: str | os.PathLike, image_ids: Sequence[str],
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, reading: Reading | None = None,
                 colour: str = "rgb", *, tiles: Tiling | str | None = None,
                 bytes_per_pixel: float = 0.0, memory_mb: int | None = None,
                 max_tiled_pixels: int = DEFAULT_MAX_TILED_PIXELS,
                 measuring: bool = False) -> None:
        self.input_dir = Path(input_dir)
        self.image_ids = image_ids
        self.max_pixels = max_pixels
        self.reading = reading
        self.colour = colour
        self.tiles = tiles
        self.bytes_per_pixel = bytes_per_pixel
        self.memory_mb = memory_mb
        self.max_tiled_pixels = max_tiled_pixels
        self.measuring = measuring

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Decoded:
        t0 = time.perf_counter()
        notes, info = [], {}
        rel, plane = split_plane(self.image_ids[index], self.input_dir)
        path = self.input_dir / rel
        try:
            # Scaled by intensity_range: the model sees what the other methods see.
            opened = open_image(path, mode=self.colour,
                                reading=for_plane(self.reading or DEFAULT_READING, plane),
                                tiles=self.tiles, bytes_per_pixel=self.bytes_per_pixel,
                                memory_mb=self.memory_mb, max_pixels=self.max_pixels,
                                max_tiled_pixels=self.max_tiled_pixels, notes=notes, info=info)
            tiled = None if opened.tiling is None else self._read_tiles(path, opened)
        except ImageReadError as err:
            return Decoded(index, None, str(err), time.perf_counter() - t0, None, {})
        except Exception as err:  # noqa: BLE001 - a corrupt chunk is the file's fault, not the shard's
            return Decoded(index, None, f"{path}: cannot be read ({type(err).__name__}: {err})",
                           time.perf_counter() - t0, None, {})
        note = "; ".join(notes) or None
        if tiled is None:
            return Decoded(index, to_chw_tensor(opened.image), None, time.perf_counter() - t0,
                           note, info)
        return Decoded(index, None, None, time.perf_counter() - t0, note, info, *tiled)

    def _read_tiles(
        self, path: Path, opened: Opened
    ) -> tuple[tuple[int, int], list[tuple[Tile, torch.Tensor]], np.ndarray | None]:
        """A tiled image's shape, tiles with their read regions, and grey image (when
        measuring)."""
        from segpipe.measure import grey_of

        shape = tuple(opened.source.shape[:2])
        tiles, grey = [], None
        for tile in opened.tiling.tiles_of(shape):
            try:
                block = read_tile(opened.source, tile)
            except ImageReadError:
                raise
            except Exception as err:  # a corrupt chunk is the file's fault, not the shard's
                rows, cols = tile.read
                raise ImageReadError(path, f"cannot read the tile at rows {rows.start}-"
                                     f"{rows.stop - 1}, columns {cols.start}-{cols.stop - 1} "
                                     f"({type(err).__name__}: {err})") from err
            if self.measuring:
                core = grey_of(block[tile.inner])
                if grey is None:
                    grey = np.empty(shape, core.dtype)
                grey[tile.core] = core
            tiles.append((tile, to_chw_tensor(block)))
        return shape, tiles, grey


_Item = TypeVar("_Item")


def _collate(items: list[_Item]) -> list[_Item]:
    return items


def resolve_processes(settings: Mapping[str, Any], *, threads: int,
                      cuda: bool) -> tuple[int, int]:
    """Loader and writer process counts from ``workers``/``writers`` and the job's threads.

    ``auto``: on a GPU, half the job's cores decode and the rest but one (the main
    process) finish images; on the CPU the forward pass needs the cores, so images are
    decoded and finished in the main process. Writers need ``fork`` (not on macOS).

    >>> resolve_processes({"workers": "auto", "writers": "auto"}, threads=16, cuda=True)
    (8, 7)
    >>> resolve_processes({"workers": "auto", "writers": "auto"}, threads=4, cuda=False)
    (0, 0)
    >>> resolve_processes({"workers": 2, "writers": 3}, threads=1, cuda=False)
    (2, 3)
    """
    workers, writers = settings.get("workers", "auto"), settings.get("writers", "auto")
    if workers == "auto":
        workers = max(1, threads // 2) if cuda else 0
    if writers == "auto":
        writers = max(1, threads - workers - 1) if cuda else 0
    if writers and not fork_available():
        log.warning("writer processes need the fork start method, missing here: writing inline")
        writers = 0
    return workers, writers


class CanvasBuckets:
    """Groups decoded images by canvas so that forward passes get full batches.

    Parameters
    ----------
    canvas_of : callable
        ``canvas_of(height, width) -> key``.
    batch_size : int
    max_pending : int
        Most images held; beyond it the fullest bucket goes out as a partial batch.
    """

    def __init__(self, canvas_of: Callable[[int, int], Hashable], batch_size: int,
                 max_pending: int) -> None:
        self.canvas_of = canvas_of
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending)
        self.buckets = {}

    def add(self, item: Any, height: int, width: int, *,
            native: bool = False) -> list[list[Any]]:
        """Hold ``item``; return the batches that are ready (lists of items).

        ``native``: the item is a tile, batched on the canvas of its own size
        (``canvas_of(height, width, native=True)``).
        """
        key = (self.canvas_of(height, width, native=True) if native
               else self.canvas_of(height, width))
        bucket = self.buckets.setdefault(key, [])
        bucket.append(item)
        ready = []
        if len(bucket) == self.batch_size:
            ready.append(self._pop(key))
        while sum(map(len, self.buckets.values())) > self.max_pending:
            ready.append(self._pop(max(self.buckets, key=lambda k: len(self.buckets[k]))))
        return ready

    def rest(self) -> list[list[Any]]:
        """The partial batches left at the end, one per bucket."""
        return [self._pop(key) for key in sorted(self.buckets)]

    def _pop(self, key: Hashable) -> list[Any]:
        return self.buckets.pop(key)


@dataclass
class _Image:
    index: int
    tensor: torch.Tensor
    decode_s: float


@dataclass
class _TiledImage:
    """A tiled image while its tiles are predicted: ``stitcher`` is None once it is
    finished or has failed."""

    index: int
    stitcher: DetectionStitcher | None
    decode_s: float
    grey: np.ndarray | None
    segment_s: float = 0.0


@dataclass
class _Tile:
    """One tile of a tiled image, an item of the canvas bucket of its own size."""

    image: _TiledImage
    tile: Tile
    tensor: torch.Tensor

    @property
    def index(self) -> int:
        """The image's index in the shard."""
        return self.image.index


@dataclass(frozen=True)
class WriterContext:
    """What every writer process needs, sent to each once: where masks go, how images
    are finished."""

    input_dir: str
    mask_paths: dict
    finishing: Finishing


def finish_detections(
    context: WriterContext,
    row: dict[str, Any],
    detections: Detections,
    decode_s: float,
    segment_s: float,
    image: torch.Tensor | None = None,
    grey: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Writer task: one image's label image, statistics, scores, instance and object rows.

    ``image`` (the decoded (3, M, N) tensor), or for a tiled image its ``grey`` image, is
    given when objects are measured.

    Returns
    -------
    row : dict
    instances : list of dict
        Rows of ``instances.parquet`` without ``class_name`` (the main process names them).
    objects : dict or None
        The image's object columns (:func:`segpipe.measure.measure_objects`), without
        ``class_name``; None when objects are not measured.
    """
    try:
        t0 = time.perf_counter()
        rles = detections.rles()
        rle_s = time.perf_counter() - t0
        row.update(decode_s=decode_s, segment_s=segment_s,
                   n_instances=len(detections),
                   mean_score=float(detections.scores.mean()) if len(detections) else None)
        if image is not None:
            from segpipe.measure import grey_of

            grey = grey_of(image.permute(1, 2, 0).numpy())
        # Labels are 1..N by falling score: detection i is label i + 1.
        objects = finish_image(row, detections.labels, context.mask_paths[row["image_id"]],
                               context.finishing, grey=grey, scores=detections.scores)
        row["write_s"] += rle_s
        row["runtime_s"] += rle_s
    except Exception as err:  # noqa: BLE001 - one image's failure is its row, not the shard's
        return record_failure(row, Path(context.input_dir) / row["image_id"], err), [], None
    instances = [
        {
            "image_id": row["image_id"],
            "method": row["method"],
            "instance_id": i + 1,
            "class_id": int(detections.class_ids[i]),
            "score": float(detections.scores[i]),
            "bbox": [float(v) for v in detections.boxes[i]],
            "area": int(detections.areas[i]),
            "rle": rles[i],
        }
        for i in range(len(detections))
    ]
    return row, instances, objects


class BatchPipeline:
    """The stages of one shard through a batch kind's model, in the main process.

    :meth:`run` drives them: :meth:`load` (the model, after the writers are forked),
    :meth:`take` (a decoded image into its canvas bucket), :meth:`predict` (one batch to
    the device stage, ``model.concurrent_batches`` at once), :meth:`deliver` (a predicted
    batch's images to the writers, in the main thread), :meth:`collect` (finished images
    into the results) and :meth:`name_classes` (class names on instances and objects).
    Stage seconds accumulate in :attr:`stats`.
    """

    def __init__(self, job: ShardJob, plan: ShardPlan, results: ShardResults) -> None:
        self.job = job
        self.plan = plan
        self.results = results
        self.settings = job.options
        self.batch_size = self.settings["batch_size"]
        self.cuda = wants_cuda(self.settings.get("device", "auto"))
        self.workers, self.writers = resolve_processes(self.settings, threads=job.threads,
                                                       cuda=self.cuda)
        self.measuring = job.finishing.measures_objects
        self.model = None
        self.pool = None
        self.buckets = None
        self.in_flight = deque()
        self.device = None
        self.depth = 1
        self.stats = {"decode_s": 0.0, "wait_loader_s": 0.0, "finish_s": 0.0,
                      "wait_writers_s": 0.0, "loop_s": 0.0, "tiles": 0}

    def run(self) -> dict:
        start = time.perf_counter()
        job = self.job
        context = WriterContext(str(job.input_dir), self.plan.mask_paths, job.finishing)
        # Writer processes are forked before CUDA is initialised and loader threads exist.
        with WriterPool(finish_detections, context, writers=self.writers,
                        depth=2 * max(1, self.writers)) as self.pool:
            try:
                self.load()
            except WeightsMissingError as err:
                self.results.fail_all(str(err))
                return {}
            self.depth = getattr(self.model, "concurrent_batches", 1)
            with ThreadPoolExecutor(self.depth, thread_name_prefix="device") as self.device:
                loop_start = self.loop()
            self.collect(self.pool.drain())
            self.stats["loop_s"] = time.perf_counter() - loop_start
            self.stats["wait_writers_s"] = self.pool.wait_s
        self.name_classes()
        self.stats.update(
            images=len(self.plan.image_ids), wall_s=time.perf_counter() - start,
            workers=self.workers, writers=self.writers, cpu_count=os.cpu_count(),
            **{f"{stage}_s": seconds for stage, seconds in self.model.stage_s.items()},
        )
        log.info("%s shard %s: stage seconds %s", job.method, job.shard,
                 {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()})
        return self.stats

    def loop(self) -> float:
        """Decoded images into buckets, full buckets to the device stage, until the shard
        is done and every batch delivered; returns when the loop started."""
        job = self.job
        loader = DataLoader(
            ImageFiles(job.input_dir, self.plan.image_ids, job.max_pixels, job.reading,
                       job.spec.colour,
                       tiles=job.tiles if job.spec.tiled is not None else None,
                       bytes_per_pixel=job.spec.bytes_per_pixel, memory_mb=job.memory_mb,
                       max_tiled_pixels=job.max_tiled_pixels, measuring=self.measuring),
            batch_size=self.batch_size, num_workers=self.workers, pin_memory=self.cuda,
            collate_fn=_collate,
        )
        self.buckets = CanvasBuckets(self.model.canvas_of, self.batch_size,
                                     max_pending=4 * self.batch_size)
        mark = loop_start = time.perf_counter()
        for items in loader:
            self.stats["wait_loader_s"] += time.perf_counter() - mark
            for item in items:
                self.take(item)
            mark = time.perf_counter()
        for batch in self.buckets.rest():
            self.predict(batch)
        while self.in_flight:
            self.deliver(*self.in_flight.popleft())
        return loop_start

    def load(self) -> None:
        """Build the model on its device; the main process keeps the cores the loaders
        and writers leave."""
        torch.set_num_threads(max(1, self.job.threads - self.workers - self.writers))
        options = {k: v for k, v in self.settings.items() if k not in RUN_SETTINGS}
        self.model = self.job.spec.load(**options, weights_dir=self.job.weights_dir,
                                        models_dir=self.job.layout.path("models"))
        log.info("%s shard %s: %d images, batch size %d, %d loader workers, %d writers",
                 self.job.method, self.job.shard, len(self.plan.image_ids), self.batch_size,
                 self.workers, self.writers)

    def take(self, decoded: Decoded) -> None:
        """A decoded image, its tiles, or its read error, from the loader."""
        self.stats["decode_s"] += decoded.seconds
        row = self.results.rows[self.plan.image_ids[decoded.index]]
        row.update(decoded.info, note=decoded.note)
        if decoded.error is not None:
            row.update(status="error", error=decoded.error, decode_s=decoded.seconds)
            log.warning(decoded.error)
            self.results.done(row)
            return
        if decoded.tiles is None:
            tensor = decoded.tensor
            for batch in self.buckets.add(_Image(decoded.index, tensor, decoded.seconds),
                                          *tensor.shape[-2:]):
                self.predict(batch)
            return
        grid = [tile for tile, _ in decoded.tiles]
        image = _TiledImage(decoded.index, DetectionStitcher(decoded.shape, grid),
                            decoded.seconds, decoded.grey)
        self.stats["tiles"] += len(grid)
        for tile, tensor in decoded.tiles:
            for batch in self.buckets.add(_Tile(image, tile, tensor), *tensor.shape[-2:],
                                          native=True):
                self.predict(batch)

    def predict(self, batch: list[_Image]) -> None:
        """Send one batch of one canvas to the device stage; deliver the batches that are
        done, oldest first; at most ``model.concurrent_batches`` are in flight.

        Three on an accelerator, each in a device thread of its own: while one batch waits
        for the device (its forward pass, its copy back), the next is uploaded and
        launched and the last one's host work goes on, so the device does not idle
        between batches (docs/benchmarks.md, the stand-in runs). Each holds its batch in
        device memory; an out-of-memory error halves the batch size. One on the CPU, where
        a forward pass takes every core, and two at once would only share them and round
        their floating-point sums differently (a result would depend on its neighbours).
        """
        self.in_flight.append((batch, self.device.submit(self._predict, batch, self.batch_size)))
        while len(self.in_flight) >= self.depth or self.in_flight[0][1].done():
            self.deliver(*self.in_flight.popleft())
            if not self.in_flight:
                break

    def _predict(self, batch: list[_Image | _Tile],
                 batch_size: int) -> tuple[list[Any], int, dict[int, str], float]:
        """In a device thread: the batch's detections, the batch size that fitted, the
        items that failed even alone (by position) and the seconds per item."""
        failed = {}

        def fail(position: int, err: RuntimeError) -> None:
            item = batch[position]
            where = Path(self.job.input_dir) / self.plan.image_ids[item.index]
            if isinstance(item, _Tile):
                rows, cols = item.tile.read
                failed[position] = (f"{where}: the tile at rows {rows.start}-{rows.stop - 1}, "
                                    f"columns {cols.start}-{cols.stop - 1} failed: {err}")
            else:
                failed[position] = f"{where}: {err}"

        native = [isinstance(item, _Tile) for item in batch]
        # Only a tiled kind's model takes ``native``; a batch of whole images is called as
        # every batch kind's model is.
        extra = {"native": native} if any(native) else {}
        t0 = time.perf_counter()
        found, fitted = self.model.predict([item.tensor for item in batch], batch_size,
                                           on_fail=fail, **extra)
        return found, fitted, failed, (time.perf_counter() - t0) / len(batch)

    def deliver(self, batch: list[_Image],
                future: Future[tuple[list[Any], int, dict[int, str], float]]) -> None:
        """A predicted batch's images to the writers (or their error rows)."""
        found, fitted, failed, per_image_s = future.result()
        self.batch_size = min(self.batch_size, fitted)
        for position, (item, detections) in enumerate(zip(batch, found)):
            row = self.results.rows[self.plan.image_ids[item.index]]
            if isinstance(item, _Tile):
                self.tile_back(item, row, detections, failed.get(position), per_image_s)
                continue
            if position in failed:
                row.update(status="error", error=failed[position])
                log.warning(row["error"])
                self.results.done(row)
                continue
            image = item.tensor if self.measuring else None
            self.collect(self.pool.submit(row, detections, item.decode_s, per_image_s, image))

    def tile_back(self, item: _Tile, row: dict[str, Any], detections: Detections | None,
                  error: str | None, seconds: float) -> None:
        """A predicted tile into its image's stitcher; the image's last tile sends the
        stitched image to the writers. A tile that failed fails its image (its later
        tiles are dropped)."""
        image = item.image
        if image.stitcher is None:
            return
        if error is not None:
            image.stitcher = None
            row.update(status="error", error=error)
            log.warning(error)
            self.results.done(row)
            return
        image.segment_s += seconds
        try:
            image.stitcher.add(item.tile, detections)
            if not image.stitcher.complete:
                return
            stitched = image.stitcher.result()
        except Exception as err:  # noqa: BLE001 - one image's failure is its row, not the shard's
            image.stitcher = None
            self.results.fail(self.plan.image_ids[image.index], err)
            return
        image.stitcher = None
        row.update(tiles=stitched.tiles, tile_cut_objects=stitched.cut_objects)
        self.collect(self.pool.submit(row, stitched.detections, image.decode_s,
                                      image.segment_s, None, image.grey))

    def collect(
        self,
        done: Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]],
    ) -> None:
        """Finished images from the writers, oldest first."""
        for row, instances, objects in done:
            self.stats["finish_s"] += (row["write_s"] or 0.0) + (row["metrics_s"] or 0.0)
            self.results.done(row, objects, instances)

    def name_classes(self) -> None:
        """Class names on each instance and object, and each image's class counts."""
        names = self.model.class_names
        for image_id, instances in self.results.instances.items():
            for inst in instances:
                inst["class_name"] = names[inst["class_id"]]
        for image_id, row in self.results.rows.items():
            instances = self.results.instances.get(image_id, [])
            objects = self.results.objects.get(image_id)
            if objects is not None:
                class_of = {inst["instance_id"]: inst["class_name"] for inst in instances}
                objects["class_name"] = [class_of[int(k)] for k in objects["label"]]
            if row["status"] == "ok":
                counts = Counter(inst["class_name"] for inst in instances)
                row["class_counts"] = json.dumps(dict(sorted(counts.items())))


def run_batches(job: ShardJob, plan: ShardPlan, results: ShardResults) -> dict:
    """Segment the shard's images in batches on the kind's device model.

    Returns
    -------
    dict
        Where the time went: ``images``, ``wall_s``, ``loop_s`` (the image loop, without
        model building and process start-up), ``decode_s`` (in the loader workers,
        summed), ``wait_loader_s`` (the main process waiting for decoded images),
        ``prepare_s``, ``forward_s``, ``postprocess_s``, ``copy_s`` (the model's stages;
        device time on CUDA), ``finish_s`` (writers' work, summed), ``wait_writers_s``,
        ``workers``, ``writers``, ``tiles`` (the tiles of tiled images predicted); empty
        when the model could not be loaded.

    Raises
    ------
    OutputError
        If a mask cannot be written, in a writer process or inline: the job fails, no
        image gets a row for it.
    """
    return BatchPipeline(job, plan, results).run()
