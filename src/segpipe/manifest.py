"""Listing the input folder and assigning images to shards.

Shards are the unit of work: one Snakemake job segments one shard with one method.
Assignment is sticky so that a grown folder re-runs few jobs: an image keeps the shard
it was first put in; new images fill the newest shard and then open new ones; removed
images leave their shard (which then re-runs once, smaller). Adding K images therefore
changes at most ``1 + ceil(K / shard_size)`` shards, never more than K (for K >= 1).

The assignment is kept as one small JSON file per shard, ``{shard}.json`` holding the
list of image ids. Those files are both the record read back on the next listing and the
inputs of the segment jobs; a file is rewritten only when its list changes, so an
unchanged shard keeps its modification time and Snakemake leaves its jobs alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from segpipe.imageio import write_bytes_atomic

SHARD_DIGITS = 6


def shard_name(index):
    """Shard names are zero-padded numbers: ``shard_name(3) == '000003'``."""
    return f"{index:0{SHARD_DIGITS}d}"


def iter_files(root):
    """Yield every regular file under ``root`` as a POSIX path relative to it.

    Hidden files and folders (name starting with ".") are skipped; symbolic links to
    files are followed, links to folders are not (they could loop). Order is not sorted.
    """
    root = Path(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(child)
                elif entry.is_file():
                    yield child


def list_images(root):
    """Every file under ``root``, sorted: the image ids of a run.

    Files that are not images are listed too; they get an error row each, so nothing in
    the folder is passed over without a word.
    """
    return sorted(iter_files(root))


def folder_fingerprint(root):
    """A hash that changes when a file is added, removed or renamed anywhere under ``root``.

    Only folders are stat'ed (a folder's mtime changes when its entries change), which
    keeps this cheap enough to compute on every workflow start. Files edited in place
    are not seen; run with ``--forcerun list_images`` after editing images.
    """
    root = Path(root)
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha256()
    stack = [root]
    while stack:
        folder = stack.pop()
        digest.update(f"{folder.relative_to(root)}\0{folder.stat().st_mtime_ns}\0".encode())
        with os.scandir(folder) as entries:
            stack.extend(
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )
    return digest.hexdigest()[:16]


AUTO_JOBS = 1000
AUTO_LEAST, AUTO_MOST = 250, 5000


def auto_shard_size(n_images):
    """``shard_size: auto``: 250 images per job, more past ``AUTO_JOBS`` jobs per method.

    Fewer, longer jobs cost a scheduler and Snakemake's planning less (each job is a
    submission, a status poll, a start of Python and about 1.5 ms of planning at every
    start); more, shorter jobs spread better and lose less to a failure. 250..5,000 images
    per job keeps jobs between seconds and about an hour.

    >>> auto_shard_size(300), auto_shard_size(10**6), auto_shard_size(10**8)
    (250, 1000, 5000)
    """
    return min(AUTO_MOST, max(AUTO_LEAST, -(-n_images // AUTO_JOBS)))


def assign_shards(image_ids, previous, shard_size):
    """Assign images to shards, keeping every image where it was before.

    Parameters
    ----------
    image_ids : iterable of str
        The images found now.
    previous : dict of str to list of str
        The assignment of the last listing (shard name to image ids); empty at first.
    shard_size : int
        Most images a new shard receives.

    Returns
    -------
    dict of str to list of str
        Shard name to image ids, in shard order; shards left empty are dropped.

    Examples
    --------
    >>> assign_shards(["a", "b", "c"], {}, 2)
    {'000000': ['a', 'b'], '000001': ['c']}
    >>> assign_shards(["a", "b", "c", "d", "e"], {'000000': ['a', 'b'], '000001': ['c']}, 2)
    {'000000': ['a', 'b'], '000001': ['c', 'd'], '000002': ['e']}
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    current = set(image_ids)
    shards = {}
    placed = set()
    for name in sorted(previous):
        kept = [i for i in previous[name] if i in current and i not in placed]
        placed.update(kept)
        if kept:
            shards[name] = kept
    new = sorted(current - placed)
    next_index = max((int(n) for n in previous), default=-1) + 1
    if shards and new:
        last = max(shards)
        room = shard_size - len(shards[last])
        if room > 0 and last == shard_name(next_index - 1):
            shards[last] = shards[last] + new[:room]
            new = new[room:]
    for start in range(0, len(new), shard_size):
        shards[shard_name(next_index)] = new[start : start + shard_size]
        next_index += 1
    return shards


def shard_names(manifest_path):
    """The shard names of a manifest table, sorted; read once per version of the file.

    The workflow asks for them from several input functions while it plans; reading one
    column of one declared output is cheaper than opening every shard file, and does not
    depend on a folder listing, which a shared file system may serve stale.
    """
    return sorted(shard_sizes(manifest_path))


def shard_sizes(manifest_path):
    """Shard name to its number of images, from a manifest table (cached per version)."""
    stat = os.stat(manifest_path)
    return _shard_sizes(str(manifest_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _shard_sizes(path, mtime_ns, size):
    import pyarrow.parquet as pq

    counts = pq.read_table(path, columns=["shard"]).column("shard").value_counts()
    return {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}


def read_shards(shard_dir):
    """The assignment stored in ``shard_dir`` (``{}`` if there is none)."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        return {}
    return {p.stem: read_shard(p) for p in sorted(shard_dir.glob("*.json"))}


def read_shard(path):
    """The image ids of one shard file."""
    with open(path) as fh:
        return json.load(fh)


def write_shards(shard_dir, shards):
    """Store an assignment, touching only shard files whose list changed.

    Returns the names of the shards written (new or changed).
    """
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, ids in shards.items():
        path = shard_dir / f"{name}.json"
        data = json.dumps(ids, indent=0).encode()
        if not path.exists() or path.read_bytes() != data:
            write_bytes_atomic(path, data)
            changed.append(name)
    for path in shard_dir.glob("*.json"):
        if path.stem not in shards:
            path.unlink()
    return changed


def update_manifest(input_dir, *, shard_dir, shard_size, manifest_out):
    """List ``input_dir``, update the shard files, write the manifest table.

    Raises
    ------
    InputDirError
        If the folder is missing or holds no files.
    """
    import logging

    import pyarrow as pa

    from segpipe.errors import InputDirError
    from segpipe.table import write_table_atomic

    log = logging.getLogger(__name__)
    if not Path(input_dir).is_dir():
        raise InputDirError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    image_ids = list_images(input_dir)
    if not image_ids:
        raise InputDirError(f"input_dir {str(input_dir)!r} holds no files")
    if shard_size == "auto":
        shard_size = auto_shard_size(len(image_ids))
        log.info("shard_size auto: %d images per new shard", shard_size)
    previous = read_shards(shard_dir)
    shards = assign_shards(image_ids, previous, shard_size)
    changed = write_shards(shard_dir, shards)
    log.info(
        "%d files in %s: %d shards, %d new or changed, %d removed",
        len(image_ids), input_dir, len(shards), len(changed), len(set(previous) - set(shards)),
    )
    names = [name for name, ids in shards.items() for _ in ids]
    ids = [i for members in shards.values() for i in members]
    write_table_atomic(pa.table({"image_id": ids, "shard": names}), manifest_out)
