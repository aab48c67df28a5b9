"""What the supervisor's pages show, as plain queries: KPIs and the lists behind them, the map,
company scorecards, a unit's telemetry series, events and signed maintenance history.

Every function takes the caller's `Scope` and joins through `units`, so the pages and the
JSON endpoints (routes_insights.py) see exactly what the rest of the API lets the caller see.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

from maintenance.deps import Scope

KPI_NAMES = ("registration", "inspection", "maintenance", "hazards", "online")
MAINTENANCE_WINDOW_DAYS = 30  # maintenance on-time rate: orders due in the last 30 days (and any still late)
# units that count: a decommissioned unit has no registration, inspection or maintenance to keep
_LIVE = "u.status <> 'decommissioned'"


def _scoped(scope: Scope) -> tuple[str, tuple]:
    cond, params = scope.unit_filter("u")
    return f"{cond} AND {_LIVE}", params


def _rate(num: int, den: int) -> float | None:
    return round(100.0 * num / den, 1) if den else None


def kpis(conn: psycopg.Connection, scope: Scope, *, offline_after_s: float) -> dict[str, dict[str, Any]]:
    """The five dashboard tiles: numerator, denominator and rate (None when nothing counts)."""
    cond, params = _scoped(scope)
    u = conn.execute(
        f"""SELECT count(*) AS units,
                   count(*) FILTER (WHERE u.registration_code IS NOT NULL) AS registered,
                   count(*) FILTER (WHERE u.next_inspection_due >= current_date) AS inspection_valid,
                   count(*) FILTER (WHERE u.status = 'in_service') AS in_service,
                   count(*) FILTER (WHERE u.status = 'in_service'
                                      AND s.last_time > now() - make_interval(secs => %s)) AS online
              FROM units u LEFT JOIN unit_ingest_state s USING (unit_id) WHERE {cond}""",  # noqa: S608
        (offline_after_s, *params)).fetchone()
    m = conn.execute(
        f"""SELECT count(*) AS due, count(*) FILTER (WHERE w.signed_at IS NOT NULL AND w.signed_at::date <= w.due_on)
                   AS on_time
              FROM work_orders w JOIN units u USING (unit_id) WHERE {cond} AND {_MAINTENANCE_WINDOW}""",  # noqa: S608
        (*params, MAINTENANCE_WINDOW_DAYS)).fetchone()
    h = conn.execute(f"SELECT count(*) AS n FROM hazards h JOIN units u USING (unit_id) "  # noqa: S608
                     f"WHERE {cond} AND h.status <> 'closed'", params).fetchone()
    return {
        "registration": {"value": u["registered"], "of": u["units"], "rate": _rate(u["registered"], u["units"])},
        "inspection": {"value": u["inspection_valid"], "of": u["units"],
                       "rate": _rate(u["inspection_valid"], u["units"])},
        "maintenance": {"value": m["on_time"], "of": m["due"], "rate": _rate(m["on_time"], m["due"]),
                        "window_days": MAINTENANCE_WINDOW_DAYS},
        "hazards": {"value": h["n"], "of": None, "rate": None},
        "online": {"value": u["online"], "of": u["in_service"], "rate": _rate(u["online"], u["in_service"])},
    }


# orders due within the window (up to yesterday) or still unsigned and past due, whenever that was
_MAINTENANCE_WINDOW = """w.status <> 'cancelled' AND w.due_on < current_date
    AND (w.due_on >= current_date - %s OR w.status IN ('open', 'in_progress'))"""

_UNIT_COLS = """u.unit_id, u.registration_code, u.status, u.next_inspection_due, s.name AS site_name,
                s.district, u.maintenance_company_id"""
# name -> (query, ORDER BY); {cols}, {cond} and {window} are filled from the constants here and
# the caller's scope condition. The rows are what keeps the KPI from 100 % (hazards: the open ones).
_KPI_LISTS = {
    "registration": ("""SELECT {cols} FROM units u JOIN sites s USING (site_id)
                         WHERE {cond} AND u.registration_code IS NULL""", "u.unit_id"),
    "inspection": ("""SELECT {cols} FROM units u JOIN sites s USING (site_id)
                       WHERE {cond} AND (u.next_inspection_due IS NULL OR u.next_inspection_due < current_date)""",
                   "u.next_inspection_due NULLS FIRST, u.unit_id"),
    "maintenance": ("""SELECT w.work_order_id, w.unit_id, w.kind, w.due_on, w.status, w.signed_at,
                              current_date - w.due_on AS days_late, s.name AS site_name
                         FROM work_orders w JOIN units u USING (unit_id) JOIN sites s ON s.site_id = u.site_id
                        WHERE {cond} AND {window}
                          AND NOT (w.signed_at IS NOT NULL AND w.signed_at::date <= w.due_on)""",
                    "w.due_on, w.work_order_id"),
    "hazards": ("""SELECT h.hazard_id, h.unit_id, h.source, h.status, h.description, h.created_at,
                          s.name AS site_name
                     FROM hazards h JOIN units u USING (unit_id) JOIN sites s ON s.site_id = u.site_id
                    WHERE {cond} AND h.status <> 'closed'""", "h.created_at DESC, h.hazard_id DESC"),
    "online": ("""SELECT {cols}, st.last_time AS last_seen_at
                    FROM units u JOIN sites s USING (site_id) LEFT JOIN unit_ingest_state st USING (unit_id)
                   WHERE {cond} AND u.status = 'in_service'
                     AND (st.last_time IS NULL OR st.last_time <= now() - make_interval(secs => %s))""",
               "st.last_time NULLS FIRST, u.unit_id"),
}


def kpi_list(conn: psycopg.Connection, scope: Scope, name: str, *, offline_after_s: float,
             limit: int = 500) -> list[dict[str, Any]]:
    """The rows behind one KPI: what keeps it from 100 % (for hazards: the open ones)."""
    cond, params = _scoped(scope)
    sql, order = _KPI_LISTS[name]
    args: tuple = params
    if name == "maintenance":
        args = (*params, MAINTENANCE_WINDOW_DAYS)
    elif name == "online":
        args = (*params, offline_after_s)
    query = sql.format(cols=_UNIT_COLS, cond=cond, window=_MAINTENANCE_WINDOW) + " ORDER BY " + order
    return conn.execute(query + " LIMIT %s", (*args, limit)).fetchall()


# --- the map -----------------------------------------------------------------------------------

_MAP_SQL = """
SELECT u.unit_id, u.status, s.name AS site_name, s.lat, s.lon, a.risk_grade,
       st.last_time > now() - make_interval(secs => %s) AS online,
       (SELECT max(array_position(ARRAY['info', 'warning', 'critical'], al.severity))
          FROM alerts al WHERE al.unit_id = u.unit_id AND al.status = 'open') AS worst_alert
  FROM units u JOIN sites s USING (site_id)
  LEFT JOIN unit_assessments a USING (unit_id) LEFT JOIN unit_ingest_state st USING (unit_id)
 WHERE {cond} AND s.lat IS NOT NULL AND s.lon IS NOT NULL
 ORDER BY u.unit_id LIMIT %s"""


def map_points(conn: psycopg.Connection, scope: Scope, *, offline_after_s: float,
               limit: int = 20_000) -> list[dict[str, Any]]:
    """Units with a position, their risk grade and a one-word state for colouring."""
    cond, params = _scoped(scope)
    rows = conn.execute(_MAP_SQL.format(cond=cond), (offline_after_s, *params, limit)).fetchall()
    for r in rows:
        r["state"] = unit_state(r["status"], r["online"], r["worst_alert"])
    return rows


def unit_state(status: str, online: bool | None, worst_alert: int | None) -> str:
    """out_of_service, critical, offline, warning or ok: the colour of a unit on the map."""
    if status != "in_service":
        return "out_of_service"
    if worst_alert == 3:
        return "critical"
    if not online:
        return "offline"
    return "warning" if worst_alert == 2 else "ok"


# --- scorecards --------------------------------------------------------------------------------

def scorecards(conn: psycopg.Connection, scope: Scope, *, company_id: str | None = None,
               since: date | None = None) -> list[dict[str, Any]]:
    """company_monthly_scorecards rows the caller may see: all for admin and supervisor, their
    own company for its managers and technicians, the companies that maintain their units for a
    user unit."""
    if scope.role in ("admin", "supervisor"):
        cond, params = "TRUE", ()
    elif scope.role in ("company_manager", "technician"):
        cond, params = "sc.company_id = %s", (scope.company_id,)
    else:
        ucond, params = scope.unit_filter("u")
        cond = f"sc.company_id IN (SELECT u.maintenance_company_id FROM units u WHERE {ucond})"  # noqa: S608
    since = since or (date.today().replace(day=1) - timedelta(days=335)).replace(day=1)  # 12 months
    return conn.execute(
        f"""SELECT sc.*, c.name AS company_name FROM company_monthly_scorecards sc
              JOIN companies c USING (company_id)
             WHERE {cond} AND sc.month >= %s AND (%s::text IS NULL OR sc.company_id = %s)
             ORDER BY sc.month DESC, sc.company_id""",  # noqa: S608
        (*params, since, company_id, company_id)).fetchall()


# --- one unit ----------------------------------------------------------------------------------

SERIES_COLUMNS = ("bucket", "samples", "trips", "door_cycles", "door_close_ms_mean", "door_close_ms_p95",
                  "leveling_abs_mean", "leveling_abs_max", "vibration_mean", "vibration_p95", "motor_temp_max",
                  "mode_seconds", "faults")
_SERIES = {"day": "unit_daily", "hour": "unit_hourly"}


def series(conn: psycopg.Connection, unit_id: str, *, bucket: str, since_days: int) -> list[dict[str, Any]]:
    """The unit's rollup rows (one per day or hour) of the last `since_days` days, oldest first.
    The caller has checked the unit is in scope."""
    table = _SERIES[bucket]
    return conn.execute(
        f"SELECT {', '.join(SERIES_COLUMNS)} FROM {table} WHERE unit_id = %s "  # noqa: S608
        "AND bucket >= now() - make_interval(days => %s) ORDER BY bucket", (unit_id, since_days)).fetchall()


def events(conn: psycopg.Connection, unit_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    return conn.execute("SELECT time, code, state, source_code FROM events WHERE unit_id = %s "
                        "ORDER BY time DESC LIMIT %s", (unit_id, limit)).fetchall()


def assessment(conn: psycopg.Connection, unit_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM unit_assessments WHERE unit_id = %s", (unit_id,)).fetchone()


def maintenance_history(conn: psycopg.Connection, unit_id: str, *, limit: int = 30) -> list[dict[str, Any]]:
    """The unit's signed and closed orders, newest first, each with its signature manifestations
    (printed name, role, meaning and time, exactly as signed)."""
    orders = conn.execute(
        """SELECT w.work_order_id, w.kind, w.due_on, w.status, w.checked_in_at, w.signed_at, w.closed_at,
                  w.record_sha256, w.corrects_id
             FROM work_orders w WHERE w.unit_id = %s AND w.status IN ('signed', 'closed')
            ORDER BY w.signed_at DESC, w.work_order_id DESC LIMIT %s""", (unit_id, limit)).fetchall()
    if not orders:
        return []
    sigs = conn.execute(
        """SELECT work_order_id, meaning, payload->>'name' AS name, payload->>'role' AS role,
                  payload->>'signed_at' AS signed_at, key_id
             FROM signatures WHERE work_order_id = ANY(%s) ORDER BY signature_id""",
        ([o["work_order_id"] for o in orders],)).fetchall()
    by_order: dict[int, list[dict[str, Any]]] = {}
    for s in sigs:
        by_order.setdefault(s["work_order_id"], []).append(s)
    for o in orders:
        o["signatures"] = by_order.get(o["work_order_id"], [])
    return orders


def legacy_history(conn: psycopg.Connection, unit_id: str) -> list[dict[str, Any]]:
    """The unit's imported legacy records (not e-signed; `liftwatch maintenance import`), newest first."""
    return conn.execute(
        """SELECT kind, visit_on, company_id, technician_name, technician_cert_no, archive_ref, source_system,
                  source_record_id, note, imported_at
             FROM legacy_maintenance WHERE unit_id = %s ORDER BY visit_on DESC, kind""", (unit_id,)).fetchall()


# --- the public page -----------------------------------------------------------------------------

_PUBLIC_SQL = """
SELECT u.unit_id, u.registration_code, u.kind, u.status, u.next_inspection_due, u.last_inspection_on,
       s.name AS site_name, s.address, s.district, s.city,
       mc.name AS company_name, COALESCE(mc.emergency_phone, mc.phone) AS emergency_phone,
       (SELECT max(w.signed_at) FROM work_orders w
         WHERE w.unit_id = u.unit_id AND w.status IN ('signed', 'closed')) AS last_maintenance_at,
       (SELECT max(g.visit_on) FROM legacy_maintenance g WHERE g.unit_id = u.unit_id) AS last_legacy_on,
       (SELECT min(w.due_on) FROM work_orders w
         WHERE w.unit_id = u.unit_id AND w.status IN ('open', 'in_progress')) AS next_maintenance_due,
       st.last_time AS last_seen_at, COALESCE(st.last_time > now() - make_interval(secs => %s), false) AS online,
       (SELECT t.mode FROM telemetry t WHERE t.unit_id = u.unit_id ORDER BY t.time DESC LIMIT 1) AS mode,
       EXISTS (SELECT 1 FROM alerts al WHERE al.unit_id = u.unit_id AND al.status = 'open'
                  AND al.kind = 'entrapment') AS entrapment
  FROM units u JOIN sites s USING (site_id)
  LEFT JOIN companies mc ON mc.company_id = u.maintenance_company_id
  LEFT JOIN unit_ingest_state st USING (unit_id)
 WHERE u.unit_id = %s"""


def public_unit(conn: psycopg.Connection, unit_id: str, *, offline_after_s: float) -> dict[str, Any] | None:
    """What the notice in the car shows anyone: no people, no alert reasons, no telemetry detail."""
    row = conn.execute(_PUBLIC_SQL, (offline_after_s, unit_id)).fetchone()
    if row is None:
        return None
    row["live"] = live_state(row)
    today = conn.execute("SELECT current_date AS d").fetchone()["d"]
    due = row["next_inspection_due"]
    row["inspection_state"] = ("unknown" if due is None else "overdue" if due < today else "valid")
    row["maintenance_overdue"] = bool(row["next_maintenance_due"] and row["next_maintenance_due"] < today)
    signed = row["last_maintenance_at"]
    # an imported record is shown (marked as imported) only while no signed visit is newer
    row["last_is_legacy"] = bool(row["last_legacy_on"] and (signed is None or row["last_legacy_on"] > signed.date()))
    return row


def live_state(row: dict[str, Any]) -> str:
    """One word for a passenger: entrapment, out_of_service, offline, maintenance, special or normal."""
    if row["entrapment"]:
        return "entrapment"
    if row["status"] != "in_service":
        return "out_of_service"
    if not row["online"]:
        return "offline"
    if row["mode"] == "inspection":
        return "maintenance"
    if row["mode"] not in (None, "normal", "unknown"):
        return "special"
    return "normal"
