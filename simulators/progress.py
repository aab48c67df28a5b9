"""One progress line on stderr: rewritten in place on a terminal, a plain line every few
seconds otherwise (so logs of a long run stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from simulators.clock import LOCAL_TZ, to_dt

TTY_EVERY_S = 0.25
LOG_EVERY_S = 10.0


class Progress:
    def __init__(self, label: str, *, start: float, end: float, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.label = label
        self.start, self.end = start, end
        self.out = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.out.isatty()
        self.every = TTY_EVERY_S if self.tty else LOG_EVERY_S
        self.t0 = time.monotonic()
        self.last = 0.0
        self.width = 0

    def update(self, sim_t: float, count: int, unit: str = "msgs", extra: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(1e-9, now - self.t0)
        span = max(1e-9, self.end - self.start)
        pct = min(100.0, max(0.0, 100.0 * (sim_t - self.start) / span))
        sim = to_dt(sim_t).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")
        line = (f"{self.label}: sim {sim} CST  {pct:5.1f}%  {count:,} {unit}  "
                f"{count / elapsed:,.0f} {unit}/s{('  ' + extra) if extra else ''}")
        if self.tty:
            pad = max(0, self.width - len(line))
            self.out.write("\r" + line + " " * pad)
            self.width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.enabled and self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
