"""One config per output folder: the folder's lock, its recorded config, what a change of
config makes stale.

A ``segpipe run --out DIR`` holds ``DIR``'s lock (:func:`lock_folder`) from before it
writes anything there until its Snakemake process ends, so a second run into a busy
folder is refused before it touches a file. The config recorded in ``DIR``
(``segpipe-config.yaml``) is the one its results were made with: a run with another
config is refused while those results are there (:func:`config_changes`), unless
``--force``, which records the new config and removes what the change makes stale
(:func:`remove_stale`), so the folder never mixes two configs' results.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segpipe.cleanup import Removal, remove_written
from segpipe.layout import Layout
from segpipe.status import RUN_CONFIG

# The lock of a run folder. flock(2): released by the kernel when the last process that
# holds it ends, however it ends, so a killed run never leaves a stale lock.
LOCK_FILE = ".segpipe.lock"

# Keys whose change alters no result: switching the report on, the software container.
NEUTRAL_KEYS = frozenset({"report", "container"})
# Keys whose change alters only the merged summary (and the report drawn from it).
SUMMARY_KEYS = frozenset({"primary_metric"})


class FolderBusy(Exception):
    """Another segpipe command holds the run folder."""


@contextlib.contextmanager
def lock_folder(out: str | os.PathLike, *, what: str = "run") -> Iterator[int]:
    """Hold the lock of the run folder ``out`` (made if missing) for the ``with`` block.

    Yields the lock's file descriptor: a child process given it (``pass_fds``) holds the
    lock too, so it stays held while a Snakemake run lives, even if this process is
    killed first.

    Raises
    ------
    FolderBusy
        At once, if another command holds it: naming the folder and that command's pid.
    segpipe.errors.OutputError
        If the folder or its lock file cannot be made (a read-only file system).
    """
    from segpipe.imageio import output_errors

    out = Path(out)
    path = out / LOCK_FILE
    with output_errors(path):
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another command"
            raise FolderBusy(f"{out} is in use by {holder}; wait for it to end, or use "
                             "another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"segpipe {what} (pid {os.getpid()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        os.set_inheritable(fd, True)
        yield fd
    finally:
        os.close(fd)


def record_config(out: str | os.PathLike, config: Mapping[str, Any]) -> None:
    """Write ``config`` as the run folder's recorded config, atomically (a reader sees the
    old record or the new one, never half of one)."""
    from segpipe.imageio import write_bytes_atomic

    text = ("# The config of the run in this folder (segpipe run).\n"
            + yaml.safe_dump(dict(config), sort_keys=False))
    write_bytes_atomic(Path(out) / RUN_CONFIG, text.encode())


def holds_results(layout: Layout) -> bool:
    """Whether ``layout``'s out_dir holds results of a run: its listing, or a method's
    table."""
    if os.path.exists(layout.manifest):
        return True
    with contextlib.suppress(OSError), os.scandir(layout.path("metrics")) as methods:
        for method in methods:
            with contextlib.suppress(OSError), os.scandir(method.path) as tables:
                if any(t.name.endswith(".parquet") for t in tables):
                    return True
    return False


def _comparable(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as it runs: sweeps expanded, every default filled in. A config that
    only spells out a default, or a sweep as its methods, is the same experiment."""
    from segpipe.config import expand_sweeps, method_defaults

    config = copy.deepcopy(dict(config))
    for key, spec in schema["properties"].items():
        if key not in config and "default" in spec:
            config[key] = copy.deepcopy(spec["default"])
    methods = config.get("methods")
    if isinstance(methods, dict):
        methods = expand_sweeps(methods, schema)
        for name, settings in methods.items():
            kind = settings.get("kind") if isinstance(settings, dict) else None
            if kind in schema["$defs"]:
                methods[name] = {**method_defaults(schema, kind), **settings}
        config["methods"] = methods
    train = config.get("train")
    if isinstance(train, dict) and "train_model" in schema.get("$defs", {}):
        from segpipe.training.settings import train_defaults

        defaults = train_defaults(schema)
        config["train"] = {
            name: {**defaults, **settings,
                   "augment": {**defaults["augment"], **settings.get("augment", {})}}
            if isinstance(settings, dict) else settings
            for name, settings in train.items()}
    return config


def _differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [k for k in new if k not in old]
        found = []
        for key in keys:
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                found.append(f"{where} (only in the recorded config)")
            elif key not in old:
                found.append(f"{where} (new)")
            else:
                found += _differences(old[key], new[key], where)
        return found
    return [] if old == new else [prefix]


@dataclass(frozen=True)
class ConfigChange:
    """How a new config differs from the one a folder's results were made with.

    Attributes
    ----------
    keys : list of str
        Every differing key, dotted (``methods.otsu.method``, ``shard_size``), neutral
        ones (``report``) included.
    everything : bool
        A change that touches every method's results (the input folder, reading, ground
        truth, sharding...).
    methods : list of str
        Methods whose results the change makes stale: settings changed, or gone from the
        config.
    summary : bool
        The merged summary (and report) is stale.
    models : list of str
        Trained models (``train.<name>``) whose settings changed or are gone: their
        folders are stale, and so are the methods that use them.
    """

    keys: list[str]
    everything: bool
    methods: list[str]
    summary: bool
    models: list[str] = field(default_factory=list)

    @property
    def matters(self) -> bool:
        """Whether the change makes any result stale (not only neutral keys)."""
        return self.everything or bool(self.methods) or self.summary or bool(self.models)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                   schema: Mapping[str, Any]) -> ConfigChange:
    """Compare the recorded config ``old`` with ``new`` (both as ``segpipe run`` records
    them), after filling in defaults.

    Examples
    --------
    >>> schema = {"properties": {"shard_size": {"default": 250}, "report": {}},
    ...           "$defs": {"threshold": {"properties": {"method": {"default": "otsu"}}}}}
    >>> old = {"methods": {"a": {"kind": "threshold"}, "b": {"kind": "threshold"}}}
    >>> new = {"report": True, "shard_size": 250,
    ...        "methods": {"a": {"kind": "threshold", "method": "mean"}}}
    >>> change = config_changes(old, new, schema)
    >>> change.keys, change.methods, change.everything
    (['methods.a.method', 'methods.b (only in the recorded config)', 'report (new)'], ['a', 'b'], False)
    """
    old, new = _comparable(old, schema), _comparable(new, schema)
    keys = _differences(old, new, "")
    old_methods, new_methods = old.get("methods") or {}, new.get("methods") or {}
    old_train, new_train = old.get("train") or {}, new.get("train") or {}
    # A retrained model makes the methods that segment with it stale, and nothing else.
    models = sorted(n for n in old_train if new_train.get(n) != old_train[n])
    stale = sorted(m for m in old_methods if new_methods.get(m) != old_methods[m]
                   or _trained_by(old_methods[m]) in models)
    top = {k for k in set(old) | set(new)
           if k not in ("methods", "train") and old.get(k) != new.get(k)}
    everything = bool(top - NEUTRAL_KEYS - SUMMARY_KEYS)
    added = set(new_methods) - set(old_methods)
    summary = everything or bool(stale) or bool(added) or bool(top & SUMMARY_KEYS)
    return ConfigChange(keys=keys, everything=everything, methods=stale, summary=summary,
                        models=models)


def _trained_by(settings: object) -> str | None:
    """The ``train`` model a method's ``weights: {trained: NAME}`` names, if any."""
    weights = settings.get("weights") if isinstance(settings, dict) else None
    return weights.get("trained") if isinstance(weights, dict) else None


def describe(change: ConfigChange, limit: int = 8) -> str:
    """The differing keys, for a message: ``methods.otsu.method, shard_size``; neutral
    keys (``report``) only when nothing else differs."""
    keys = [k for k in change.keys if k.split(" ")[0].split(".")[0] not in NEUTRAL_KEYS]
    keys = keys or change.keys
    shown = ", ".join(keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return shown + more


def remove_stale(layout: Layout, change: ConfigChange) -> Removal:
    """Delete the results that ``change`` makes stale, so the next run makes them again
    with the new config: every result for a change that touches all of them; else the
    stale methods' masks, edge maps, tables and scores, and the merged summary and
    report. Only files segpipe writes are removed
    (:func:`segpipe.layout.written_by_segpipe`); the others are listed in the result.
    """
    root = layout.out_dir
    if change.everything:
        return remove_written(root)
    # Only the stale subtrees are walked: a changed method costs a walk of its own files,
    # not of every method's.
    tops = [layout.path(tree, method) for method in change.methods
            for tree in ("masks", "edges", "metrics", "objects", "instances")]
    tops += [layout.model(name) for name in change.models]
    if change.summary:
        tops += [layout.path("summary"), layout.path("report")]
    removal = Removal()
    for top in tops:
        part = remove_written(root, top, keep_root=False)
        removal.removed += part.removed
        removal.foreign += part.foreign
        removal.failed += part.failed
    files = [layout.coco_ap(m) for m in change.methods]
    files += [layout.report_page] if change.summary else []
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removal.removed += 1
    return removal
