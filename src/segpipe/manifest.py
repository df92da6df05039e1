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

import errno
import fnmatch
import functools
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

from segpipe.imageio import ZARR_SUFFIX, output_errors, write_bytes_atomic

if TYPE_CHECKING:
    from segpipe.planes import Reading

SHARD_DIGITS = 6


def shard_name(index: int) -> str:
    """Shard names are zero-padded numbers: ``shard_name(3) == '000003'``."""
    return f"{index:0{SHARD_DIGITS}d}"


# Why an entry of the input folder is not an image to segment (the ``reason`` column of
# results/manifest/skipped.parquet). Everything not listed as an image is one of these.
HIDDEN = "hidden (name starts with '.')"
# Files left out on purpose by include / exclude: counted in the log, not warned about.
SELECTED_OUT = ("not an image file", "not matched by include", "excluded by pattern")
NOT_UTF8 = "file name is not valid UTF-8 (rename it to segment it)"
DANGLING = "symbolic link to nothing (dangling)"
LOOP = "symbolic link loop"
LINK_TO_FOLDER = "symbolic link to a folder (not followed: it could loop or repeat images)"
# A ``.zarr`` folder whose root holds no image but a ``labels`` group: a mask (segpipe's
# ``mask_format: zarr`` writes these), left out without a warning, as masks are no inputs.
LABELS_ONLY = "OME-Zarr labels without an image (a mask, such as mask_format: zarr writes)"
SPECIAL = {
    stat.S_IFIFO: "named pipe (FIFO), not a regular file",
    stat.S_IFSOCK: "socket, not a regular file",
    stat.S_IFCHR: "character device, not a regular file",
    stat.S_IFBLK: "block device, not a regular file",
}


def selection_reason(rel: str, include: Sequence[str] | None = None,
                     exclude: Iterable[str] | None = ()) -> str | None:
    """Why a file is not an image to segment by the ``include`` / ``exclude`` globs, or None.

    A pattern with a ``/`` is matched against the path relative to ``input_dir``, one
    without against the file name; ``*`` matches any characters, ``/`` included; matching
    ignores case (``*.tif`` takes ``A.TIF``). ``include`` None takes every file whose
    extension a reader knows (:data:`segpipe.imageio.IMAGE_SUFFIXES`).

    >>> selection_reason("plate1/notes.txt") is not None
    True
    >>> selection_reason("plate1/a_masks.tif", exclude=["*_masks.tif"])
    "excluded by pattern '*_masks.tif'"
    >>> selection_reason("a.png", include=["plate*/*.png"])
    'not matched by include (plate*/*.png)'
    """
    from segpipe.imageio import IMAGE_SUFFIXES, ZARR_SUFFIX

    if include is None:
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix not in IMAGE_SUFFIXES and suffix != ZARR_SUFFIX:
            return f"not an image file (extension {suffix or 'none'!r}; see include)"
    elif not any(_matches(rel, pattern) for pattern in include):
        return f"not matched by include ({', '.join(include)})"
    for pattern in exclude or ():
        if _matches(rel, pattern):
            return f"excluded by pattern {pattern!r}"
    return None


def _matches(rel: str, pattern: str) -> bool:
    subject = rel if "/" in pattern else PurePosixPath(rel).name
    return fnmatch.fnmatchcase(subject.lower(), pattern.lower())


def display_path(rel: str) -> str:
    """A relative path as text that can always be printed and stored: bytes that are not
    UTF-8 (kept by Python as surrogate escapes) are shown as ``\\xNN``.

    >>> display_path(os.fsdecode(b"caf\\xe9.png"))
    'caf\\\\xe9.png'
    """
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class FolderStat(NamedTuple):
    """What the listing records of a folder that is one image (``.zarr``): the total size
    of its files and the latest modification time among them, so that a chunk rewritten
    deep inside changes the image's signature."""

    st_size: int
    st_mtime_ns: int


def scan(root: str | os.PathLike) -> Iterator[tuple[str, str, os.stat_result | FolderStat | str]]:
    """Walk ``root`` once; yield ``("file", rel, stat_result)`` or ``("skip", rel, reason)``.

    ``rel`` is a POSIX path relative to ``root``. Regular files and symbolic links to
    regular files are images to segment, and so are folders named ``*.zarr`` (OME-Zarr
    images, :class:`FolderStat`), which are not descended into; one holding OME-Zarr
    labels alone is a mask (:data:`LABELS_ONLY`). Everything else is reported, never
    dropped in silence: hidden entries (not descended into), names that are not UTF-8,
    dangling links, link loops, links to folders, pipes, sockets and devices, and folders
    that cannot be read (their contents unknown). The walk never raises for what it finds.
    Order within a folder is the file system's; callers sort.
    """
    root = os.fspath(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as entries:
                found = list(entries)
        except OSError as err:
            yield "skip", rel or ".", f"folder cannot be read ({err.strerror or err})"
            continue
        for entry in found:
            child = f"{rel}/{entry.name}" if rel else entry.name
            kind, info = _classify(entry)
            if kind == "folder":
                stack.append(child)
            else:
                yield kind, child, info


def _classify(entry: os.DirEntry) -> tuple[str, os.stat_result | str | None]:
    if entry.name.startswith("."):
        return "skip", HIDDEN
    if not _is_utf8(entry.name):
        return "skip", NOT_UTF8
    try:
        if entry.is_symlink():
            try:
                st = os.stat(entry.path)
            except FileNotFoundError:
                return "skip", DANGLING
            except OSError as err:
                if err.errno == errno.ELOOP:
                    return "skip", LOOP
                raise
            if stat.S_ISDIR(st.st_mode):
                return "skip", LINK_TO_FOLDER
        else:
            if entry.is_dir(follow_symlinks=False):
                if entry.name.lower().endswith(ZARR_SUFFIX):
                    return _zarr_folder(entry.path)
                return "folder", None
            st = entry.stat(follow_symlinks=False)
    except OSError as err:
        return "skip", f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(st.st_mode):
        return "file", st
    return "skip", SPECIAL.get(stat.S_IFMT(st.st_mode), "not a regular file")


def _zarr_folder(path: str) -> tuple[str, FolderStat | str]:
    """A ``.zarr`` folder: an image with its :class:`FolderStat`, or a mask to skip. One
    that is neither (no multiscales, unreadable metadata) is listed as an image all the
    same: its row then says what is wrong, as for any unreadable file."""
    if _labels_only(path):
        return "skip", LABELS_ONLY
    size = mtime = 0
    for folder, _, files in os.walk(path):
        # Folders' times too: a file added or removed changes its folder's.
        for name in (".", *files):
            try:
                st = os.stat(os.path.join(folder, name), follow_symlinks=False)
            except OSError:
                continue  # gone since listed: the read will tell
            size += st.st_size if name != "." else 0
            mtime = max(mtime, st.st_mtime_ns)
    return "file", FolderStat(size, mtime)


def _labels_only(path: str) -> bool:
    """Whether a ``.zarr`` folder's root has no image (no ``multiscales``, no
    bioformats2raw series) but a ``labels`` group that names labels: NGFF labels alone."""
    root = _zarr_attrs(path)
    if root is None or "multiscales" in root or "bioformats2raw.layout" in root:
        return False
    labels = _zarr_attrs(os.path.join(path, "labels"))
    return labels is not None and bool(labels.get("labels"))


def _zarr_attrs(folder: str) -> dict | None:
    """A Zarr group's attributes from its metadata file (format 2 ``.zattrs``, format 3
    ``zarr.json``; NGFF 0.5's under ``ome``), or None if there is none to read. The
    listing reads these small JSON files itself: opening each folder with zarr would cost
    an import and a store per image."""
    node = _json(os.path.join(folder, "zarr.json"))
    if isinstance(node, dict):
        attrs = node.get("attributes", {})
    elif os.path.isfile(os.path.join(folder, ".zgroup")):
        attrs = _json(os.path.join(folder, ".zattrs")) or {}
    else:
        return None
    if not isinstance(attrs, dict):
        return None
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


def _json(path: str) -> object:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def iter_files(root: str | os.PathLike) -> Iterator[str]:
    """Yield every image file under ``root`` (see :func:`scan`) as a relative POSIX path."""
    for kind, rel, _ in scan(root):
        if kind == "file":
            yield rel


def folder_fingerprint(root: str | os.PathLike) -> str:
    """A hash that changes when anything the listing records changes under ``root``.

    That is an entry added, removed or renamed, a file rewritten (its size or
    modification time) and any entry that cannot be read. It costs one ``stat`` per file
    at every workflow start, so it is written lean: about 2 s for 10^6 files on the
    development machine's disk (docs/benchmarks.md, "planning"). Entries are hashed in
    the order the file system lists them, not sorted: that order changes only when a
    folder's entries do, and a spurious change costs one listing job, never a segment job
    (shard files are rewritten only when their images change).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        return "missing"
    digest = hashlib.sha256()
    stack = [root]
    while stack:
        folder = stack.pop()
        parts = [folder]
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                            parts.append(entry.name)
                        else:
                            st = entry.stat()
                            parts.append(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}")
                    except OSError as err:
                        parts.append(f"{entry.name}\0!{err.errno}")
        except OSError as err:
            parts.append(f"!{err.errno}")
        digest.update("\n".join(parts).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


AUTO_JOBS = 1000
AUTO_LEAST, AUTO_MOST = 250, 5000


def auto_shard_size(n_images: int) -> int:
    """``shard_size: auto``: 250 images per job, more past ``AUTO_JOBS`` jobs per method.

    Fewer, longer jobs cost a scheduler and Snakemake's planning less (each job is a
    submission, a status poll, a start of Python and about 1.5 ms of planning at every
    start); more, shorter jobs spread better and lose less to a failure. 250..5,000 images
    per job keeps jobs between seconds and about an hour.

    >>> auto_shard_size(300), auto_shard_size(10**6), auto_shard_size(10**8)
    (250, 1000, 5000)
    """
    return min(AUTO_MOST, max(AUTO_LEAST, -(-n_images // AUTO_JOBS)))


def assign_shards(image_ids: Iterable[str], previous: Mapping[str, Sequence[str]],
                  shard_size: int) -> dict[str, list[str]]:
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


def shard_names(manifest_path: str | os.PathLike) -> list[str]:
    """The shard names of a manifest table, sorted; read once per version of the file.

    The workflow asks for them from several input functions while it plans; reading one
    column of one declared output is cheaper than opening every shard file, and does not
    depend on a folder listing, which a shared file system may serve stale.
    """
    return sorted(shard_sizes(manifest_path))


def shard_sizes(manifest_path: str | os.PathLike) -> dict[str, int]:
    """Shard name to its number of images, from a manifest table (cached per version)."""
    stat = os.stat(manifest_path)
    return _shard_sizes(str(manifest_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _shard_sizes(path: str, mtime_ns: int, size: int) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts = pq.read_table(path, columns=["shard"]).column("shard").value_counts()
    return {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}


def read_shards(shard_dir: str | os.PathLike) -> dict[str, list[str]]:
    """The assignment stored in ``shard_dir`` (``{}`` if there is none)."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        return {}
    return {p.stem: read_shard(p) for p in sorted(shard_dir.glob("*.json"))}


def read_shard(path: str | os.PathLike) -> list[str]:
    """The image ids of one shard file, in order (each entry is ``[id, *signature]``)."""
    with open(path) as fh:
        return [entry[0] for entry in json.load(fh)]


def write_shards(shard_dir: str | os.PathLike, shards: Mapping[str, Sequence[str]],
                 signatures: Mapping[str, Sequence[object]] | None = None) -> list[str]:
    """Store an assignment, touching only shard files whose content changed.

    Parameters
    ----------
    shards : dict of str to list of str
        Shard name to image ids.
    signatures : dict of str to list, optional
        Per image, what identifies its content (size and modification time, or a content
        hash). Stored beside each id, so an image edited in place changes its shard file,
        whose jobs then re-run, and no other.

    Returns the names of the shards written (new or changed).

    Raises
    ------
    OutputError
        If the folder or a shard file cannot be written, or a gone shard's file removed.
    """
    shard_dir = Path(shard_dir)
    with output_errors(shard_dir):
        shard_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, ids in shards.items():
        path = shard_dir / f"{name}.json"
        entries = [[i, *(signatures[i] if signatures is not None else ())] for i in ids]
        data = json.dumps(entries, indent=0).encode()
        if not path.exists() or path.read_bytes() != data:
            write_bytes_atomic(path, data)
            changed.append(name)
    for path in shard_dir.glob("*.json"):
        if path.stem not in shards:
            with output_errors(path):
                path.unlink()
    return changed


def _previous_hashes(manifest_path: str | os.PathLike) -> dict[str, tuple[int, int, str]]:
    """Image id to (size, mtime_ns, sha256) from the last manifest, to hash only what changed."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(manifest_path, columns=["image_id", "size", "mtime_ns", "sha256"])
    except (OSError, KeyError, ValueError):
        return {}
    columns = [table.column(c).to_pylist() for c in table.column_names]
    return {i: (size, mtime, sha) for i, size, mtime, sha in zip(*columns) if sha}


def _sha256(path: str | os.PathLike) -> str:
    """A file's SHA-256; a folder's (an OME-Zarr image) is that of its files' relative
    paths and SHA-256s, in sorted order."""
    if os.path.isdir(path):
        digest = hashlib.sha256()
        found = sorted(os.path.relpath(os.path.join(folder, name), path)
                       for folder, _, files in os.walk(path) for name in files)
        for rel in found:
            digest.update(f"{rel}\0{_sha256(os.path.join(path, rel))}\n".encode(
                "utf-8", "surrogateescape"))
        return digest.hexdigest()
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_of(image_id: str) -> str:
    from segpipe.planes import split_plane

    return split_plane(image_id)[0]


def update_manifest(input_dir: str | os.PathLike, *, shard_dir: str | os.PathLike,
                    shard_size: int | str, manifest_out: str | os.PathLike,
                    skipped_out: str | os.PathLike, hash_images: bool = False,
                    results_dir: str | os.PathLike | None = None,
                    include: Sequence[str] | None = None, exclude: Iterable[str] | None = (),
                    reading: Reading | None = None) -> None:
    """List ``input_dir``, update the shard files, write the manifest and skipped tables.

    The manifest has one row per image: ``image_id``, ``shard``, ``size``, ``mtime_ns`` and,
    with ``hash_images``, ``sha256``. The skipped table has one row per entry that is not
    an image to segment (``path``, ``reason``; see :func:`scan`), files that ``include``
    and ``exclude`` leave out among them (:func:`selection_reason`). With ``z`` or
    ``time`` ``all`` in ``reading``, a stack gives one image id per plane
    (:func:`segpipe.sources.plane_ids`), each with its file's size, time and hash.

    Raises
    ------
    InputDirError
        If the folder is missing or holds no files.
    """
    import logging
    from collections import Counter

    import pyarrow as pa

    from segpipe.errors import InputDirError
    from segpipe.table import pandas_blocked, write_table_atomic

    log = logging.getLogger(__name__)
    if not Path(input_dir).is_dir():
        raise InputDirError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    stats, skipped = {}, []
    for kind, rel, info in scan(input_dir):
        if kind == "file":
            reason = selection_reason(rel, include, exclude)
            if reason is None:
                stats[rel] = info
            else:
                skipped.append((display_path(rel), reason))
        else:
            skipped.append((display_path(rel), info))
    skipped.sort()
    for path, reason in skipped:
        if reason not in (HIDDEN, LABELS_ONLY) and not reason.startswith(SELECTED_OUT):
            log.warning("skipped %s: %s", path, reason)
    counts = Counter(reason for _, reason in skipped)
    log.info("skipped %d entries of %s%s", len(skipped), input_dir,
             "".join(f"; {n} {reason}" for reason, n in sorted(counts.items())))
    with pandas_blocked():  # the job's first Arrow conversion: see table.without_pandas
        write_table_atomic(pa.table({"path": pa.array([p for p, _ in skipped], pa.string()),
                                     "reason": pa.array([r for _, r in skipped], pa.string())}),
                           skipped_out)
    if reading is not None and "all" in (reading.z, reading.time):
        from segpipe.sources import plane_ids

        stats = {plane: info for rel, info in stats.items()
                 for plane in plane_ids(rel, Path(input_dir) / rel, reading)}
    image_ids = sorted(stats)
    if not image_ids:
        raise InputDirError(f"input_dir {str(input_dir)!r} holds no files to segment "
                            f"({len(skipped)} skipped, see {skipped_out})")
    if shard_size == "auto":
        shard_size = auto_shard_size(len(image_ids))
        log.info("shard_size auto: %d images per new shard", shard_size)
    sizes = {i: stats[i].st_size for i in image_ids}
    mtimes = {i: stats[i].st_mtime_ns for i in image_ids}
    hashes = {}
    if hash_images:
        cached = _previous_hashes(manifest_out)
        for i in image_ids:
            old = cached.get(i)
            if old is not None and old[:2] == (sizes[i], mtimes[i]):
                hashes[i] = old[2]
            else:
                hashes[i] = _sha256(Path(input_dir) / _file_of(i))
        signatures = {i: [hashes[i]] for i in image_ids}
    else:
        signatures = {i: [sizes[i], mtimes[i]] for i in image_ids}
    previous = read_shards(shard_dir)
    shards = assign_shards(image_ids, previous, shard_size)
    changed = write_shards(shard_dir, shards, signatures)
    removed = sorted(set(previous) - set(shards))
    if results_dir is not None and removed:
        from segpipe.cleanup import remove_shard_outputs
        from segpipe.layout import Layout

        remove_shard_outputs(Layout(str(results_dir)), removed)
    log.info(
        "%d files in %s: %d shards, %d new or changed, %d removed",
        len(image_ids), input_dir, len(shards), len(changed), len(removed),
    )
    names = [name for name, ids in shards.items() for _ in ids]
    ids = [i for members in shards.values() for i in members]
    write_table_atomic(pa.table({
        "image_id": pa.array(ids, pa.string()),
        "shard": pa.array(names, pa.string()),
        "size": pa.array([sizes[i] for i in ids], pa.int64()),
        "mtime_ns": pa.array([mtimes[i] for i in ids], pa.int64()),
        "sha256": pa.array([hashes.get(i) for i in ids], pa.string()),
    }), manifest_out)
