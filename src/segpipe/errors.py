"""Exceptions that segpipe raises on purpose, so callers can tell them from bugs."""

from __future__ import annotations

import os
from collections.abc import Iterable


class ImageReadError(Exception):
    """An input file could not be decoded into an image.

    The message names the file and the cause; the batch loop records it in the
    image's row and moves on.
    """

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class OutputWriteError(Exception):
    """An output file (mask, edge map, table) could not be written.

    Unlike an unreadable input, this fails the job, so that Snakemake does not record it
    as done and a rerun redoes it: a full disk or a read-only folder is the run's problem,
    not the image's.
    """

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot write {self.path}: {cause}")

    def __reduce__(self) -> tuple[type[OutputWriteError], tuple[str, str]]:
        # Picklable across writer processes.
        return type(self), (self.path, self.cause)


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
