"""A bounded pool of forked writer processes: host work per image beside the GPU's."""

from __future__ import annotations

import collections
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Self, TypeVar

_CONTEXT = None


def _init_writer(context: object) -> None:
    global _CONTEXT
    _CONTEXT = context


_R = TypeVar("_R")


def _call(task: Callable[..., _R], args: tuple) -> _R:
    return task(_CONTEXT, *args)


def fork_available() -> bool:
    """Whether writer processes can be forked (POSIX, not macOS's default)."""
    return "fork" in multiprocessing.get_all_start_methods()


class WriterPool:
    """Runs ``task(context, *args)`` per image, in ``writers`` processes or inline.

    Results come back in submission order. At most ``depth`` tasks wait or run at once:
    :meth:`submit` blocks on the oldest beyond that, so memory is bounded by ``depth``
    images, never by the size of the shard.

    The processes are forked at construction: create the pool before CUDA is initialised
    and before loader threads start. Forking (rather than spawning) matters under
    Snakemake's ``script:``, whose generated script has no ``__main__`` guard for a spawned
    child to respect.

    Parameters
    ----------
    task : callable
        A module-level function ``task(context, *args) -> result``.
    context : object
        Passed to every call; sent to each process once.
    writers : int
        Processes; 0 runs each task inline in :meth:`submit`.
    depth : int, optional
        Most tasks in flight (default ``2 * writers``).
    """

    def __init__(self, task: Callable[..., Any], context: object, *, writers: int,
                 depth: int | None = None) -> None:
        self.task = task
        self.context = context
        self.depth = max(1, depth or 2 * writers)
        self.pending = collections.deque()
        self.wait_s = 0.0
        self.executor = None
        if writers > 0:
            import cv2

            self.executor = ProcessPoolExecutor(
                writers, mp_context=multiprocessing.get_context("fork"),
                initializer=_init_writer, initargs=(context,),
            )
            # One core per writer: OpenCV's threads would fight the other writers. Set in
            # the parent around the fork, because cv2.setNumThreads hangs in a forked child
            # of a process whose OpenCV thread pool has run.
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                # With fork, the executor starts all its processes at the first submit: now.
                self.executor.submit(int).result()
            finally:
                cv2.setNumThreads(threads)

    def submit(self, *args: object) -> list[Any]:
        """Queue one task; return the results that completed, oldest first."""
        if self.executor is None:
            return [self.task(self.context, *args)]
        self.pending.append(self.executor.submit(_call, self.task, args))
        done = []
        while len(self.pending) >= self.depth or (self.pending and self.pending[0].done()):
            done.append(self._next())
        return done

    def drain(self) -> list[Any]:
        """Wait for every queued task; return their results, oldest first."""
        done = []
        while self.pending:
            done.append(self._next())
        return done

    def _next(self) -> Any:
        t0 = time.perf_counter()
        result = self.pending.popleft().result()
        self.wait_s += time.perf_counter() - t0
        return result

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
