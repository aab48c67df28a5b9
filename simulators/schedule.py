"""Things that happen to a unit at times known in advance: maintenance visits, site fire
alarms and power failures, planned outages, and the per-day random faults.

Drawn once per unit (site events once per site, so all lifts of a building return on the
same fire alarm) from their own seeded streams, so they do not shift when the unit's
trip-by-trip randomness changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators import faults, seeds
from simulators.clock import Window
from simulators.fleet import UnitSpec
from simulators.visits import Visit


@dataclass(frozen=True, slots=True)
class Scheduled:
    start: float
    end: float
    kind: str  # visit | fire_alarm | power_failure | outage | alarm_button | floor_position_lost | brake_fault
    visit: Visit | None = None


def _site_events(seed: int, site_id: str, window: Window, fault_scale: float) -> list[Scheduled]:
    r = seeds.rng(seed, "site-events", site_id)
    out = [Scheduled(t, t + r.uniform(10, 40) * 60, "fire_alarm")
           for t in seeds.poisson_times(r, window.history_start, window.end, faults.SITE_FIRE_ALARM_PER_DAY * fault_scale)]
    out += [Scheduled(t, t + r.uniform(2, 40) * 60, "power_failure")
            for t in seeds.poisson_times(r, window.history_start, window.end, faults.SITE_POWER_FAILURE_PER_DAY * fault_scale)]
    return out


def schedule_for(spec: UnitSpec, *, seed: int, window: Window, visits: list[Visit], fault_scale: float) -> list[Scheduled]:
    """Every scheduled happening of one unit, ordered by start."""
    r = seeds.rng(seed, "unit-events", spec.index)
    a, b = window.history_start, window.end
    out = [Scheduled(v.start, v.end, "visit", v) for v in visits if v.on_site]
    out += _site_events(seed, spec.site.site_id, window, fault_scale)
    out += [Scheduled(t, t + r.uniform(1, 6) * 3600, "outage")
            for t in seeds.poisson_times(r, a, b, faults.OUTAGE_PER_DAY * fault_scale)]
    out += [Scheduled(t, t + r.uniform(5, 60), "alarm_button")
            for t in seeds.poisson_times(r, a, b, faults.ALARM_BUTTON_PER_DAY * fault_scale)]
    if spec.kind in ("traction", "hydraulic", "dumbwaiter"):
        out += [Scheduled(t, t + r.uniform(60, 180), "floor_position_lost")
                for t in seeds.poisson_times(r, a, b, faults.FLOOR_LOST_PER_DAY * fault_scale)]
        out += [Scheduled(t, t + r.uniform(2, 6) * 3600, "brake_fault")
                for t in seeds.poisson_times(r, a, b, faults.BRAKE_FAULT_PER_DAY * fault_scale)]
    out.sort(key=lambda s: (s.start, s.kind))
    return out
