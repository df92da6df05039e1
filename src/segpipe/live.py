"""The live progress line of ``segpipe run`` on a terminal: how far each model's training
got, then the images done per method."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from segpipe.status import progress_counts, training_states


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


def training_line(out: str | os.PathLike) -> str | None:
    """The training part of the progress line of the run in ``out``: the last epoch each
    running training job logged (:func:`segpipe.status.training_states`), None when no
    model is training.

    ``train nuclei 12/30 · loss 0.81 · val AP 0.71 · about 4 min left``; before the
    first epoch ends, ``train nuclei 0/30``. Several models training at once are joined
    by `` · ``. A file being written that cannot be read yet reads as no line: the next
    second's poll sees it whole.
    """
    try:
        states = [s for s in training_states(out) if s["state"] == "training"]
    except (OSError, ValueError):
        return None
    parts = []
    for s in states:
        part = f"train {s['name']} {s['epoch']}/{'?' if s['epochs'] is None else s['epochs']}"
        if s["epoch"]:
            part += f" · loss {s['loss']:.2f} · val AP " + (
                "n/a" if s["val_ap"] is None else f"{s['val_ap']:.2f}")
        if s["left"]:
            part += f" · about {s['left']} left"
        parts.append(part)
    return " · ".join(parts) or None


def run_with_progress(command: Sequence[str], out: str | os.PathLike, every_s: float = 1.0,
                      env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = ()) -> int:
    """Run Snakemake (given the descriptors ``pass_fds``); on a terminal, keep a progress
    line at the bottom of the output: the training part (:func:`training_line`) while a
    model trains, then the images done (:func:`progress_line`)."""
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
            training = training_line(out)
            if training:
                line = f"{training} · {line}"
            print(f"\r\033[K[segpipe] {line}", end="", file=sys.stderr, flush=True)

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        return process.wait()
    finally:
        stop.set()
        thread.join()
        print(file=sys.stderr)
