"""The run's clock: log lines on stderr show the seconds since the stream started."""

from __future__ import annotations

import sys
import time


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def restart(self) -> float:
        """The stream starts now: times are counted from here."""
        self.t0 = time.monotonic()
        return self.t0

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 2)


CLOCK = Clock()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} t{time.monotonic() - CLOCK.t0:+7.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return CLOCK.elapsed()
