"""Progress of long work on rank 0 (passes over the data, prepare_stream, simulate): nothing for the
first :data:`AFTER` seconds, then a line every :data:`EVERY` seconds with the share done, the rate and
the time left; on a terminal the line is rewritten in place, in a log (stderr not a terminal) each
is a new line. ``HPCFIT_PROGRESS_AFTER`` and ``HPCFIT_PROGRESS_EVERY`` (seconds) override both."""
from __future__ import annotations

import os
import sys
import time

AFTER = float(os.environ.get("HPCFIT_PROGRESS_AFTER", 10.0))
EVERY = float(os.environ.get("HPCFIT_PROGRESS_EVERY", 5.0))


class Progress:
    """``update(done)`` as the work goes on (``done`` of ``total`` ``unit``s, each ``points`` points
    when that is known, for a points/s rate); ``close()`` at the end."""

    def __init__(self, label: str, total: int, unit: str, points: float | None = None, stream=None):
        self.label, self.total, self.unit, self.points = label, max(1, int(total)), unit, points
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.last: float | None = None
        self.lines = 0

    def update(self, done: int) -> None:
        now = time.monotonic()
        elapsed = now - self.t0
        if elapsed < AFTER or (self.last is not None and now - self.last < EVERY) or done <= 0:
            return
        self.last = now
        rate = done / elapsed
        left = (self.total - done) / rate
        speed = f", {rate * self.points:.3g} points/s" if self.points else ""
        line = (f"{self.label}: {100.0 * done / self.total:.0f}% ({done}/{self.total} {self.unit}{speed}), "
                f"{elapsed:.0f} s so far, about {left:.0f} s left")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()
        self.lines += 1

    def close(self) -> None:
        if self.tty and self.lines:
            self.stream.write("\n")
            self.stream.flush()
