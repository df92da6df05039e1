"""Removing what the run wrote and no longer needs: a job's stale files, a gone shard's outputs."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from segpipe.layout import SHARD_FOLDERS, SHARD_TABLES, Layout

log = logging.getLogger(__name__)


def prepare_shard_folder(folder: str | os.PathLike, keep: Iterable[str]) -> None:
    """Empty ``folder`` of everything but the files named in ``keep``, creating it if needed.

    A job owns its shard's mask and edge-map folders: what else is there is left over,
    from images since removed or renamed, or temporary files of a killed run. Removing it
    at the start of the job leaves exactly the current images' files once the job ends.
    """
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


def remove_shard_outputs(layout: Layout, shards: Iterable[str]) -> None:
    """Delete what earlier runs wrote for shards that no longer exist (their images are
    gone): the mask and edge-map folders and the per-shard tables of every method
    (``layout``: a :class:`segpipe.layout.Layout`)."""
    methods = set()
    for tree in SHARD_FOLDERS + SHARD_TABLES:
        with contextlib.suppress(OSError), os.scandir(layout.path(tree)) as entries:
            methods.update(e.name for e in entries if e.is_dir(follow_symlinks=False))
    for method in sorted(methods):
        for shard in shards:
            for path in layout.shard_outputs(method, shard):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    Path(path).unlink(missing_ok=True)
