"""Exceptions that segpipe raises on purpose, so callers can tell them from bugs, and how a
workflow script shows them (:func:`one_line_errors`)."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class ImageReadError(Exception):
    """An input file could not be decoded into an image.

    The message names the file and the cause; the batch loop records it in the
    image's row and moves on.
    """

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


# What a user can do about an output that cannot be written, by the cause.
_FOLDER_HINT = "make the folder writable or choose another --out / out_dir"
_SPACE_HINT = "free space, then run again: finished shards are kept"
_IN_THE_WAY_HINT = "move that file away or choose another --out / out_dir"
_OTHER_HINT = "fix the output folder, then run again: finished shards are kept"

# errno to the cause in words and its hint; any other errno gets the system's words and
# the generic hint.
_CAUSES = {
    errno.EROFS: ("read-only file system", _FOLDER_HINT),
    errno.EACCES: ("permission denied", _FOLDER_HINT),
    errno.EPERM: ("operation not permitted", _FOLDER_HINT),
    errno.ENOSPC: ("no space left on device", _SPACE_HINT),
    errno.EDQUOT: ("disk quota exceeded", _SPACE_HINT),
    # Path.mkdir(exist_ok=True) over a file, and a file as a folder of the path.
    errno.EEXIST: ("a file stands where a folder should be", _IN_THE_WAY_HINT),
    errno.ENOTDIR: ("a file stands where a folder should be", _IN_THE_WAY_HINT),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter --out / out_dir"),
}


class OutputError(Exception):
    """An output file (mask, edge map, table, JSON file, figure, page) could not be written.

    The message is one line that stands alone: the final path (never the temporary file
    it was being written through), the cause in words and what to do::

        cannot write results/masks/ws/000004/000003-x.tif: read-only file system (make
        the folder writable or choose another --out / out_dir)

    Unlike an unreadable input, this fails the job, so that Snakemake does not record it
    as done and a rerun redoes it: a full disk or a read-only folder is the run's problem,
    not the image's.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or folder) that was to be written.
    cause : str
        Why it could not be, in words.
    hint : str, optional
        What to do about it.
    """

    def __init__(self, path: str | os.PathLike, cause: str, hint: str | None = None) -> None:
        self.path = os.fspath(path)
        self.cause = cause
        self.hint = hint
        super().__init__(f"cannot write {self.path}: {cause}" + (f" ({hint})" if hint else ""))

    @classmethod
    def from_os_error(cls, path: str | os.PathLike, err: OSError, *,
                      temporary: str | os.PathLike | None = None) -> OutputError:
        """The error for ``path`` from the operating system's ``err``.

        The cause comes from ``err.errno`` alone: the error's own text names the file
        the system call was given, often the temporary one (``.segpipe-*.tmp``), which
        the user never asked for. Without an errno the text is kept, with ``temporary``
        replaced by ``path``.

        >>> import errno
        >>> err = OutputError.from_os_error("out/a.png", OSError(errno.EROFS, "Read-only"))
        >>> str(err)[:49]
        'cannot write out/a.png: read-only file system (ma'
        """
        if err.errno in _CAUSES:
            return cls(path, *_CAUSES[err.errno])
        if err.errno:
            return cls(path, os.strerror(err.errno).lower(), _OTHER_HINT)
        text = str(err)
        if temporary is not None:
            text = text.replace(os.fspath(temporary), os.fspath(path))
        return cls(path, text, _OTHER_HINT)

    def __reduce__(self) -> tuple[type[OutputError], tuple[str, str, str | None]]:
        # Picklable, to come back whole from a writer process (segpipe.pool).
        return type(self), (self.path, self.cause, self.hint)


class ConfigError(ValueError):
    """The workflow configuration is wrong; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


class UnknownKeyError(ConfigError):
    """A config key that the schema does not allow where it stands.

    The message lists the keys allowed there and, when one is close enough in spelling
    (``difflib.get_close_matches``, ignoring case), suggests it first: ``config key
    'shard_szie': unknown key (did you mean 'shard_size'?); allowed here: [...]``.

    Parameters
    ----------
    where : str
        Dotted path of the mapping that holds the key (``methods.m``); "" at the top.
    name : str
        The unknown key.
    allowed : iterable of str
        The keys allowed in that mapping.
    """

    def __init__(self, where: str, name: str, allowed: Iterable[str]) -> None:
        import difflib

        self.allowed = sorted(allowed)
        by_lower = {key.lower(): key for key in self.allowed}
        close = difflib.get_close_matches(name.lower(), by_lower, n=1)
        self.suggestion = by_lower[close[0]] if close else None
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        super().__init__(f"{where}.{name}" if where else name,
                         f"unknown key{hint}; allowed here: {self.allowed}")


class InputDirError(ValueError):
    """The input folder is missing or holds no files."""


class WeightsMissingError(RuntimeError):
    """A model's named weights are not where the jobs read them (the fetch failed); the
    message says which file to put where."""


class RunConfigError(ValueError):
    """A run's config cannot be put together: an unreadable or invalid config file, or an
    unknown method on the command line. The message says which and why."""


class TrainingDataError(ValueError):
    """A training set that cannot train (``segpipe.training``): the message names each bad
    file and the cause, or the key to change."""


class TrainingDiverged(RuntimeError):
    """Training's loss became NaN or infinite: the message says when, and what to lower."""


# segpipe's errors whose message says all a user needs, in one line: a workflow script
# shows them without a traceback (see one_line_errors).
ONE_LINE_ERRORS = (OutputError, ImageReadError, ConfigError, InputDirError,
                   WeightsMissingError, RunConfigError, TrainingDataError, TrainingDiverged)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Let a workflow script end on one of segpipe's own errors in one line, not a traceback.

    Any of :data:`ONE_LINE_ERRORS` raised inside is logged (the rule's log) and printed to
    stderr as ``segpipe: <message>``, and the script exits with status 1, so that
    Snakemake fails the job. Other exceptions are bugs and keep their traceback.

    Examples
    --------
    A workflow script::

        with one_line_errors():
            log_to_file(snakemake.log[0])
            run_shard_job(ShardJob.from_snakemake(snakemake))
    """
    try:
        yield
    except ONE_LINE_ERRORS as err:
        log = logging.getLogger(__name__)
        log.error("%s", err)
        # The chained original, for whoever debugs with a DEBUG log.
        log.debug("traceback of the error above", exc_info=err)
        print(f"segpipe: {err}", file=sys.stderr)
        raise SystemExit(1) from None
