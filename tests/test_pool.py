"""The writer pool: host work per image in forked processes, bounded, in order."""

import os
import time

import pytest

from segpipe.pool import WriterPool, fork_available


def slow_square(context, x, delay):
    time.sleep(delay)
    return context["offset"] + x * x, os.getpid()


@pytest.mark.parametrize("writers", [0, 3])
def test_pool_returns_results_in_submission_order(writers):
    if writers and not fork_available():
        pytest.skip("no fork here")
    delays = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0, 0.02]
    got = []
    with WriterPool(slow_square, {"offset": 100}, writers=writers, depth=3) as pool:
        for x, delay in enumerate(delays):
            got += pool.submit(x, delay)
            assert len(pool.pending) < 3  # never more than depth in flight
        got += pool.drain()
    assert [value for value, _ in got] == [100 + x * x for x in range(len(delays))]
    pids = {pid for _, pid in got}
    assert (pids == {os.getpid()}) if writers == 0 else (os.getpid() not in pids)


def test_pool_passes_a_task_error_to_the_caller():
    if not fork_available():
        pytest.skip("no fork here")
    with WriterPool(slow_square, {"offset": None}, writers=1) as pool, pytest.raises(TypeError):
        pool.submit(1, 0.0)
        pool.drain()


