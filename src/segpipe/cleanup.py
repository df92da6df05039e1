"""Removing what a run wrote and no longer needs, and nothing else.

Every cleanup here deletes only files whose paths segpipe's layout gives
(:func:`segpipe.layout.written_by_segpipe`), then the folders that leaves empty. A file
someone else put in an output folder (an ``out_dir`` that already held files, a note
beside the masks) stays where it is, and is named.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from segpipe.layout import (
    LOGS_DIR,
    SHARD_FOLDERS,
    SHARD_TABLES,
    Layout,
    written_by_segpipe,
    written_log,
)

log = logging.getLogger(__name__)


@dataclass
class Removal:
    """What a cleanup did: files removed, and files it left because segpipe did not write
    them (paths as given to the cleanup)."""

    removed: int = 0
    foreign: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def foreign_note(self, limit: int = 5) -> str:
        """One line naming the files left, or ``""``."""
        if not self.foreign:
            return ""
        shown = ", ".join(self.foreign[:limit])
        more = f" and {len(self.foreign) - limit:,} more" if len(self.foreign) > limit else ""
        return f"left {len(self.foreign):,} files segpipe did not write: {shown}{more}"


def _unlink(path: str, removal: Removal) -> None:
    try:
        os.unlink(path)
        removal.removed += 1
    except FileNotFoundError:
        pass
    except OSError as err:
        # A file that will not go (an NFS ".nfs*" placeholder of a file still open
        # elsewhere) must not cost the run its results; it is reported.
        log.warning("could not remove %s (%s)", path, err.strerror or err)
        removal.failed.append(path)


def _walk_files(top: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) under ``top``, deepest folders first, not following links."""
    for folder, dirs, files in os.walk(top, topdown=False, followlinks=False):
        # A link to a folder is listed in dirs, and never entered: treat it as a file.
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        yield folder, files + links


def remove_written(root: str | os.PathLike, top: str | os.PathLike | None = None, *,
                   owned: Callable[[str], bool] = written_by_segpipe,
                   select: Callable[[str], bool] | None = None,
                   keep_root: bool = True) -> Removal:
    """Delete the files under ``top`` (default ``root``) whose path relative to ``root``
    passes ``owned`` (and ``select``), then the folders left empty; leave every other
    file, and list those ``owned`` refuses as foreign.

    Parameters
    ----------
    root : path
        The folder the layout's relative paths start from (``out_dir``, or the run folder
        for its logs).
    top : path, optional
        Only this subtree of ``root``.
    owned : callable
        ``owned(relative_posix_path) -> bool``: whether segpipe wrote it.
    select : callable, optional
        Of segpipe's files, only those with ``select(relative_posix_path)``.
    keep_root : bool
        Keep ``top`` itself even when it ends up empty.
    """
    root, top = str(root), str(top if top is not None else root)
    removal = Removal()
    if not os.path.isdir(top) or os.path.islink(top):
        return removal
    for folder, names in _walk_files(top):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not owned(rel) or os.path.islink(path):
                removal.foreign.append(path)
            elif select is None or select(rel):
                _unlink(path, removal)
        if folder != top or not keep_root:
            with contextlib.suppress(OSError):  # not empty: someone else's files are in it
                os.rmdir(folder)
    removal.foreign.sort()
    return removal


def prepare_shard_folder(folder: str | os.PathLike, keep: Iterable[str]) -> Removal:
    """Empty ``folder`` of the files segpipe wrote there but for those named in ``keep``,
    creating it if needed.

    A job owns its shard's mask and edge-map folders: other mask files there are left
    over, from images since removed or renamed, or temporary files of a killed run.
    Removing them at the start of the job leaves exactly the current images' files once
    the job ends. Files segpipe does not write (by name) are left, and logged.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = {PurePosixPath(k).name for k in keep}
    # The names in a shard folder are the layout's last path part; any method and shard
    # stand in for the rest.
    removal = remove_written(
        folder, owned=lambda name: written_by_segpipe(f"masks/m/000000/{name}"),
        # A kept mask may be a folder (an OME-Zarr mask): everything under it is kept.
        select=lambda name: name.split("/", 1)[0] not in keep)
    if removal.foreign:
        log.warning("%s: %s", folder, removal.foreign_note())
    return removal


def remove_shard_outputs(layout: Layout, shards: Iterable[str]) -> Removal:
    """Delete what earlier runs wrote for shards that no longer exist (their images are
    gone): the mask and edge-map files and the per-shard tables of every method
    (``layout``: a :class:`segpipe.layout.Layout`); other files there stay."""
    methods = set()
    for tree in SHARD_FOLDERS + SHARD_TABLES:
        with contextlib.suppress(OSError), os.scandir(layout.path(tree)) as entries:
            methods.update(e.name for e in entries if e.is_dir(follow_symlinks=False))
    total = Removal()
    for method in sorted(methods):
        for shard in shards:
            for path in layout.shard_outputs(method, shard):
                if path.endswith(".parquet"):
                    part = Removal()
                    if written_by_segpipe(os.path.relpath(path, layout.out_dir)):
                        _unlink(path, part)
                else:
                    part = remove_written(layout.out_dir, path, keep_root=False)
                total.removed += part.removed
                total.foreign += part.foreign
                total.failed += part.failed
    if total.foreign:
        log.warning("%s", total.foreign_note())
    return total


def remove_run_outputs(out: str | os.PathLike, out_dir: str | os.PathLike, *,
                       keep_out_dir: bool = False) -> Removal:
    """What ``segpipe clean`` removes: segpipe's files in ``out_dir``, the run folder
    ``out``'s logs of segpipe's rules, and its Snakemake records (``.snakemake``).

    Kept: the recorded config, ``resources/`` (downloaded weights, shared by every run of
    the folder), and every file segpipe did not write; and ``out_dir`` itself, even
    empty, with ``keep_out_dir`` (a folder outside the run's, which segpipe may not have
    made).
    """
    out = str(out)
    removal = remove_written(out_dir, keep_root=keep_out_dir)
    logs = remove_written(out, os.path.join(out, LOGS_DIR), owned=written_log, keep_root=False)
    removal.removed += logs.removed
    removal.foreign += logs.foreign
    removal.failed += logs.failed
    records = os.path.join(out, ".snakemake")
    if os.path.isdir(records) and not os.path.islink(records):
        # Snakemake's own state of this working directory: all of it is the run's.
        shutil.rmtree(records, ignore_errors=True)
    return removal
