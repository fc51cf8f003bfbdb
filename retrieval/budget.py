"""A file's time budget: the seconds it may spend being read and cut into chunks (setting corpus.max_file_seconds).

A file of one article has one budget for both. A JSON or JSON Lines file of many records has one
for reading (parsing is cheap, and bounded by corpus.max_file_mb) and one per record for chunking:
a big archive of ordinary records must not fail for the sum of their times.

Only that work counts. The writer embeds and commits between a file's articles, and that time
is not the file's: a big feed of ordinary records must not fail for the time its vectors took.
A thread cannot be stopped from outside, so the budget is cooperative: the reader and the
chunker call `check()` between steps, and each step is kept small (one line or record, one pysbd
window of at most 5,000 characters, one word-piece count of a few thousand characters at most).
A file over its budget therefore fails within one step of it, and the rest of the ingest goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class OverBudget(ValueError):
    """A file took longer than its budget. A ValueError, as the chunker's other refusals are."""


class TimeBudget:
    """Seconds one file may spend in the reader and the chunker, summed over every call that is given it."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0:
            raise ValueError(f"a file's time budget must be more than 0 seconds, not {seconds}")
        self.seconds = seconds
        self._clock = clock
        self._spent = 0.0
        self._since: float | None = None  # when the outermost running() block began
        self._depth = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count the time spent inside the block (nested blocks count once)."""
        if self._depth == 0:
            self._since = self._clock()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._spent += self._clock() - self._since
                self._since = None

    def spent(self) -> float:
        return self._spent + (self._clock() - self._since if self._since is not None else 0.0)

    def check(self) -> None:
        """Raise OverBudget once the time spent is over the budget."""
        if self.spent() > self.seconds:
            raise OverBudget(f"over its time budget of {self.seconds:g} s for reading and chunking: split the "
                             "file or raise corpus.max_file_seconds")


@contextmanager
def running(budget: TimeBudget | None) -> Iterator[None]:
    """budget.running(), or nothing when there is no budget."""
    if budget is None:
        yield
    else:
        with budget.running():
            yield
