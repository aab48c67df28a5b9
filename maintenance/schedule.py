"""Plans and scheduling: every in-service unit gets the four statutory plans of its kind's
checklist, and each plan always has its next work order waiting.

The next due date counts from the last time the plan's items were done: the last *signed*
visit that covered them (an annual visit covers the half-monthly items too, so it restarts
that clock as well) or an imported legacy record (`liftwatch maintenance import`), whichever
is later (the database view `maintenance_plan_clock` says which). A plan with neither counts
from the day it was created. Idempotent: a plan has at most one unfinished order (a unique
index enforces it), so running this twice creates nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from maintenance import checklist as checklists
from maintenance.workorders import create_order


@dataclass
class ScheduleResult:
    plans_created: int = 0
    orders_created: int = 0
    orders_redated: int = 0
    units_without_checklist: int = 0


_ENSURE_PLANS = """
INSERT INTO maintenance_plans (unit_id, kind, interval_days, checklist_id)
SELECT u.unit_id, k.kind, k.interval_days, %(checklist_id)s
  FROM units u CROSS JOIN unnest(%(kinds)s::text[], %(intervals)s::int[]) AS k(kind, interval_days)
 WHERE u.kind = %(unit_kind)s AND u.status IN ('in_service', 'out_of_service')
   AND (%(unit_id)s::text IS NULL OR u.unit_id = %(unit_id)s)
ON CONFLICT (unit_id, kind) DO NOTHING"""

_DUE = """
SELECT c.plan_id, c.unit_id, c.kind, c.interval_days, c.checklist_id, c.plan_start::date AS plan_start, c.last_done_on
  FROM maintenance_plan_clock c JOIN units u USING (unit_id)
 WHERE u.status IN ('in_service', 'out_of_service')
   AND (%(unit_id)s::text IS NULL OR c.unit_id = %(unit_id)s)
   AND NOT EXISTS (SELECT 1 FROM work_orders w WHERE w.plan_id = c.plan_id AND w.status IN ('open', 'in_progress'))
 ORDER BY c.unit_id, array_position(%(kinds)s::text[], c.kind)"""

# a waiting order whose plan clock moved since it was created takes the new date: a longer visit
# covered its items (a semi-annual visit restarts the half-monthly clock), or a legacy record was
# imported after it
_REDATE = """
UPDATE work_orders w SET due_on = c.last_done_on + c.interval_days, updated_at = now()
  FROM maintenance_plan_clock c
 WHERE w.plan_id = c.plan_id AND w.status IN ('open', 'in_progress') AND c.last_done_on IS NOT NULL
   AND (%(units)s::text[] IS NULL OR c.unit_id = ANY(%(units)s))
   AND w.due_on IS DISTINCT FROM c.last_done_on + c.interval_days"""


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
        for plan in cur.execute(_DUE, {"kinds": list(checklists.PLAN_KINDS), "unit_id": unit_id}).fetchall():
            start = plan["last_done_on"] or plan["plan_start"]
            due = start + timedelta(days=plan["interval_days"])
            create_order(conn, unit_id=plan["unit_id"], kind=plan["kind"], due_on=due,
                         plan_id=plan["plan_id"], checklist_id=plan["checklist_id"])
            result.orders_created += 1
        result.orders_redated = redate_pending(conn, None if unit_id is None else [unit_id])
        cur.execute("SELECT count(*) AS n FROM units WHERE NOT (kind = ANY(%s))",
                    (list(checklists.checklist_ids_by_unit_kind()),))
        result.units_without_checklist = cur.fetchone()["n"]
    return result


def redate_pending(conn: psycopg.Connection, unit_ids: Sequence[str] | None) -> int:
    """Move waiting orders (of these units; None: all) to the due date their plan's clock gives; the count."""
    return conn.execute(_REDATE, {"units": None if unit_ids is None else list(unit_ids)}).rowcount
