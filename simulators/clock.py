"""Simulated time: the run's window, durations on the command line, Shanghai local time.

Times inside the simulator are float epoch seconds (fast to compare and add); they become
datetimes only when a sample is built. Live samples must never carry a future ts (the
ingestor refuses ts > now + 5 min) nor one older than 90 days (stale_ts), so the window is
laid out to end exactly when the sped-up run ends on the wall clock: every published ts is
then at or before the moment it is published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

LOCAL_TZ = timezone(timedelta(hours=8), "CST")  # the simulated city (Shanghai): no DST
LOCAL_OFFSET_S = 8 * 3600
MAX_SPAN_DAYS = 88  # history + live must stay inside the ingestor's 90-day stale_ts window
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from '3600', '90s', '60m', '1.5h', '2d' or '1w'; ValueError names the problem."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 3600, 90s, 60m, 1.5h, 2d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def to_dt(t: float) -> datetime:
    """Epoch seconds (already rounded to ms) as an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def iso(t: float | None) -> str | None:
    """RFC 3339 with ms and Z, for the truth file (None stays None)."""
    if t is None:
        return None
    return to_dt(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_hour(t: float) -> int:
    return int((t + LOCAL_OFFSET_S) // 3600) % 24


def local_weekday(t: float) -> int:
    """Monday = 0; 1970-01-01 was a Thursday."""
    return (int((t + LOCAL_OFFSET_S) // 86400) + 3) % 7


def local_hour_float(t: float) -> float:
    return ((t + LOCAL_OFFSET_S) % 86400) / 3600.0


@dataclass(frozen=True, slots=True)
class Window:
    """[history_start, live_start) is backfilled by COPY; [live_start, end) goes over MQTT."""

    history_start: float
    live_start: float
    end: float

    @property
    def span(self) -> float:
        return self.end - self.history_start

    @property
    def duration(self) -> float:
        return self.end - self.live_start


def plan_window(*, now: datetime, duration_s: float, speedup: float, history_s: float = 0.0,
                start: datetime | None = None) -> Window:
    """Lay out the window so no good sample is stamped in the future or older than the ingestor accepts.

    Default: the live part ends when the run ends on the wall clock (now + duration/speedup;
    speedup 0 = as fast as possible, so it ends now). With `start`, the caller picks the live
    start, which must leave the whole window at or before that moment.
    """
    if duration_s < 0 or history_s < 0:
        raise ValueError("durations must not be negative")
    if speedup < 0:
        raise ValueError("speedup must be 0 (as fast as possible) or positive")
    wall_end = now.timestamp() + (duration_s / speedup if speedup > 0 else 0.0)
    live_start = start.timestamp() if start is not None else wall_end - duration_s
    end = live_start + duration_s
    if end > wall_end + 1e-6:
        raise ValueError(
            f"the window would end at {iso(end)}, after the run ends on the wall clock ({iso(wall_end)}): "
            "samples would be stamped in the future; choose an earlier --start")
    history_start = live_start - history_s
    if now.timestamp() - history_start > MAX_SPAN_DAYS * 86400:
        raise ValueError(
            f"the window starts {(now.timestamp() - history_start) / 86400:.1f} days ago; the ingestor refuses "
            f"samples older than 90 days, so keep --history-days plus the live part within {MAX_SPAN_DAYS} days")
    return Window(round(history_start, 3), round(live_start, 3), round(end, 3))
