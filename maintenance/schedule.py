"""Plans and scheduling: every unit with a checklist gets the four statutory plans, and each
plan always has its next work order waiting.

The next due date counts from the last *signed* visit that covered the plan's items (an
annual visit covers the half-monthly items too, so it restarts that clock as well); a unit
without any signed visit counts from the day its plan was created. Idempotent: a plan has
at most one unfinished order (a unique index enforces it), so running this twice creates
nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from maintenance import checklist as checklists
from maintenance.workorders import create_order

# kinds whose visit also covers the items of the key kind (TSG T5002 Annex A accumulates)
COVERED_BY = {
    "half_monthly": ("half_monthly", "quarterly", "semi_annual", "annual"),
    "quarterly": ("quarterly", "semi_annual", "annual"),
    "semi_annual": ("semi_annual", "annual"),
    "annual": ("annual",),
}


@dataclass
class ScheduleResult:
    plans_created: int = 0
    orders_created: int = 0
    units_without_checklist: int = 0


_ENSURE_PLANS = """
INSERT INTO maintenance_plans (unit_id, kind, interval_days, checklist_id)
SELECT u.unit_id, k.kind, k.interval_days, %(checklist_id)s
  FROM units u CROSS JOIN unnest(%(kinds)s::text[], %(intervals)s::int[]) AS k(kind, interval_days)
 WHERE u.kind = %(unit_kind)s AND u.status IN ('in_service', 'out_of_service')
   AND (%(unit_id)s::text IS NULL OR u.unit_id = %(unit_id)s)
ON CONFLICT (unit_id, kind) DO NOTHING"""

_DUE = """
SELECT p.plan_id, p.unit_id, p.kind, p.interval_days, p.checklist_id, p.created_at::date AS plan_start,
       (SELECT max(w.signed_at)::date FROM work_orders w
         WHERE w.unit_id = p.unit_id AND w.kind = ANY(%(covered)s) AND w.status IN ('signed', 'closed')) AS last_done
  FROM maintenance_plans p JOIN units u USING (unit_id)
 WHERE p.active AND p.kind = %(kind)s AND u.status IN ('in_service', 'out_of_service')
   AND (%(unit_id)s::text IS NULL OR p.unit_id = %(unit_id)s)
   AND NOT EXISTS (SELECT 1 FROM work_orders w WHERE w.plan_id = p.plan_id AND w.status IN ('open', 'in_progress'))"""


def schedule(conn: psycopg.Connection, *, unit_id: str | None = None) -> ScheduleResult:
    """Create missing plans and the next work order of every plan that has none waiting.

    `conn` must use dict rows (as every maintenance function does)."""
    result = ScheduleResult()
    with conn.transaction(), conn.cursor() as cur:
        for unit_kind, checklist_id in checklists.checklist_ids_by_unit_kind().items():
            cl = checklists.get(checklist_id)
            kinds = list(checklists.PLAN_KINDS)
            cur.execute(_ENSURE_PLANS, {"checklist_id": checklist_id, "kinds": kinds,
                                        "intervals": [cl.interval_days[k] for k in kinds],
                                        "unit_kind": unit_kind, "unit_id": unit_id})
            result.plans_created += cur.rowcount
        for kind in checklists.PLAN_KINDS:
            for plan in cur.execute(_DUE, {"kind": kind, "covered": list(COVERED_BY[kind]), "unit_id": unit_id}).fetchall():
                start = plan["last_done"] or plan["plan_start"]
                due = start + timedelta(days=plan["interval_days"])
                create_order(conn, unit_id=plan["unit_id"], kind=kind, due_on=due,
                             plan_id=plan["plan_id"], checklist_id=plan["checklist_id"])
                result.orders_created += 1
        cur.execute("SELECT count(*) AS n FROM units WHERE NOT (kind = ANY(%s))",
                    (list(checklists.checklist_ids_by_unit_kind()),))
        result.units_without_checklist = cur.fetchone()["n"]
    return result
