"""What the open alerts *should* be at an instant, from the simulator's truth alone.

The oracle never reads the database: it restates each rule over what the simulator says
happened (visits and their cases, inspection-mode episodes, faults, terminal outages,
registry dates, degradations), so the analytics are scored against an independent account
of the same facts. Where the truth cannot decide to the second (a unit that went dark
14.5 minutes ago may or may not have sent its last heartbeat 15 minutes ago), the unit is
"don't care" for that kind at that instant: neither a hit nor a false alarm.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

DAY = 86400.0
COVERED_BY = {  # a visit of the value kinds covers the key plan's items (TSG T5002 Annex A accumulates)
    "half_monthly": ("half_monthly", "quarterly", "semi_annual", "annual"),
    "quarterly": ("quarterly", "semi_annual", "annual"),
    "semi_annual": ("semi_annual", "annual"),
    "annual": ("annual",),
}
SIGNED_CASES = ("genuine", "unverified", "missing_countersign")  # the technician signs these
RULE_KINDS = ("maintenance_overdue", "maintenance_due_soon", "countersign_missing", "unverified_visit",
              "inspection_overdue", "inspection_due_soon", "offline", "frequent_faults")


@dataclass(frozen=True)
class Params:
    """The statutory and configured thresholds, as the operator set them (defaults)."""

    intervals: dict[str, int]  # plan kind -> days (from the checklist data)
    due_soon_fraction: float = 0.2
    countersign_after_s: float = 72 * 3600
    unverified_lookback_s: float = 30 * DAY
    inspection_tolerance_s: float = 600
    inspection_due_soon_days: int = 30
    offline_after_s: float = 15 * 60
    frequent_fault_window_s: float = 30 * DAY
    frequent_fault_threshold: int = 10
    heartbeat_s: float = 60  # the simulator's idle reporting period: sets the width of "don't care" bands


@dataclass(frozen=True)
class VisitT:
    unit_id: str
    visit_id: str
    kind: str
    case: str
    start: float
    end: float


@dataclass
class Expected:
    positive: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dont_care: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


class Oracle:
    """Built once from the truth; `expected(t)` answers for any instant inside the window."""

    def __init__(self, *, params: Params, plan_start: float, units: dict[str, dict], planned_kinds: set[str],
                 visits: list[VisitT], losses: list[tuple[str, float, float]]) -> None:
        self.p = params
        self.plan_start = plan_start
        self.units = units
        self.planned = {u for u, d in units.items() if d["kind"] in planned_kinds}
        self.visits: dict[str, list[VisitT]] = defaultdict(list)
        for v in sorted(visits, key=lambda v: v.start):
            if v.unit_id in self.planned:
                self.visits[v.unit_id].append(v)
        self.losses: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for unit_id, a, b in losses:
            self.losses[unit_id].append((a, b))

    # --- helpers ------------------------------------------------------------------------------

    def lost_at(self, unit_id: str, t: float) -> bool:
        return any(a <= t < b for a, b in self.losses.get(unit_id, ()))

    def _delivered(self, unit_id: str, a: float, b: float, spans: list[tuple[float, float]]) -> float:
        """Seconds of `spans` inside [a, b] that were not lost to a terminal outage."""
        total = 0.0
        for s0, s1 in spans:
            lo, hi = max(a, s0), min(b, s1)
            if hi <= lo:
                continue
            total += (hi - lo) - sum(_overlap(lo, hi, l0, l1) for l0, l1 in self.losses.get(unit_id, ()))
        return total

    # --- the rules, restated over the truth -----------------------------------------------------

    def expected(self, t: float, faults: list[tuple[str, str, float]],
                 inspection: list[tuple[str, float, float]]) -> Expected:
        """`faults` (unit, code, raised_at) and `inspection` (unit, start, end) episodes so far: the
        truth grows as the simulator generates it."""
        e = Expected()
        self._maintenance(t, e)
        self._countersign(t, e)
        by_unit: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for unit_id, a, b in inspection:
            by_unit[unit_id].append((a, b))
        self._unverified(t, e, by_unit)
        self._inspection(datetime.fromtimestamp(t, UTC).date(), e)
        self._offline(t, e)
        self._frequent_faults(t, faults, e)
        return e

    def _maintenance(self, t: float, e: Expected) -> None:
        p = self.p
        for unit_id in self.planned:
            done = [v for v in self.visits.get(unit_id, ()) if v.case in SIGNED_CASES and v.end <= t]
            overdue = soon = False
            for kind, days in p.intervals.items():
                last = max((v.end for v in done if v.kind in COVERED_BY[kind]), default=None)
                since = last if last is not None else self.plan_start
                interval = days * DAY
                if t - since > interval:
                    overdue = True
                elif since + interval - t < interval * p.due_soon_fraction:
                    soon = True
            if overdue:
                e.positive["maintenance_overdue"].add(unit_id)
            if soon:
                e.positive["maintenance_due_soon"].add(unit_id)

    def _countersign(self, t: float, e: Expected) -> None:
        for unit_id, visits in self.visits.items():
            if any(v.case == "missing_countersign" and t - v.end > self.p.countersign_after_s for v in visits):
                e.positive["countersign_missing"].add(unit_id)

    def _unverified(self, t: float, e: Expected, inspection: dict[str, list[tuple[float, float]]]) -> None:
        tol = self.p.inspection_tolerance_s
        for unit_id, visits in self.visits.items():
            for v in visits:
                if v.case not in SIGNED_CASES or v.end > t or v.end < t - self.p.unverified_lookback_s:
                    continue
                shown = self._delivered(unit_id, v.start - tol, v.end + tol, inspection.get(unit_id, []))
                if shown <= 0:
                    e.positive["unverified_visit"].add(unit_id)
                elif shown < 3 * self.p.heartbeat_s:  # a sliver of inspection mode may hold no sample
                    e.dont_care["unverified_visit"].add(unit_id)

    def _inspection(self, today: date, e: Expected) -> None:
        for unit_id, u in self.units.items():
            days_left = (date.fromisoformat(u["next_inspection_due"]) - today).days
            if days_left < 0:
                e.positive["inspection_overdue"].add(unit_id)
            elif days_left <= self.p.inspection_due_soon_days:
                e.positive["inspection_due_soon"].add(unit_id)

    def _offline(self, t: float, e: Expected) -> None:
        band = 2 * self.p.heartbeat_s
        for unit_id, spans in self.losses.items():
            for a, b in spans:
                if a <= t < b:
                    silent = t - a  # at least this long; the last sample may be up to a heartbeat older
                    if silent > self.p.offline_after_s:
                        e.positive["offline"].add(unit_id)
                    elif silent > self.p.offline_after_s - band:
                        e.dont_care["offline"].add(unit_id)
                elif b <= t < b + band and b - a > self.p.offline_after_s - band:
                    e.dont_care["offline"].add(unit_id)  # back, but its first sample may not be in yet

    def _frequent_faults(self, t: float, faults: list[tuple[str, str, float]], e: Expected) -> None:
        since = t - self.p.frequent_fault_window_s
        n: Counter[tuple[str, str]] = Counter(
            (u, code) for u, code, raised in faults
            if since <= raised < t and code != "alarm_button" and not self.lost_at(u, raised))
        for (unit_id, _), count in n.items():
            if count >= self.p.frequent_fault_threshold:
                e.positive["frequent_faults"].add(unit_id)


def anomaly_labels(degradations: dict[str, tuple[float, float]], t: float) -> tuple[set[str], set[str]]:
    """(units that must be flagged, units where either answer is fine) at t.

    `degradations`: unit -> (onset, full_at). A unit counts as degraded from half severity on
    (halfway up its ramp); between onset and that, the change is too small to demand a flag.
    """
    positive, dont_care = set(), set()
    for unit_id, (onset, full_at) in degradations.items():
        if t >= onset + (full_at - onset) / 2:
            positive.add(unit_id)
        elif t > onset:
            dont_care.add(unit_id)
    return positive, dont_care
