import logging

from segpipe.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_lines_give_count_rate_and_time_left(caplog):
    clock = FakeClock()
    progress = Progress(10, logging.getLogger("t"), label="otsu shard 000001", every_s=5, clock=clock)
    with caplog.at_level(logging.INFO):
        clock.now += 2
        progress.update()  # too soon for a line
        assert caplog.messages == []
        clock.now += 3
        progress.update(errors=1)  # 2 images in 5 s: 0.4/s, 8 left -> 20 s
        clock.now += 5
        progress.update(3)
        progress.close()
    assert caplog.messages[0] == (
        "otsu shard 000001: 2/10 images (1 errors), 0.4 images/s, about 20 s left"
    )
    assert caplog.messages[1].startswith("otsu shard 000001: 5/10 images (1 errors), 0.5 images/s")
    assert caplog.messages[-1] == (
        "otsu shard 000001: finished 5/10 images (1 errors) in 10.0 s, 0.5 images/s"
    )
