"""The supervisor's pages: dashboard (KPIs, alerts, map), the list behind each KPI, a unit's
page (charts, events, signed history, risk grade), and company scorecards."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from maintenance import insights
from maintenance.deps import ConnDep, User
from maintenance.paging import Page
from maintenance.routes_alerts import AlertKind, acknowledge, list_alerts, open_alert_counts
from maintenance.routes_registry import unit_in_scope
from maintenance.routes_status import unit_status
from maintenance.web import charts
from maintenance.web.i18n import translator
from maintenance.web.render import (
    STAFF_ROLES,
    PageUser,
    check_form_csrf,
    lang_of,
    page_roles,
    render,
)

router = APIRouter(include_in_schema=False)
StaffUser = Annotated[User, Depends(page_roles(*STAFF_ROLES))]
ALERT_KINDS = AlertKind.__args__  # type: ignore[attr-defined]
SEVERITIES = ("critical", "warning", "info")
DASHBOARD_ALERTS = 200  # the table shows the 200 most urgent; the filters narrow it


def _alerts(user: User, conn, *, kind: str | None, severity: str | None, ack: str) -> tuple[list[dict], int]:
    response = Response()
    rows = list_alerts(user, conn, response, Page(DASHBOARD_ALERTS, 0), status="open", kind=kind,
                       severity=severity, unit_id=None, acknowledged={"yes": True, "no": False}.get(ack),
                       order="priority")
    return rows, int(response.headers["X-Total-Count"])


def _matrix(conn, user: User) -> dict[str, dict[str, int]]:
    """kind -> severity -> open alerts; dashboard.js rebuilds the same table from GET /api/v1/alerts/summary."""
    out: dict[str, dict[str, int]] = {}
    for r in open_alert_counts(conn, user):
        out.setdefault(r["kind"], {})[r["severity"]] = r["count"]
    return out


@router.get("/dashboard")
def dashboard(request: Request, user: StaffUser, conn: ConnDep,
              kind: Annotated[AlertKind | Literal[""], Query()] = "",
              severity: Annotated[Literal["critical", "warning", "info", ""], Query()] = "",
              ack: Annotated[Literal["", "yes", "no"], Query()] = "") -> Response:
    t = translator(lang_of(request))
    alerts, total = _alerts(user, conn, kind=kind or None, severity=severity or None, ack=ack)
    offline_s = request.app.state.settings.offline_after_s
    points = insights.map_points(conn, user.scope, offline_after_s=offline_s)

    def describe(p: dict) -> str:
        grade = p["risk_grade"] or t("grade_none")
        return f"{p['unit_id']} · {p['site_name']} · {t('unit_risk')} {grade} · {t('state_' + p['state'])}"

    svg, binned = charts.distribution_map(points, t("map"), describe)
    settings = request.app.state.settings
    return render(request, "dashboard.html", user=user, kpis=insights.kpis(conn, user.scope, offline_after_s=offline_s), alerts=alerts,
                  total=total, matrix=_matrix(conn, user), kinds=ALERT_KINDS, severities=SEVERITIES,
                  f_kind=kind, f_severity=severity, f_ack=ack, map_svg=svg, map_binned=binned,
                  map_count=len(points), refresh_ms=int(settings.web_alert_refresh_s * 1000),
                  can_ack=user.role in ("admin", "supervisor", "company_manager"))


@router.post("/dashboard/alerts/{alert_id}/acknowledge")
async def acknowledge_form(alert_id: int, request: Request, user: StaffUser, conn: ConnDep) -> Response:
    """The acknowledge button without JavaScript: a form post, then back to the dashboard."""
    check_form_csrf(request, dict(await request.form()))
    acknowledge(alert_id, request, conn, user)
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/kpi/{name}")
def kpi_page(name: Literal["registration", "inspection", "maintenance", "hazards", "online"], request: Request,
             user: StaffUser, conn: ConnDep) -> Response:
    offline_s = request.app.state.settings.offline_after_s
    return render(request, "kpi.html", user=user, name=name,
                  kpi=insights.kpis(conn, user.scope, offline_after_s=offline_s)[name],
                  rows=insights.kpi_list(conn, user.scope, name, offline_after_s=offline_s))


@router.get("/units/{unit_id}")
def unit_page(unit_id: str, request: Request, user: PageUser, conn: ConnDep) -> Response:
    t = translator(lang_of(request))
    unit = unit_in_scope(conn, user, unit_id)
    status = unit_status(unit_id, user, conn, request.app.state.settings)
    days = insights.series(conn, unit_id, bucket="day", since_days=30)
    for r in days:
        r["trips"] = r["trips"] or 0
    mode_names = {m: t("mode_" + m) for m in charts.MODE_ORDER}
    modes_svg, modes_present = charts.modes_chart(t("chart_modes"), days, mode_names)
    chart_list = [
        ("door", charts.line_chart(t("chart_door"), days, [("door_close_ms_mean", "s1"), ("door_close_ms_p95", "s2")]),
         [("door_close_ms_mean", "chart_mean", "s1"), ("door_close_ms_p95", "chart_p95", "s2")]),
        ("vibration", charts.line_chart(t("chart_vibration"), days, [("vibration_mean", "s1"), ("vibration_p95", "s2")]),
         [("vibration_mean", "chart_mean", "s1"), ("vibration_p95", "chart_p95", "s2")]),
        ("leveling", charts.line_chart(t("chart_leveling"), days, [("leveling_abs_mean", "s1"), ("leveling_abs_max", "s2")]),
         [("leveling_abs_mean", "chart_mean", "s1"), ("leveling_abs_max", "chart_max", "s2")]),
        ("trips", charts.bar_chart(t("chart_trips"), days, "trips"), [("trips", "chart_trips", "bar")]),
    ]
    companies = {r["company_id"]: r["name"] for r in conn.execute(
        "SELECT company_id, name FROM companies WHERE company_id = ANY(%s)",
        ([unit["maintenance_company_id"], unit["user_unit_id"]],)).fetchall()}
    return render(request, "unit.html", user=user, unit=unit, ustatus=status, companies=companies,
                  assessment=insights.assessment(conn, unit_id), days=days, charts=chart_list,
                  modes_svg=modes_svg, modes_present=modes_present, mode_names=mode_names,
                  events=insights.events(conn, unit_id), history=insights.maintenance_history(conn, unit_id),
                  legacy=insights.legacy_history(conn, unit_id))


@router.get("/scorecards")
def scorecards_page(request: Request, user: PageUser, conn: ConnDep) -> Response:
    return render(request, "scorecards.html", user=user, rows=insights.scorecards(conn, user.scope))
