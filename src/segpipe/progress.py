"""Progress lines for a job's log: images done, images per second, time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


class Progress:
    """Log progress at most every ``every_s`` seconds, then a closing total.

    >>> import logging; p = Progress(4, logging.getLogger("doc"), label="demo")
    >>> p.update(2); p.done
    2
    """

    def __init__(self, total: int, logger: logging.Logger, *, label: str = "",
                 every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.logger = logger
        self.label = label
        self.every_s = every_s
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.done = 0
        self.errors = 0

    def update(self, n: int = 1, *, errors: int = 0) -> None:
        self.done += n
        self.errors += errors
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self.logger.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else self.clock()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (
            f"{self.label}: {self.done}/{self.total} images ({self.errors} errors), "
            f"{rate:.1f} images/s, about {left:.0f} s left"
        )

    def close(self) -> None:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.logger.info(
            f"{self.label}: finished {self.done}/{self.total} images ({self.errors} errors) "
            f"in {elapsed:.1f} s, {rate:.1f} images/s"
        )
