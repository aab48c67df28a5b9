"""Per-unit token bucket, so one flooding device cannot crowd out the rest of the fleet.

The bucket refills with the unit's own *device* clock (the newest sample ts seen, never
moving backwards, never ahead of receipt time), not with the time messages reach the
ingestor. A backlog that drains after an outage carries timestamps spread over the outage
and passes; a device that floods carries timestamps bunched together and is cut off. A
device that forges spread-out timestamps is bounded by the stale/future ts limits instead.
Each replica keeps its own buckets, so with N replicas a unit gets up to N times the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TRACKED_UNITS = 200_000  # memory bound; idle buckets beyond it are forgotten (they were full)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    clock: float  # device time (epoch s) up to which tokens have been credited


class UnitRateLimiter:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, unit_id: str, cost: int, device_ts: float, received: float) -> bool:
        """Take `cost` tokens (samples) for a message whose newest sample is stamped `device_ts`."""
        clock = min(device_ts, received)
        b = self._buckets.get(unit_id)
        if b is None:
            if len(self._buckets) >= MAX_TRACKED_UNITS:
                self._buckets.clear()
            b = self._buckets[unit_id] = _Bucket(self.burst, clock)
        elif clock > b.clock:
            b.tokens = min(self.burst, b.tokens + (clock - b.clock) * self.rate)
            b.clock = clock
        if b.tokens >= cost:
            b.tokens -= cost
            return True
        return False
