"""The alert rules. Each rule loads a small table with one SQL query (the heavy lifting stays
in the database) and turns it into AlertSpecs with a pure function, testable on plain rows.

Boundaries are strict: a half-monthly plan is overdue when more than 15 days (to the second)
have passed since the last visit, not at exactly 15 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from analytics.alerts import AlertSpec
from liftwatch.vocab import COVERED_BY, PLAN_KINDS  # noqa: F401  (re-exported for the evaluation)

PLAN_NAMES = {"half_monthly": "half-monthly", "quarterly": "quarterly", "semi_annual": "semi-annual", "annual": "annual"}


@dataclass(frozen=True)
class RuleParams:
    due_soon_fraction: float = 0.2  # due soon when less than this part of the interval is left (3 days of 15)
    countersign_after: timedelta = timedelta(hours=72)
    unverified_lookback: timedelta = timedelta(days=30)
    inspection_tolerance: timedelta = timedelta(minutes=10)  # telemetry this far around the visit counts
    inspection_due_soon_days: int = 30
    offline_after: timedelta = timedelta(minutes=15)
    rescue_breach: timedelta = timedelta(minutes=30)
    frequent_fault_window: timedelta = timedelta(days=30)
    frequent_fault_threshold: int = 10


def _iso(t: datetime | date | None) -> str | None:
    return t.isoformat() if t is not None else None


# --- maintenance overdue / due soon ------------------------------------------------------------

# the plan clock (migration 0013) takes the later of the last signed visit covering the plan's
# items and the last imported legacy record
MAINTENANCE_SQL = """
SELECT c.unit_id, c.kind, c.interval_days, c.plan_start, c.last_done_at AS last_done, c.last_done_source,
       c.last_legacy_on
  FROM maintenance_plan_clock c JOIN units u USING (unit_id)
 WHERE u.status = 'in_service'"""


def maintenance_alerts(plans: list[dict[str, Any]], now: datetime, p: RuleParams) -> list[AlertSpec]:
    by_unit: dict[str, dict[str, list[dict]]] = {}
    for plan in plans:
        since = plan["last_done"] or plan["plan_start"]
        interval = timedelta(days=plan["interval_days"])
        due = since + interval
        entry = {"plan": plan["kind"], "last_visit": _iso(plan["last_done"]), "due": _iso(due),
                 "interval_days": plan["interval_days"], "last_visit_source": plan.get("last_done_source")}
        if plan.get("last_done_source") == "legacy":
            entry["last_visit_on"] = _iso(plan["last_legacy_on"])
        if now - since > interval:
            overdue = now - due
            entry["days_overdue"] = round(overdue.total_seconds() / 86400, 2)
            by_unit.setdefault(plan["unit_id"], {}).setdefault("overdue", []).append(entry)
        elif due - now < interval * p.due_soon_fraction:
            entry["days_left"] = round((due - now).total_seconds() / 86400, 2)
            by_unit.setdefault(plan["unit_id"], {}).setdefault("soon", []).append(entry)
    out = []
    for unit_id, groups in by_unit.items():
        if "overdue" in groups:
            items = sorted(groups["overdue"], key=lambda e: -e["days_overdue"])
            worst = items[0]
            critical = worst["days_overdue"] > 7 or any(e["days_overdue"] > e["interval_days"] / 2 for e in items)
            last = (f"last visit {worst['last_visit_on']}, an imported record" if worst.get("last_visit_on")
                    else f"last visit {worst['last_visit'] or 'never'}")
            reason = (f"{PLAN_NAMES[worst['plan']]} maintenance is {worst['days_overdue']:.1f} days overdue "
                      f"({last}, due {worst['due'][:16]})")
            out.append(AlertSpec(unit_id, "maintenance_overdue", "critical" if critical else "warning", reason,
                                 {"plans": items}))
        if "soon" in groups:
            items = sorted(groups["soon"], key=lambda e: e["days_left"])
            first = items[0]
            reason = f"{PLAN_NAMES[first['plan']]} maintenance due in {first['days_left']:.1f} days ({first['due'][:10]})"
            out.append(AlertSpec(unit_id, "maintenance_due_soon", "info", reason, {"plans": items}))
    return out


# --- countersign missing -------------------------------------------------------------------

COUNTERSIGN_SQL = """
SELECT w.unit_id, w.work_order_id, w.kind, w.signed_at FROM work_orders w JOIN units u USING (unit_id)
 WHERE w.status = 'signed'"""


def countersign_alerts(orders: list[dict[str, Any]], now: datetime, p: RuleParams) -> list[AlertSpec]:
    late: dict[str, list[dict]] = {}
    for o in orders:
        waited = now - o["signed_at"]
        if waited > p.countersign_after:
            late.setdefault(o["unit_id"], []).append(
                {"work_order_id": o["work_order_id"], "kind": o["kind"], "signed_at": _iso(o["signed_at"]),
                 "hours_waiting": round(waited.total_seconds() / 3600, 1)})
    out = []
    for unit_id, items in late.items():
        worst = max(items, key=lambda e: e["hours_waiting"])
        reason = (f"work order {worst['work_order_id']} signed by the technician {worst['hours_waiting']:.0f} h ago "
                  f"is not confirmed by the user unit")
        sev = "warning" if worst["hours_waiting"] < 7 * 24 else "critical"
        out.append(AlertSpec(unit_id, "countersign_missing", sev, reason, {"orders": items}))
    return out


# --- unverified visits ---------------------------------------------------------------------------

# Visits measured now: no check yet, or signed less than SETTLE ago (late telemetry, the faults of
# the 72 h after the signature); one scan of the unit's telemetry per visit. The others are
# settled: their verdict is read from visit_checks instead of scanning the raw rows again.
UNVERIFIED_SQL = """
SELECT w.unit_id, w.work_order_id, w.kind, w.checked_in_at, w.signed_at,
       c.samples, c.inspection_samples, COALESCE(c.modes_seen, '{}') AS modes_seen,
       (SELECT count(*) FROM events e WHERE e.unit_id = w.unit_id AND e.state = 'raised'
           AND e.time > w.signed_at AND e.time <= w.signed_at + interval '72 hours') AS faults_72h,
       true AS measured
  FROM work_orders w
  LEFT JOIN visit_checks vc USING (work_order_id)
  CROSS JOIN LATERAL (
      SELECT count(*) AS samples, count(*) FILTER (WHERE t.mode = 'inspection') AS inspection_samples,
             array_agg(DISTINCT t.mode) FILTER (WHERE t.mode IS NOT NULL) AS modes_seen
        FROM telemetry t
       WHERE t.unit_id = w.unit_id AND t.time BETWEEN w.checked_in_at - %(tol)s AND w.signed_at + %(tol)s) c
 WHERE w.status IN ('signed', 'closed') AND w.signed_at >= %(since)s
   AND (vc.work_order_id IS NULL OR w.signed_at >= %(settled)s)
UNION ALL
SELECT w.unit_id, w.work_order_id, w.kind, w.checked_in_at, w.signed_at,
       vc.samples, vc.inspection_samples, vc.modes_seen, vc.faults_72h, false AS measured
  FROM work_orders w JOIN visit_checks vc USING (work_order_id)
 WHERE w.status IN ('signed', 'closed') AND w.signed_at >= %(since)s AND w.signed_at < %(settled)s"""
SETTLE = timedelta(hours=72)  # how long after its signature a visit is still measured

_VISIT_CHECK = """
INSERT INTO visit_checks (work_order_id, unit_id, samples, inspection_samples, modes_seen, verdict, faults_72h)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (work_order_id) DO UPDATE SET samples = EXCLUDED.samples, inspection_samples = EXCLUDED.inspection_samples,
    modes_seen = EXCLUDED.modes_seen, verdict = EXCLUDED.verdict, faults_72h = EXCLUDED.faults_72h, checked_at = now()"""


def verdict(visit: dict[str, Any]) -> str:
    """What the telemetry says about a signed visit's check-in..signature window."""
    if visit["inspection_samples"] > 0:
        return "verified"
    return "unverifiable" if visit["samples"] == 0 else "no_inspection_mode"


def record_visit_checks(conn: psycopg.Connection, visits: list[dict[str, Any]]) -> int:
    """Keep the verdict of each visit measured by this pass: the scorecards read it after retention
    has dropped the raw rows, and later passes instead of the raw rows (migration 0011)."""
    measured = [v for v in visits if v["measured"]]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_VISIT_CHECK, [(v["work_order_id"], v["unit_id"], v["samples"], v["inspection_samples"],
                                        list(v["modes_seen"] or []), verdict(v), v["faults_72h"]) for v in measured])
    return len(measured)


def unverified_alerts(visits: list[dict[str, Any]], p: RuleParams) -> list[AlertSpec]:
    bad: dict[str, list[dict]] = {}
    for v in visits:
        if verdict(v) == "verified":
            continue
        bad.setdefault(v["unit_id"], []).append({
            "work_order_id": v["work_order_id"], "kind": v["kind"], "verdict": verdict(v),
            "window": [_iso(v["checked_in_at"]), _iso(v["signed_at"])],
            "samples_in_window": v["samples"], "modes_seen": sorted(m for m in (v["modes_seen"] or []) if m)})
    out = []
    for unit_id, items in bad.items():
        first = items[0]
        if first["verdict"] == "unverifiable":
            reason = (f"visit of work order {first['work_order_id']} ({first['window'][0][:16]} to "
                      f"{first['window'][1][:16]}) cannot be verified: the unit sent no telemetry then")
        else:
            reason = (f"visit of work order {first['work_order_id']} ({first['window'][0][:16]} to "
                      f"{first['window'][1][:16]}) shows no inspection mode: the unit reported "
                      f"{', '.join(first['modes_seen']) or 'no mode'} in {first['samples_in_window']} samples")
        sev = "critical" if any(i["verdict"] == "no_inspection_mode" for i in items) else "warning"
        out.append(AlertSpec(unit_id, "unverified_visit", sev, reason, {"visits": items}))
    return out


# --- periodic inspection -------------------------------------------------------------------------

INSPECTION_SQL = """
SELECT unit_id, last_inspection_on, next_inspection_due FROM units
 WHERE status IN ('in_service', 'out_of_service') AND next_inspection_due IS NOT NULL"""


def inspection_alerts(units: list[dict[str, Any]], today: date, p: RuleParams) -> list[AlertSpec]:
    out = []
    for u in units:
        days_left = (u["next_inspection_due"] - today).days
        details = {"next_inspection_due": _iso(u["next_inspection_due"]), "last_inspection_on": _iso(u["last_inspection_on"])}
        if days_left < 0:
            out.append(AlertSpec(u["unit_id"], "inspection_overdue", "critical",
                                 f"periodic inspection expired {-days_left} days ago ({u['next_inspection_due']}): "
                                 "the unit must not be used until inspected", {**details, "days_overdue": -days_left}))
        elif days_left <= p.inspection_due_soon_days:
            out.append(AlertSpec(u["unit_id"], "inspection_due_soon", "info",
                                 f"periodic inspection due in {days_left} days ({u['next_inspection_due']})",
                                 {**details, "days_left": days_left}))
    return out


# --- offline -----------------------------------------------------------------------------------

OFFLINE_SQL = """
SELECT s.unit_id, s.last_time, s.last_received_at FROM unit_ingest_state s JOIN units u USING (unit_id)
 WHERE u.status = 'in_service'"""


def offline_alerts(states: list[dict[str, Any]], now: datetime, p: RuleParams) -> list[AlertSpec]:
    out = []
    for s in states:
        last = s["last_time"]
        if last is None or now - last <= p.offline_after:
            continue
        silent = now - last
        sev = "critical" if silent > timedelta(hours=24) else "warning"
        out.append(AlertSpec(s["unit_id"], "offline", sev,
                             f"no telemetry for {_duration(silent)} (last sample {last.isoformat(timespec='seconds')})",
                             {"last_sample": _iso(last), "silent_s": int(silent.total_seconds())}, event_time=last))
    return out


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


# --- entrapment -----------------------------------------------------------------------------

ENTRAPMENT_SQL = """
SELECT a.unit_id, a.event_time, a.opened_at,
       (SELECT min(e.time) FROM events e WHERE e.unit_id = a.unit_id AND e.code = 'entrapment'
           AND e.state = 'cleared' AND e.time >= a.event_time) AS cleared_at
  FROM alerts a WHERE a.status = 'open' AND a.kind = 'entrapment'"""


def entrapment_outcome(open_alerts: list[dict[str, Any]], p: RuleParams
                       ) -> tuple[list[AlertSpec], dict[tuple[str, str], dict[str, Any]]]:
    """Entrapments still open (kept) and, for cleared ones, what to record when resolving."""
    keep, resolved = [], {}
    for a in open_alerts:
        if a["cleared_at"] is None:
            keep.append(AlertSpec(a["unit_id"], "entrapment", "critical",
                                  f"passenger entrapment since {a['event_time'].isoformat(timespec='seconds')}",
                                  {"event_time": _iso(a["event_time"])}, event_time=a["event_time"]))
            continue
        duration = a["cleared_at"] - a["event_time"]
        resolved[(a["unit_id"], "entrapment")] = {
            "cleared_at": _iso(a["cleared_at"]), "duration_s": int(duration.total_seconds()),
            "rescue_time_breach": duration > p.rescue_breach,
            "rescue_limit_s": int(p.rescue_breach.total_seconds())}
    return keep, resolved


# --- frequent faults ----------------------------------------------------------------------------

FAULTS_SQL = """
SELECT unit_id, code, count(*) AS n FROM events
 WHERE state = 'raised' AND time >= %(since)s AND code NOT IN ('alarm_button')
 GROUP BY 1, 2 HAVING count(*) >= %(threshold)s"""


def frequent_fault_alerts(rows: list[dict[str, Any]], p: RuleParams) -> list[AlertSpec]:
    by_unit: dict[str, list[dict]] = {}
    for r in rows:
        by_unit.setdefault(r["unit_id"], []).append({"code": r["code"], "count": r["n"]})
    days = p.frequent_fault_window.days
    out = []
    for unit_id, codes in by_unit.items():
        codes.sort(key=lambda c: -c["count"])
        top = codes[0]
        sev = "critical" if top["count"] >= 3 * p.frequent_fault_threshold else "warning"
        out.append(AlertSpec(unit_id, "frequent_faults", sev,
                             f"{top['code']} raised {top['count']} times in {days} days "
                             f"(threshold {p.frequent_fault_threshold})", {"codes": codes, "window_days": days}))
    return out


def load(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a rule's query on a dict-row connection."""
    return conn.execute(sql, params or {}).fetchall()
