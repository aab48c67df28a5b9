"""One progress line on stderr: rewritten in place on a terminal, a plain line every few
seconds otherwise (so logs of a long run stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from simulators.clock import LOCAL_TZ, to_dt

TTY_EVERY_S = 0.25
LOG_EVERY_S = 10.0


def sim_clock(t: float) -> str:
    return "sim " + to_dt(t).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S") + " CST"


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.out = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.out.isatty()
        self.every = TTY_EVERY_S if self.tty else LOG_EVERY_S
        self.t0: float | None = None  # rate baseline: the first update (a worker may be well under way)
        self.c0 = 0
        self.last = 0.0
        self.width = 0
        self.state: tuple[float, int, str, str, str] | None = None
        self.shown = True  # whether the latest state has been written

    def update(self, fraction: float, count: int, unit: str, where: str = "", extra: str = "", *,
               force: bool = False) -> None:
        """fraction: 0..1 of the work done; where: e.g. the simulated clock."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.c0 = now, count
        self.state = (fraction, count, unit, where, extra)
        self.shown = False
        if not force and now - self.last < self.every:
            return
        self.last = now
        self.shown = True
        elapsed = now - self.t0
        rate = f"{(count - self.c0) / elapsed:,.0f} {unit}/s" if elapsed >= 0.5 else ""
        pct = 100.0 * min(1.0, max(0.0, fraction))
        parts = [f"{self.label}:", where, f"{pct:5.1f}%", f"{count:,} {unit}", rate, extra]
        line = "  ".join(p for p in parts if p)
        if self.tty:
            self.out.write("\r" + line + " " * max(0, self.width - len(line)))
            self.width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        """Show the last state (if it was throttled away), end the line."""
        if self.enabled and self.state is not None and not self.shown:
            self.update(*self.state, force=True)
        if self.enabled and self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
