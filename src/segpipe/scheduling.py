"""Keep the Snakemake process's scheduling cost linear in the number of jobs.

Snakemake (9.x) limits job submissions with ``--max-jobs-per-timespan`` (default
``100/1s``). After every scheduling round in a real run it starts a new
``threading.Timer`` that wakes the scheduler again one timespan later, even when a timer
is already pending. A round triggered by that timer starts another one, so every job
that finishes adds a wake-up chain that lasts for the rest of the run: after k jobs have
finished the scheduler runs about k rounds per second, each looking at every ready job.
Measured on 2 cores (``benchmarks/bench_planning.py``), the main process spent 3 s of
CPU for 40 jobs and 73 s for 400; 4,000 jobs would take about two hours. Upstream
discusses it in snakemake/snakemake#3744 (open in November 2026).

:func:`coalesce_reevaluation_timers` replaces that method with one that keeps at most
one pending timer per scheduler. The rate limit keeps its meaning: a round that
wanted a wake-up still gets one within a timespan (the pending timer fires no later than
a new one would), and a round at the limit starts a new timer after it fires. The timer
is a daemon thread, so the process no longer waits for it before exiting.

The patch is applied from the Snakefile, in the main Snakemake process only. If a
Snakemake version lacks the method or the attributes it uses, nothing is changed: the
workflow still runs, with upstream's cost.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.scheduling.job_scheduler import JobScheduler

_MARK = "_segpipe_coalesced"


def _coalesced(self: JobScheduler, delay: float) -> None:
    lock = self.__dict__.setdefault("_segpipe_timer_lock", threading.Lock())
    with lock:
        if self.__dict__.get("_segpipe_timer_pending"):
            return
        self._segpipe_timer_pending = True

    def wake() -> None:
        with lock:
            self._segpipe_timer_pending = False
        self._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    timer.start()


setattr(_coalesced, _MARK, True)


def coalesce_reevaluation_timers(scheduler_class: type | None = None) -> bool:
    """Patch ``JobScheduler._schedule_reevalutation`` (sic) to keep one pending timer.

    Returns True if the method is patched (now or before), False if this Snakemake has
    no such method to patch. ``scheduler_class`` is for tests.
    """
    if scheduler_class is None:
        try:
            from snakemake.scheduling.job_scheduler import JobScheduler as scheduler_class
        except ImportError:
            return False
    original = getattr(scheduler_class, "_schedule_reevalutation", None)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True
    scheduler_class._schedule_reevalutation = _coalesced
    return True
