"""Phone pages for the people who sign: the technician's work orders, check-in, checklist and
signature; the user unit's countersignature; enrolment of the browser's signing key.

The pages render what is there; every change goes through the JSON API from the page's
script (static/workorder.js, static/sign.js, static/keys.js) with the session's CSRF token,
so the rules are the API's, tested once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from liftwatch import esign
from maintenance.deps import ConnDep, User
from maintenance.routes_registry import unit_in_scope
from maintenance.routes_workorders import get_order
from maintenance.web.render import PageUser, page_roles, render
from maintenance.workorders import RESULTS

router = APIRouter(include_in_schema=False)
Technician = Annotated[User, Depends(page_roles("technician"))]
UserUnit = Annotated[User, Depends(page_roles("user_unit"))]
SIGNER_ROLES = ("technician", "user_unit")

_MY_ORDERS = """
SELECT w.work_order_id, w.unit_id, w.kind, w.status, w.due_on, w.technician_id, w.checked_in_at,
       s.name AS site_name, s.address, w.due_on < current_date AS overdue
  FROM work_orders w JOIN units u USING (unit_id) JOIN sites s ON s.site_id = u.site_id
 WHERE {cond} AND (w.status = 'open' OR (w.status = 'in_progress' AND w.technician_id = %s))
 ORDER BY w.status = 'in_progress' DESC, w.due_on, w.work_order_id LIMIT 200"""

_TO_CONFIRM = """
SELECT w.work_order_id, w.unit_id, w.kind, w.status, w.due_on, w.signed_at, w.closed_at,
       s.name AS site_name, p.name AS technician_name
  FROM work_orders w JOIN units u USING (unit_id) JOIN sites s ON s.site_id = u.site_id
  LEFT JOIN people p ON p.person_id = w.technician_id
 WHERE {cond} AND w.status = %s ORDER BY {order} LIMIT 100"""


def _signatures(conn, work_order_id: int) -> list[dict]:
    return conn.execute(
        """SELECT meaning, payload->>'name' AS name, payload->>'role' AS role, payload->>'signed_at' AS signed_at
             FROM signatures WHERE work_order_id = %s ORDER BY signature_id""", (work_order_id,)).fetchall()


def _order_page(request: Request, user: User, conn, work_order_id: int, template: str) -> Response:
    order = get_order(work_order_id, user, conn)
    unit = unit_in_scope(conn, user, order["unit_id"])
    return render(request, template, user=user, order=order, unit=unit, results=RESULTS,
                  signatures=_signatures(conn, work_order_id),
                  done=sum(1 for it in order["items"] if it["result"]))


@router.get("/tech")
def my_orders(request: Request, user: Technician, conn: ConnDep) -> Response:
    cond, params = user.scope.unit_filter("u")
    rows = conn.execute(_MY_ORDERS.format(cond=cond), (*params, user.person_id)).fetchall()
    return render(request, "tech_orders.html", user=user, orders=rows)


@router.get("/tech/orders/{work_order_id}")
def tech_order(work_order_id: int, request: Request, user: Technician, conn: ConnDep) -> Response:
    return _order_page(request, user, conn, work_order_id, "tech_order.html")


@router.get("/countersign")
def to_confirm(request: Request, user: UserUnit, conn: ConnDep) -> Response:
    cond, params = user.scope.unit_filter("u")
    waiting = conn.execute(_TO_CONFIRM.format(cond=cond, order="w.signed_at, w.work_order_id"),
                           (*params, "signed")).fetchall()
    recent = conn.execute(_TO_CONFIRM.format(cond=cond, order="w.closed_at DESC, w.work_order_id DESC"),
                          (*params, "closed")).fetchall()[:20]
    return render(request, "countersign_list.html", user=user, waiting=waiting, recent=recent)


@router.get("/countersign/{work_order_id}")
def countersign_order(work_order_id: int, request: Request, user: UserUnit, conn: ConnDep) -> Response:
    return _order_page(request, user, conn, work_order_id, "countersign_order.html")


@router.get("/keys")
def keys_page(request: Request, user: PageUser, conn: ConnDep) -> Response:
    keys = conn.execute("SELECT key_id, label, status, enrolled_at, revoked_at, public_key FROM signing_keys "
                        "WHERE person_id = %s ORDER BY key_id DESC", (user.person_id,)).fetchall()
    for k in keys:
        k["public_key"] = esign.b64url(bytes(k["public_key"]))
    return render(request, "keys.html", user=user, keys=keys, can_sign=user.role in SIGNER_ROLES)
