"""The training of one model: epochs, validation, checkpoints, resuming after a kill.

Outputs, in the model's folder (``results/models/NAME/``, :meth:`segpipe.layout.Layout.model`):

- ``last.pt``: everything a resume needs (network, optimiser, scheduler, gradient
  scaler, epoch, history, best so far, every RNG state), written atomically after each
  epoch. It is not an output Snakemake knows of, so a killed job's rerun finds it (a job's
  outputs are deleted before it runs) and continues from it.
- ``best.pt`` while training: the best checkpoint so far, by validation mask AP (by
  validation loss while no validation image holds an object); renamed to ``model.pt``
  at the end.
- ``model.pt``, ``history.parquet`` and ``model.json`` at the end.

Reproducibility: every random draw comes from the seed. The initial weights and the
heads' sampling use torch's generator (saved in ``last.pt``); the image order and each
crop's augmentation come from generators seeded by (seed, epoch, image)
(:mod:`segpipe.training.augment`), so they depend on neither the DataLoader workers nor
a resume. Validation runs under a forked generator, so it draws nothing from training's.
On the CPU with the same threads, a resumed run ends with the same bytes in
``model.pt`` and the same ``history.parquet`` (timing aside) as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe.errors import TrainingDataError, TrainingDiverged
from segpipe.imageio import write_bytes_atomic
from segpipe.layout import WEIGHTS_DIR
from segpipe.training.augment import augment, crop_rng, targets_of
from segpipe.training.data import Sample, TrainingSet

LRScheduler = torch.optim.lr_scheduler.LRScheduler

log = logging.getLogger(__name__)

LOSS_PARTS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
              "loss_rpn_box_reg")
HISTORY_COLUMNS = ("epoch", "loss", *LOSS_PARTS, "val_loss", "val_ap", "val_ap50", "val_ap75",
                   "lr", "seconds", "images")
# Columns that measure time, not training: they differ between two identical runs.
TIMING_COLUMNS = ("seconds",)
# The settings a resume must share with the run it continues (the rest, such as
# workers or device, change how fast it runs, not what it computes... on the CPU).
RESULT_SETTINGS = (
    "input_dir", "include", "exclude", "ground_truth_dir", "ground_truth_pattern",
    "val_fraction", "val_dir", "val_ground_truth_dir", "base", "model", "backbone", "epochs",
    "batch_size", "lr", "warmup_epochs", "weight_decay", "amp", "seed", "crop_size",
    "min_size", "max_size", "anchor_sizes", "rois_per_image", "proposals_per_image",
    "augment", "channel",
    "z", "time", "intensity_range",
)
MOMENTUM = 0.9
# Gradients are clipped to this norm: from random weights, the first steps' gradients
# are large enough to make the losses non-finite at learning rates that train well after.
CLIP_NORM = 10.0
# The warm-up starts at lr * WARMUP_FACTOR and lasts at most this many iterations.
WARMUP_FACTOR = 1e-3
MAX_WARMUP_ITERATIONS = 1000
# Validation AP: torchvision's inference defaults (every detection scoring 0.05 or more,
# at most 100 per image), so that AP sees the whole precision-recall curve.
VAL_SCORE_THRESHOLD = 0.05
VAL_MAX_DETECTIONS = 100
VAL_MASK_THRESHOLD = 0.5
# Validation's own generator (RPN and ROI sampling of the validation loss).
VAL_SEED_OFFSET = 7919


def model_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The files of a model's folder, by role."""
    folder = Path(folder)
    return {"model": folder / "model.pt", "last": folder / "last.pt", "best": folder / "best.pt",
            "history": folder / "history.parquet", "card": folder / "model.json"}


def lr_factor(iteration: int, *, total: int, warmup: int) -> float:
    """The schedule: linear warm-up from WARMUP_FACTOR to 1 over ``warmup`` iterations,
    then a cosine decay to 0 at ``total``.

    >>> lr_factor(0, total=100, warmup=10), lr_factor(10, total=100, warmup=10)
    (0.001, 1.0)
    >>> round(lr_factor(55, total=100, warmup=10), 3), lr_factor(100, total=100, warmup=10)
    (0.5, 0.0)
    """
    if iteration < warmup:
        return WARMUP_FACTOR + (1 - WARMUP_FACTOR) * iteration / warmup
    span = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (iteration - warmup) / span)))


class TrainViews(torch.utils.data.Dataset):
    """Training crops, indexed by (epoch, position): the DataLoader's workers decode and
    augment them, each from its own generator."""

    def __init__(self, data: TrainingSet, samples: Sequence[Sample],
                 settings: Mapping[str, Any]) -> None:
        self.data = data
        self.samples = list(samples)
        self.seed = settings["seed"]
        self.crop_size = settings["crop_size"]
        self.augment = settings["augment"]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, position = key
        image, labels, classes = self.data.read(self.samples[position])
        x, labels = augment(image, labels, crop_rng(self.seed, epoch, position),
                            crop_size=self.crop_size, settings=self.augment)
        target = {k: torch.from_numpy(v) for k, v in targets_of(labels, classes).items()}
        return torch.from_numpy(x), target


def _collate(batch: list) -> tuple[list, list]:
    return [x for x, _ in batch], [t for _, t in batch]


def epoch_batches(n: int, *, seed: int, epoch: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """The epoch's batches of (epoch, position) keys, in an order drawn from (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    return [[(epoch, i) for i in order[k:k + batch_size]] for k in range(0, n, batch_size)]


def fingerprint(settings: Mapping[str, Any], data_hash: str) -> str:
    """What a resume must match: the settings that change results, and the data."""
    chosen = {k: settings[k] for k in RESULT_SETTINGS}
    text = json.dumps(chosen, sort_keys=True, default=str) + data_hash
    return hashlib.sha256(text.encode()).hexdigest()


def build_for_training(settings: Mapping[str, Any], classes: Sequence[str], *,
                       weights_dir: str | os.PathLike = WEIGHTS_DIR,
                       key: str = "train") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network training starts from: random, COCO weights with new predictors for
    ``classes``, or a checkpoint.

    Returns
    -------
    net : torchvision.models.detection.MaskRCNN
    architecture : dict
        What :func:`segpipe.maskrcnn.model.build_network` needs to build it again.

    Raises
    ------
    TrainingDataError
        If the base weights are missing or do not fit the settings (naming the key).
    """
    from segpipe.maskrcnn.model import COCO_NUM_CLASSES, build_network, is_checkpoint
    from segpipe.maskrcnn.weights import missing_weights_message, read_status, resolve_weights

    base = settings["base"]
    arch = {"model": settings["model"], "backbone": settings["backbone"],
            "num_classes": len(classes), "pretrained_layout": base != "none",
            "min_size": settings["min_size"],
            "max_size": settings["max_size"] if settings["min_size"] is not None else None,
            "anchor_sizes": list(settings["anchor_sizes"])}
    heads = {"rois_per_image": settings["rois_per_image"],
             "proposals_per_image": settings["proposals_per_image"],
             "score_threshold": VAL_SCORE_THRESHOLD, "max_detections": VAL_MAX_DETECTIONS}
    torch.manual_seed(settings["seed"])
    if base == "none":
        return build_network(arch, **heads), arch
    source = resolve_weights(settings["model"], base, weights_dir=weights_dir, key=f"{key}.base")
    if source.kind == "named":
        status = read_status(source.status_path)
        if status is not None and not status["ok"]:
            raise TrainingDataError(missing_weights_message(status))
    if not Path(source.path).is_file():
        raise TrainingDataError(f"{key}.base: checkpoint file {source.path} does not exist")
    state = torch.load(source.path, map_location="cpu", weights_only=True)
    if is_checkpoint(state):
        old = state["architecture"]
        for k in ("model", "backbone", "min_size"):
            if old[k] != arch[k]:
                raise TrainingDataError(
                    f"{key}.base: {source.path} is a {old['backbone']} {old['model']} at "
                    f"{'native scale' if old['min_size'] is None else 'min_size ' + str(old['min_size'])}"
                    f"; set {key}.{k} to {old[k]!r} to train on from it")
        arch["pretrained_layout"] = old["pretrained_layout"]
        net = build_network({**old, "num_classes": old["num_classes"],
                             "anchor_sizes": arch["anchor_sizes"]}, **heads)
        net.load_state_dict(state["state_dict"])
    else:
        if settings["backbone"] != "resnet50":
            raise TrainingDataError(
                f"{key}.base: {source.path} holds COCO-layout weights, which fit backbone "
                f"resnet50 only, not {settings['backbone']}")
        net = build_network({**arch, "num_classes": COCO_NUM_CLASSES}, **heads)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise TrainingDataError(
                f"{key}.base: {source.path} does not fit {settings['model']}: "
                f"{str(err).splitlines()[0]}") from None
    if net.roi_heads.box_predictor.cls_score.out_features != len(classes):
        _new_predictors(net, len(classes))
    return net, arch


def _new_predictors(net: torch.nn.Module, num_classes: int) -> None:
    """Fresh box and mask predictors for ``num_classes`` (torchvision's fine-tuning
    recipe), drawn from torch's generator."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    box = net.roi_heads.box_predictor
    net.roi_heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_classes)
    mask = net.roi_heads.mask_predictor
    net.roi_heads.mask_predictor = MaskRCNNPredictor(mask.conv5_mask.in_channels,
                                                     mask.conv5_mask.out_channels, num_classes)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": _plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Trainer:
    """Trains one ``train.<name>`` model into ``folder``.

    Parameters
    ----------
    name : str
    settings : dict
        The entry's resolved settings.
    folder : path
        ``results/models/NAME``.
    threads : int
        The job's cores: torch's threads, less the DataLoader workers.
    weights_dir : path
        Where ``base: DEFAULT`` weights are read from (the fetch rule's folder).
    stop_after : int, optional
        Stop (as if killed) after this epoch: for tests of resuming.
    """

    def __init__(self, name: str, settings: Mapping[str, Any], folder: str | os.PathLike, *,
                 threads: int = 1, weights_dir: str | os.PathLike = WEIGHTS_DIR,
                 stop_after: int | None = None) -> None:
        self.name = name
        self.settings = settings
        self.key = f"train.{name}"
        self.files = model_files(folder)
        self.threads = threads
        self.weights_dir = weights_dir
        self.stop_after = stop_after

    def run(self) -> dict[str, Any]:
        """Train (or resume), then write ``model.pt``, ``history.parquet``, ``model.json``.

        Returns
        -------
        dict
            The model card.
        """
        from segpipe.maskrcnn.model import resolve_device

        s = self.settings
        data = TrainingSet(self.name, s)
        data.check_coco_matches()
        counts = data.check()
        self.data = data
        train, val = data.split("train"), data.split("val")
        log.info("training %s: %d train images, %d validation images, %d epochs",
                 self.name, len(train), len(val), s["epochs"])
        if counts["negatives"]:
            log.info("%d images have no object: they train as negative examples",
                     counts["negatives"])
        device = resolve_device(s["device"])
        cuda = device.type == "cuda"
        workers = self._workers(cuda)
        torch.set_num_threads(max(1, self.threads - workers))
        data_hash = data.fingerprint()
        self.resume_key = fingerprint(s, data_hash)
        random.seed(s["seed"])
        np.random.seed(s["seed"] % 2**32)
        net, arch = build_for_training(s, data.classes, weights_dir=self.weights_dir,
                                       key=self.key)
        net.to(device)
        if cuda:
            net = net.to(memory_format=torch.channels_last)
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=s["lr"], momentum=MOMENTUM,
                                    weight_decay=s["weight_decay"])
        per_epoch = math.ceil(len(train) / s["batch_size"])
        total = per_epoch * s["epochs"]
        warmup = min(MAX_WARMUP_ITERATIONS, round(s["warmup_epochs"] * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: lr_factor(it, total=total, warmup=warmup))
        scaler = torch.amp.GradScaler("cuda", enabled=s["amp"] and cuda)
        state = self._resume(net, optimizer, scheduler, scaler)
        loader_generator = torch.Generator().manual_seed(s["seed"])
        views = TrainViews(data, train, s)
        start = time.monotonic()
        for epoch in range(state["epoch"] + 1, s["epochs"] + 1):
            began = time.monotonic()
            loader = torch.utils.data.DataLoader(
                views, batch_sampler=epoch_batches(len(train), seed=s["seed"], epoch=epoch,
                                                   batch_size=s["batch_size"]),
                num_workers=workers, collate_fn=_collate, generator=loader_generator,
                pin_memory=cuda)
            sums, images = self._train_epoch(net, loader, optimizer, scheduler, scaler,
                                             params, device, epoch)
            row = {"epoch": epoch, "loss": sum(sums.values()) / per_epoch,
                   **{k: sums[k] / per_epoch for k in LOSS_PARTS}}
            row |= self._validate(net, arch, device, val)
            row |= {"lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.monotonic() - began, "images": images}
            state["history"].append(row)
            if _better(row, state["best"]):
                state["best"] = {k: row[k] for k in ("epoch", "val_ap", "val_ap50",
                                                     "val_ap75", "val_loss")}
                write_bytes_atomic(self.files["best"], _torch_bytes(
                    self._checkpoint(net, arch, data.classes)))
            state["epoch"] = epoch
            self._save_last(state, net, optimizer, scheduler, scaler)
            self._log_epoch(state, time.monotonic() - start, epoch - state["resumed_from"])
            if self.stop_after is not None and epoch >= self.stop_after and epoch < s["epochs"]:
                raise KeyboardInterrupt(f"stopped after epoch {epoch} (stop_after)")
        return self._finish(state, data, counts, data_hash, arch, device)

    def _workers(self, cuda: bool) -> int:
        workers = self.settings["workers"]
        if workers == "auto":
            return max(0, self.threads // 2) if cuda else 0
        return int(workers)

    def _train_epoch(self, net: torch.nn.Module, loader: torch.utils.data.DataLoader,
                     optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
                     scaler: torch.amp.GradScaler, params: list[torch.nn.Parameter],
                     device: torch.device, epoch: int) -> tuple[dict[str, float], int]:
        net.train()
        sums = dict.fromkeys(LOSS_PARTS, 0.0)
        images = 0
        cuda = device.type == "cuda"
        for step, (xs, targets) in enumerate(loader, start=1):
            xs = [x.to(device, non_blocking=True) for x in xs]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()}
                       for t in targets]
            with torch.autocast(device_type=device.type, dtype=torch.float16,
                                enabled=scaler.is_enabled()):
                losses = net(xs, targets)
                loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"{self.key}: the loss became {loss.item()} at epoch {epoch}, iteration "
                    f"{step} (parts: {', '.join(f'{k} {v.item():.4g}' for k, v in losses.items())}); "
                    f"lower {self.key}.lr (now {self.settings['lr']})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for k in LOSS_PARTS:
                sums[k] += float(losses[k].detach())
            images += len(xs)
        if cuda:
            torch.cuda.synchronize(device)
        return sums, images

    def _validate(self, net: torch.nn.Module, arch: Mapping[str, Any], device: torch.device,
                  samples: Sequence[Sample]) -> dict[str, float]:
        """Validation loss (train-mode losses with batch norm frozen, under a generator
        of its own) and mask AP (``MaskAP``, class-agnostic) on the whole validation
        images. They are decoded once an epoch, a batch at a time, and serve both
        (nothing of the set is held between epochs)."""
        from segpipe.evaluation import MaskAP
        from segpipe.maskrcnn.inference import Predictor, to_chw_tensor
        from segpipe.rle import encode_objects

        if not samples:
            return {"val_loss": math.nan, "val_ap": math.nan, "val_ap50": math.nan,
                    "val_ap75": math.nan}
        predictor = Predictor(net, device, mask_threshold=VAL_MASK_THRESHOLD,
                              amp=self.settings["amp"], canvas_step=32)
        native = arch["min_size"] is None
        ap = MaskAP()
        total = 0.0
        size = self.settings["batch_size"]
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.settings["seed"] + VAL_SEED_OFFSET)
            # In batches, as training runs: the loss is the mean over images of batch means.
            for first in range(0, len(samples), size):
                chunk = samples[first:first + size]
                read = [self.data.read(sample) for sample in chunk]
                _loss_mode(net)
                xs = [torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)
                                       / (65535.0 if image.dtype == np.uint16 else 255.0)
                                       ).to(device) for image, _, _ in read]
                targets = [{k: torch.from_numpy(v).to(device)
                            for k, v in targets_of(labels, index).items()}
                           for _, labels, index in read]
                total += float(sum(net(xs, targets).values())) * len(xs)
                net.eval()  # inference draws nothing random
                for sample, (image, labels, _) in zip(chunk, read, strict=True):
                    found, = predictor([to_chw_tensor(image)], native=[native])
                    ap.add_image(sample.image_id, encode_objects(labels), found.rles(),
                                 found.scores)
        result = ap.result()
        net.train()
        return {"val_loss": total / len(samples), "val_ap": result["coco_ap"],
                "val_ap50": result["coco_ap50"], "val_ap75": result["coco_ap75"]}

    def _checkpoint(self, net: torch.nn.Module, arch: Mapping[str, Any],
                    classes: Sequence[str]) -> dict[str, Any]:
        from segpipe.maskrcnn.model import CHECKPOINT_FORMAT

        weights = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
        return {"format": CHECKPOINT_FORMAT, "architecture": dict(arch),
                "classes": list(classes), "state_dict": weights}

    def _resume(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: LRScheduler, scaler: torch.amp.GradScaler) -> dict[str, Any]:
        fresh = {"epoch": 0, "history": [], "best": None, "resumed_from": 0, "seconds": 0.0}
        path = self.files["last"]
        if not path.is_file():
            return fresh
        try:
            last = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file means start over
            log.warning("%s: cannot read %s (%s); training starts over", self.key, path, err)
            return fresh
        if last.get("fingerprint") != self.resume_key:
            log.info("%s: %s is from other settings or data; training starts over",
                     self.key, path)
            return fresh
        if last["epoch"] > 0 and last["best"] is not None and not self.files["best"].is_file():
            log.warning("%s: %s is gone; training starts over", self.key, self.files["best"])
            return fresh
        net.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        scaler.load_state_dict(last["scaler"])
        _set_rng_state(last["rng"])
        log.info("%s: resuming after epoch %d of %d from %s", self.key, last["epoch"],
                 self.settings["epochs"], path)
        return {"epoch": last["epoch"], "history": list(last["history"]),
                "best": last["best"], "resumed_from": last["epoch"],
                "seconds": sum(r["seconds"] for r in last["history"])}

    def _save_last(self, state: dict[str, Any], net: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
                   scaler: torch.amp.GradScaler) -> None:
        last = {
            "fingerprint": self.resume_key,
            "epoch": state["epoch"],
            "history": state["history"],
            "best": state["best"],
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
        }
        write_bytes_atomic(self.files["last"], _torch_bytes(last))

    def _log_epoch(self, state: dict[str, Any], elapsed: float, epochs_done: int) -> None:
        row, best, epochs = state["history"][-1], state["best"], self.settings["epochs"]
        per_epoch = elapsed / max(1, epochs_done)
        left = per_epoch * (epochs - row["epoch"])
        val = ("val AP n/a" if math.isnan(row["val_ap"]) else
               f"val AP {row['val_ap']:.4f} (best {best['val_ap']:.4f} at epoch {best['epoch']})")
        log.info("epoch %d/%d · loss %.4f · %s · %.1f s/epoch · about %s left", row["epoch"],
                 epochs, row["loss"], val, per_epoch, _duration(left))

    def _finish(self, state: dict[str, Any], data: TrainingSet, counts: Mapping[str, int],
                data_hash: str, arch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import torchvision

        import segpipe

        s = self.settings
        history = {c: [row[c] for row in state["history"]] for c in HISTORY_COLUMNS}
        types = {"epoch": pa.int64(), "images": pa.int64()}
        table = pa.table({c: pa.array(v, type=types.get(c, pa.float64()))
                          for c, v in history.items()})
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        write_bytes_atomic(self.files["history"], buffer.getvalue().to_pybytes())
        card = {
            "name": self.name,
            "format": 1,
            "classes": data.classes,
            "architecture": arch,
            "config": dict(s),
            "splits": {split: [x.image_id for x in data.split(split)] for split in ("train", "val")},
            "counts": counts,
            "data_hash": data_hash,
            "fingerprint": self.resume_key,
            "versions": {"segpipe": segpipe.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "device": str(device),
            "threads": torch.get_num_threads(),
            "epochs": s["epochs"],
            "best": state["best"],
            "resumed_from": state["resumed_from"] or None,
            "seconds": float(sum(history["seconds"])),
        }
        write_bytes_atomic(self.files["card"], (json.dumps(card, indent=1, default=str)
                                                + "\n").encode())
        os.replace(self.files["best"], self.files["model"])
        log.info("%s: best epoch %s (val AP %s); model in %s", self.key, state["best"]["epoch"],
                 state["best"]["val_ap"], self.files["model"])
        return card


def _loss_mode(net: torch.nn.Module) -> None:
    """Train mode, for torchvision to return losses, with batch norm on its running
    statistics: a validation pass must not move them."""
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _better(row: Mapping[str, float], best: Mapping[str, float] | None) -> bool:
    """By validation mask AP; by validation loss while AP is undefined (no validation
    image holds an object); the earlier epoch on ties."""
    if best is None:
        return True
    if not math.isnan(row["val_ap"]) and not math.isnan(best["val_ap"]):
        return row["val_ap"] > best["val_ap"]
    if not math.isnan(row["val_ap"]):
        return True
    return math.isnan(best["val_ap"]) and row["val_loss"] < best["val_loss"]


def _duration(seconds: float) -> str:
    """A time left, in the unit that reads best.

    >>> _duration(42), _duration(660), _duration(7300)
    ('42 s', '11 min', '2.0 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def train_model(name: str, settings: Mapping[str, Any], folder: str | os.PathLike,
                **options: Any) -> dict[str, Any]:
    """Train ``train.<name>`` into ``folder`` (:class:`Trainer`); returns the model card."""
    return Trainer(name, settings, folder, **options).run()
