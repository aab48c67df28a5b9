"""A simulated fleet's maintenance archive from before go-live, as a CSV for
`liftwatch maintenance import` (the columns of maintenance/legacy.py).

For each unit chosen (a seeded `fraction` of the fleet) and each plan kind, the last visit
before `go_live` that covered that kind's items, from the same 14-day plan the fleet and
technician simulators use (simulators/visits.py): a skipped visit leaves the previous date,
so the archive already holds units that are overdue on day one. About half the rows point
to a paper archive box, the others to a previous system's record id.
"""

from __future__ import annotations

import csv
from datetime import datetime
from typing import Final, TextIO

from simulators import seeds
from simulators.accounts import person_name
from simulators.clock import LOCAL_TZ
from simulators.fleet import Fleet
from simulators.visits import plan_visits

PLAN_KINDS: Final = ("half_monthly", "quarterly", "semi_annual", "annual")
COVERED_BY: Final = {k: PLAN_KINDS[i:] for i, k in enumerate(PLAN_KINDS)}  # as liftwatch.vocab (the import's rule)
LOOKBACK_S: Final = 400 * 86400.0  # long enough to find the last annual visit of every unit
COLUMNS: Final = ("unit_id", "plan_kind", "last_visit", "maintenance_company_id", "technician_name",
                  "technician_cert_no", "archive_ref", "source_system", "source_record_id", "note")


def archive_rows(fleet: Fleet, *, seed: int, go_live: float, fraction: float) -> list[dict[str, str]]:
    """The rows of the archive (one per chosen unit and plan kind that has a visit on record)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1")
    chosen = {u.unit_id for u in fleet.units if seeds.derive(seed, "legacy", u.index) < fraction * 2.0**64}
    installed = {u.unit_id: datetime.combine(u.installed_on, datetime.min.time(), LOCAL_TZ).timestamp()
                 for u in fleet.units if u.installed_on}
    done = [v for v in plan_visits(fleet, seed=seed, start=go_live - LOOKBACK_S, end=go_live)
            if v.case != "skipped" and v.unit_id in chosen and installed.get(v.unit_id, 0.0) <= v.start
            and v.end < go_live]
    last: dict[tuple[str, str], float] = {}
    for v in done:
        for kind in PLAN_KINDS:
            if v.kind in COVERED_BY[kind]:
                key = (v.unit_id, kind)
                last[key] = max(last.get(key, 0.0), v.end)
    by_id = {u.unit_id: u for u in fleet.units}
    rows = []
    for (unit_id, kind), t in sorted(last.items()):
        u = by_id[unit_id]
        company = u.site.maintenance_company_id
        day = datetime.fromtimestamp(t, LOCAL_TZ).date()
        paper = seeds.derive(seed, "legacy-paper", u.index) % 2 == 0
        rows.append({
            "unit_id": unit_id, "plan_kind": kind, "last_visit": day.isoformat(), "maintenance_company_id": company,
            "technician_name": person_name(company, "technician"),
            "technician_cert_no": f"T{seeds.derive(0, 'certificate', company) % 10**10:010d}",
            "archive_ref": f"{company} archive, box {day:%Y-%m}" if paper else "",
            "source_system": "" if paper else "previous maintenance system",
            "source_record_id": "" if paper else f"WO-{seeds.derive(seed, 'legacy-id', unit_id, kind) % 10**8:08d}",
            "note": "",
        })
    return rows


def write_csv(out: TextIO, rows: list[dict[str, str]]) -> None:
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
