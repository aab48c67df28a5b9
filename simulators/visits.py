"""Planned maintenance visits (TSG T5002-2017) and the cases the analytics must catch.

Each unit is visited on a 14-day cycle anchored at a fixed epoch plus a per-unit phase, so
the plan is the same whichever window asks for it: `simulate technicians` and `simulate
fleet` agree without sharing a file (a file from `technicians --plan-only --out` can still
be given to `fleet --visits` and `technicians --visits`). Visits fall on the due day, check-in
09:00-16:00 local, so two genuine visits are signed at most 14 days + 7 h + the longest visit
(4 h) apart: inside the statutory 15 days to the second, which is how the analytics count. A
skipped visit makes a 28-day hole. (Allowing the day before too, as an earlier plan did, put
11 % of consecutive genuine visits up to 15 d 8 h apart: overdue by the rule, wrongly
labelled genuine.)

Cases: genuine (inspection mode on site, signed, countersigned), skipped (nothing happens:
overdue), unverified (a record would be signed but the unit never enters inspection mode),
missing_countersign (genuine on site, the user unit never countersigns).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from simulators import seeds
from simulators.clock import LOCAL_TZ, iso
from simulators.fleet import Fleet

CYCLE_S: Final = 14 * 86400.0
EPOCH: Final = datetime(2020, 1, 6, tzinfo=LOCAL_TZ).timestamp()  # a Monday, local midnight
CASES: Final = ("genuine", "skipped", "unverified", "missing_countersign")
CASE_WEIGHTS: Final = (0.85, 0.05, 0.05, 0.05)
ON_SITE_CASES: Final = frozenset({"genuine", "missing_countersign"})
MINUTES: Final = {"half_monthly": (40, 70), "quarterly": (60, 100), "semi_annual": (90, 150), "annual": (150, 240)}
PLAN_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Visit:
    visit_id: str
    unit_id: str
    kind: str  # half_monthly | quarterly | semi_annual | annual
    case: str  # genuine | skipped | unverified | missing_countersign
    due_on: str  # YYYY-MM-DD, local
    start: float  # epoch s: check-in (or when it would have been)
    end: float
    maintenance_company_id: str
    technician: str
    countersigner: str

    @property
    def on_site(self) -> bool:
        """Whether the unit goes into inspection mode for this visit."""
        return self.case in ON_SITE_CASES

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = iso(self.start), iso(self.end)
        d["inspection_mode_on_site"] = self.on_site
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Visit:
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        fields["start"] = datetime.fromisoformat(d["start"]).timestamp()
        fields["end"] = datetime.fromisoformat(d["end"]).timestamp()
        if fields["case"] not in CASES:
            raise ValueError(f"visit {d['visit_id']}: unknown case {fields['case']!r}")
        return cls(**fields)


def _kind(cycle: int) -> str:
    if cycle % 24 == 0:
        return "annual"
    if cycle % 12 == 0:
        return "semi_annual"
    if cycle % 6 == 0:
        return "quarterly"
    return "half_monthly"


def plan_visits(fleet: Fleet, *, seed: int, start: float, end: float) -> list[Visit]:
    """Every visit whose check-in falls in [start, end), ordered by time."""
    out: list[Visit] = []
    for u in fleet.units:
        r = seeds.rng(seed, "visit-phase", u.index)
        phase = r.uniform(0, CYCLE_S)
        base = r.randrange(24)
        technician = f"{u.site.maintenance_company_id}-T{r.randint(1, 6)}"
        first = math.floor((start - EPOCH - phase) / CYCLE_S) - 1
        i = first
        while True:
            due = EPOCH + phase + i * CYCLE_S
            due_day = due - (due - EPOCH) % 86400  # local midnight of the due day
            if due_day - 86400 >= end:
                break
            v = seeds.rng(seed, "visit", u.index, i)
            kind = _kind(base + i)
            t0 = round(due_day + v.uniform(9.0, 16.0) * 3600, 3)
            t1 = round(t0 + v.uniform(*MINUTES[kind]) * 60, 3)
            case = v.choices(CASES, weights=CASE_WEIGHTS)[0]
            if start <= t0 < end:
                out.append(Visit(
                    visit_id=f"{u.unit_id}-V{i}", unit_id=u.unit_id, kind=kind, case=case,
                    due_on=datetime.fromtimestamp(due_day, LOCAL_TZ).date().isoformat(),
                    start=t0, end=t1, maintenance_company_id=u.site.maintenance_company_id,
                    technician=technician, countersigner=f"{u.site.user_unit_id}-SM1"))
            i += 1
    out.sort(key=lambda x: (x.start, x.unit_id))
    return out


NOW_KIND_ORDER: Final = ("traction", "escalator", "hydraulic", "dumbwaiter", "moving_walk")


def visits_now(fleet: Fleet, *, seed: int, cases: list[str], start: float, length_s: float,
               stagger_s: float = 5.0) -> list[Visit]:
    """Half-monthly visits starting at `start` (one unit each, kinds in turn), for a live demo:
    the fleet simulator puts the units into inspection mode for them, the technicians drive them."""
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}: use {', '.join(CASES)}")
    order = sorted(fleet.units, key=lambda u: seeds.derive(seed, "now", u.index))
    used: set[str] = set()
    out = []
    for i, case in enumerate(cases):
        want = NOW_KIND_ORDER[i % len(NOW_KIND_ORDER)]
        unit = next((u for u in order if u.kind == want and u.unit_id not in used),
                    next((u for u in order if u.unit_id not in used), None))
        if unit is None:
            raise ValueError(f"{len(cases)} visits need {len(cases)} units; the fleet has {len(fleet.units)}")
        used.add(unit.unit_id)
        t0 = round(start + i * stagger_s, 3)
        out.append(Visit(visit_id=f"{unit.unit_id}-NOW{i + 1}", unit_id=unit.unit_id, kind="half_monthly", case=case,
                         due_on=datetime.fromtimestamp(t0, LOCAL_TZ).date().isoformat(), start=t0,
                         end=round(t0 + length_s, 3), maintenance_company_id=unit.site.maintenance_company_id,
                         technician=f"{unit.site.maintenance_company_id}-T1",
                         countersigner=f"{unit.site.user_unit_id}-SM1"))
    return out


def write_plan(path: Path, visits: list[Visit], *, seed: int, prefix: str, units: int, start: float,
               end: float) -> None:
    doc = {
        "version": PLAN_VERSION, "seed": seed, "prefix": prefix, "units": units,
        "window": {"start": iso(start), "end": iso(end)},
        "note": "a plan: `liftwatch simulate technicians --visits FILE` drives it through the API, "
                "`liftwatch simulate fleet --visits FILE` puts units into inspection mode for it",
        "counts": {c: sum(v.case == c for v in visits) for c in CASES},
        "visits": [v.to_json() for v in visits],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def read_plan(path: Path) -> list[Visit]:
    doc = orjson.loads(path.read_bytes())
    if doc.get("version") != PLAN_VERSION:
        raise ValueError(f"{path}: plan version {doc.get('version')!r}, expected {PLAN_VERSION}")
    return [Visit.from_json(d) for d in doc["visits"]]
