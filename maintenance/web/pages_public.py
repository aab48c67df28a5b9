"""The passenger's page per unit (/u/<unit>, no login), its QR code, the printable notice for
the car, and a sheet of notices for a whole site."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Query, Request
from markupsafe import Markup
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from maintenance.deps import ConnDep
from maintenance.errors import ApiError, not_found
from maintenance.insights import public_unit
from maintenance.routes_hazards import (
    PublicHazardCreate,
    PublicLimiter,
    public_limiter,
    public_report,
)
from maintenance.routes_registry import site_in_scope
from maintenance.web.render import PageUser, public_base, render

router = APIRouter(include_in_schema=False)
QR_ERROR = "m"          # 15 % of the code may be scratched or dirty and it still reads
QR_PNG_SCALE = 10       # ~ 330 px for a typical URL: crisp when printed 3-4 cm wide
RECEIPT_SHOWN_S = 3600  # /u/X?reported=N confirms a report only in the hour after it was made
_FIELD_KEYS = {"description": {"string_too_short": "report_too_short", "string_too_long": "report_too_long"}}


def public_url(request: Request, unit_id: str) -> str:
    return f"{public_base(request)}/u/{unit_id}"


def qr_svg(request: Request, unit_id: str, scale: int = 6) -> Markup:
    return Markup(segno.make(public_url(request, unit_id), error=QR_ERROR).svg_inline(
        scale=scale, title=f"QR {unit_id}", svgclass="qr", lineclass="qr-line"))


def _unit_or_404(request: Request, conn, unit_id: str) -> dict:
    unit = public_unit(conn, unit_id, offline_after_s=request.app.state.settings.offline_after_s)
    if unit is None:
        raise not_found(f"unit {unit_id}")
    return unit


def _page(request: Request, conn, unit: dict, *, status: int = 200, receipt: int | None = None,
          errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
          form_error: str = "") -> Response:
    return render(request, "public.html", status=status, unit=unit, receipt=receipt, errors=errors or {},
                  form=form or {"description": "", "contact": ""}, form_error=form_error,
                  qr=qr_svg(request, unit["unit_id"], scale=4), url=public_url(request, unit["unit_id"]),
                  refresh_ms=int(request.app.state.settings.web_alert_refresh_s * 1000))


@router.get("/u/{unit_id}")
def public_page(unit_id: str, request: Request, conn: ConnDep,
                reported: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    unit = _unit_or_404(request, conn, unit_id)
    receipt = None
    if reported is not None and conn.execute(
            "SELECT 1 FROM hazards WHERE hazard_id = %s AND unit_id = %s AND source = 'public' "
            "AND created_at > now() - make_interval(secs => %s)", (reported, unit_id, RECEIPT_SHOWN_S)).fetchone():
        receipt = reported
    return _page(request, conn, unit, receipt=receipt)


@router.post("/u/{unit_id}/report")
async def public_report_form(unit_id: str, request: Request, conn: ConnDep,
                             limiter: Annotated[PublicLimiter, Depends(public_limiter)]) -> Response:
    """The problem report without JavaScript: the JSON API's validation, limiter and insert."""
    unit = _unit_or_404(request, conn, unit_id)
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in ("description", "contact")}
    try:
        body = PublicHazardCreate(description=form["description"], contact=form["contact"].strip() or None)
    except ValidationError as exc:
        errors = {}
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "description"
            key = _FIELD_KEYS.get(field, {}).get(e["type"], "report_too_long")
            errors.setdefault(field, key)
        return _page(request, conn, unit, status=422, errors=errors, form=form)
    try:
        receipt = public_report(unit_id, body, request, conn, limiter)
    except ApiError as exc:
        if exc.status != 429:
            raise
        return _page(request, conn, unit, status=429, form=form, form_error="report_rate_limited")
    return RedirectResponse(f"/u/{unit_id}?reported={receipt['hazard_id']}#report", status_code=303)


@router.get("/u/{unit_id}/qr.svg")
def qr_svg_file(unit_id: str, request: Request, conn: ConnDep) -> Response:
    _unit_or_404(request, conn, unit_id)
    buf = io.BytesIO()
    segno.make(public_url(request, unit_id), error=QR_ERROR).save(buf, kind="svg", scale=8, border=4)
    return Response(buf.getvalue(), media_type="image/svg+xml")


@router.get("/u/{unit_id}/qr.png")
def qr_png_file(unit_id: str, request: Request, conn: ConnDep) -> Response:
    _unit_or_404(request, conn, unit_id)
    buf = io.BytesIO()
    segno.make(public_url(request, unit_id), error=QR_ERROR).save(buf, kind="png", scale=QR_PNG_SCALE, border=4)
    return Response(buf.getvalue(), media_type="image/png")


@router.get("/u/{unit_id}/notice")
def notice(unit_id: str, request: Request, conn: ConnDep) -> Response:
    unit = _unit_or_404(request, conn, unit_id)
    return render(request, "notices.html", title=unit["unit_id"], site=None,
                  notices=[(unit, qr_svg(request, unit_id), public_url(request, unit_id))])


@router.get("/sites/{site_id}/notices")
def site_notices(site_id: str, request: Request, user: PageUser, conn: ConnDep) -> Response:
    site = site_in_scope(conn, user, site_id)
    cond, params = user.scope.unit_filter("u")
    ids = [r["unit_id"] for r in conn.execute(
        f"SELECT u.unit_id FROM units u WHERE u.site_id = %s AND u.status <> 'decommissioned' AND {cond} "  # noqa: S608
        "ORDER BY u.unit_id", (site_id, *params)).fetchall()]
    offline_s = request.app.state.settings.offline_after_s
    notices = [(public_unit(conn, i, offline_after_s=offline_s), qr_svg(request, i), public_url(request, i)) for i in ids]
    return render(request, "notices.html", user=user, title=site["name"], site=site, notices=notices)
