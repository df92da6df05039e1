import importlib.util
import threading
from pathlib import Path

from segpipe.scheduling import coalesce_reevaluation_timers


class FakeScheduler:
    """The two things the patched method touches: the semaphore and the method itself."""

    def __init__(self):
        self._open_jobs = threading.Semaphore(0)

    def _schedule_reevalutation(self, delay):  # upstream's spelling
        threading.Timer(delay, lambda: self._open_jobs.release()).start()


def wakeups(scheduler, timeout):
    count = 0
    while scheduler._open_jobs.acquire(timeout=timeout):
        count += 1
    return count


def test_many_requests_while_a_timer_is_pending_wake_the_scheduler_once():
    cls = type("Scheduler", (FakeScheduler,), {})
    assert coalesce_reevaluation_timers(cls)
    scheduler = cls()
    for _ in range(50):
        scheduler._schedule_reevalutation(0.05)
    assert wakeups(scheduler, timeout=0.3) == 1
    # After it fired, a new request starts a new timer: the rate limiter still gets its
    # later wake-up.
    scheduler._schedule_reevalutation(0.05)
    assert wakeups(scheduler, timeout=0.3) == 1


def test_upstream_behaviour_it_replaces_wakes_once_per_request():
    scheduler = FakeScheduler()
    for _ in range(5):
        scheduler._schedule_reevalutation(0.05)
    assert wakeups(scheduler, timeout=0.3) == 5


def test_timers_are_daemons_so_the_process_can_exit():
    cls = type("Scheduler", (FakeScheduler,), {})
    coalesce_reevaluation_timers(cls)
    before = set(threading.enumerate())
    cls()._schedule_reevalutation(30)
    new = set(threading.enumerate()) - before
    assert new and all(t.daemon for t in new)


def test_patching_twice_keeps_one_patch_and_unknown_classes_are_left_alone():
    cls = type("Scheduler", (FakeScheduler,), {})
    assert coalesce_reevaluation_timers(cls)
    patched = cls._schedule_reevalutation
    assert coalesce_reevaluation_timers(cls)
    assert cls._schedule_reevalutation is patched
    assert not coalesce_reevaluation_timers(type("Other", (), {}))


def test_the_installed_snakemake_has_the_method_it_patches():
    # If Snakemake renames or drops it, the workflow still runs but pays upstream's cost:
    # this test says so.
    # (Read, not imported: importing it looks for a SLURM controller, 9 s without one.)
    spec = importlib.util.find_spec("snakemake.scheduling.job_scheduler")
    src = Path(spec.origin).read_text()
    assert "def _schedule_reevalutation(self, delay" in src
    assert "self._open_jobs.release()" in src
