"""The live progress line of ``segpipe run`` on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from segpipe.status import progress_counts


def progress_line(total: int | None, done: Mapping[str, int], elapsed_s: float,
                  start_done: int = 0) -> str:
    """One terminal line: images done of total per method, images/s, time left.

    >>> progress_line(100, {"otsu": 50, "ws": 30}, 4.0)
    'otsu 50/100 · ws 30/100 · 20.0 images/s · about 6 s left'
    """
    if total is None:
        return "listing images..."
    parts = [f"{m} {n:,}/{total:,}" for m, n in done.items()]
    finished = sum(done.values()) - start_done
    rate = finished / elapsed_s if elapsed_s > 0 else 0.0
    left = total * len(done) - sum(done.values())
    if rate > 0:
        parts.append(f"{rate:.1f} images/s · about {left / rate:.0f} s left")
    return " · ".join(parts) if parts else f"{total:,} images listed"


def run_with_progress(command: Sequence[str], out: str | os.PathLike, every_s: float = 1.0,
                      env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = ()) -> int:
    """Run Snakemake (given the descriptors ``pass_fds``); on a terminal, keep a progress
    line at the bottom of the output."""
    import threading
    import time

    process = subprocess.Popen(command, env=env, pass_fds=tuple(pass_fds))
    if not sys.stderr.isatty():
        return process.wait()
    cache, start = {}, time.monotonic()
    stop = threading.Event()

    def show() -> None:
        first = None
        while not stop.wait(every_s):
            total, done = progress_counts(out, cache)
            if first is None and total is not None:
                first = sum(done.values())
            line = progress_line(total, done, time.monotonic() - start, first or 0)
            print(f"\r\033[K[segpipe] {line}", end="", file=sys.stderr, flush=True)

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        return process.wait()
    finally:
        stop.set()
        thread.join()
        print(file=sys.stderr)
