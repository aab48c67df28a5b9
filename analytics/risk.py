"""Risk grade A-D per unit, with its reasons, and an advisory maintenance interval (按需维保).

Points from age, recent faults and entrapments, the anomaly flag, maintenance compliance and
the periodic-inspection status; the grade is what a supervisor sorts by, the reasons are what
they act on. The advisory half-monthly interval lengthens for low-risk units and shortens for
high-risk ones, but never exceeds LIFTWATCH_MAX_ADVISED_INTERVAL_DAYS (15 by default, the
statutory interval, so nothing is lengthened unless an on-demand scheme allows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GRADE_FOR_POINTS = ((1, "A"), (3, "B"), (5, "C"))  # up to 1 point A, up to 3 B, up to 5 C, else D
ADVISED_DAYS = {"A": 30, "B": 20, "C": 15, "D": 10}

INPUTS_SQL = """
SELECT u.unit_id, u.installed_on, u.next_inspection_due,
       COALESCE(f.faults, 0) AS faults_30d, COALESCE(d.entrapments, 0) AS entrapments_90d,
       COALESCE(d.trips, 0) AS trips_30d,
       COALESCE(a.anomaly_flagged, false) AS anomaly_flagged,
       (SELECT array_agg(kind || ':' || severity) FROM alerts al
         WHERE al.unit_id = u.unit_id AND al.status = 'open'
           AND al.kind IN ('maintenance_overdue', 'unverified_visit', 'countersign_missing')) AS open_alerts
  FROM units u
  LEFT JOIN (SELECT unit_id, count(*) FILTER (WHERE code NOT IN ('alarm_button')) AS faults
               FROM events WHERE state = 'raised' AND time >= %(since30)s GROUP BY unit_id) f USING (unit_id)
  -- 90 days of entrapments from the daily rollups: raw events may be dropped after 31 days
  LEFT JOIN (SELECT unit_id, sum(trips) FILTER (WHERE bucket >= %(since30)s) AS trips,
                    sum(COALESCE((faults ->> 'entrapment')::int, 0)) AS entrapments
               FROM unit_daily WHERE bucket >= %(since90)s GROUP BY unit_id) d USING (unit_id)
  LEFT JOIN unit_assessments a USING (unit_id)
 WHERE u.status IN ('in_service', 'out_of_service')"""


@dataclass(frozen=True)
class Risk:
    unit_id: str
    grade: str
    points: int
    reasons: list[dict[str, Any]]
    advised_days: int


def grade(row: dict[str, Any], today: date, max_advised_days: int) -> Risk:
    reasons: list[dict[str, Any]] = []

    def add(points: int, text: str) -> None:
        reasons.append({"points": points, "text": text})

    if row["installed_on"] is not None:
        years = (today - row["installed_on"]).days / 365.25
        if years > 15:
            add(2, f"in service {years:.0f} years")
        elif years > 10:
            add(1, f"in service {years:.0f} years")
    trips = max(row["trips_30d"] or 0, 100)
    rate = row["faults_30d"] * 1000 / trips
    if rate > 5:
        add(2, f"{rate:.1f} faults per 1,000 trips in 30 days")
    elif rate > 2:
        add(1, f"{rate:.1f} faults per 1,000 trips in 30 days")
    if row["entrapments_90d"]:
        add(2, f"{row['entrapments_90d']} entrapment(s) in 90 days")
    if row["anomaly_flagged"]:
        add(2, "flagged anomaly-prone (see its anomaly alert)")
    for alert in row["open_alerts"] or []:
        kind, severity = alert.split(":")
        if kind == "maintenance_overdue":
            add(3 if severity == "critical" else 2, f"maintenance overdue ({severity})")
        elif kind == "unverified_visit":
            add(1, "a recent visit is not confirmed by telemetry")
        elif kind == "countersign_missing":
            add(1, "maintenance record not countersigned")
    due = row["next_inspection_due"]
    if due is None:
        add(1, "no periodic inspection date on record")
    elif due < today:
        add(6, f"periodic inspection expired on {due}")
    points = sum(r["points"] for r in reasons)
    g = next((g for limit, g in GRADE_FOR_POINTS if points <= limit), "D")
    reasons.sort(key=lambda r: -r["points"])
    return Risk(row["unit_id"], g, points, reasons, min(ADVISED_DAYS[g], max_advised_days))


def assess(conn: psycopg.Connection, *, now: datetime, max_advised_days: int = 15) -> dict[str, int]:
    """Grade every unit and store grade, reasons and advisory interval in unit_assessments."""
    rows = conn.execute(INPUTS_SQL, {"since30": now - timedelta(days=30), "since90": now - timedelta(days=90)}).fetchall()
    counts = {"A": 0, "B": 0, "C": 0, "D": 0}
    graded = [grade(row, now.date(), max_advised_days) for row in rows]
    for r in graded:
        counts[r.grade] += 1
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(  # one batch (pipeline), not one round trip per unit
            """INSERT INTO unit_assessments (unit_id, assessed_at, risk_grade, risk_reasons, advised_half_monthly_days)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (unit_id) DO UPDATE SET assessed_at = EXCLUDED.assessed_at,
                   risk_grade = EXCLUDED.risk_grade, risk_reasons = EXCLUDED.risk_reasons,
                   advised_half_monthly_days = EXCLUDED.advised_half_monthly_days""",
            [(r.unit_id, now, r.grade, Jsonb(r.reasons), r.advised_days) for r in graded])
    return counts
