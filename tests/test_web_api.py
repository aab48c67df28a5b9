"""The JSON the pages are built on (KPIs and their lists, map, scorecards, unit series, events
and history, public unit facts, alert priority) with the API's scope rules, and the web
layer's security: the cookie session, CSRF, the login form, headers and error pages."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
import segno
from api_support import PASSWORD, World, build_world
from browser_support import age_schedule, telemetry_history
from markupsafe import Markup
from pydantic import ValidationError

from analytics.run import PassOptions, run_pass
from liftwatch.settings import Settings
from maintenance.security import CSP
from maintenance.web import charts
from maintenance.web.i18n import MESSAGES
from maintenance.websession import SESSION_COOKIE, csrf_token

TODAY = datetime.now(UTC).date()


@pytest.fixture()
def world(db_url: str) -> Iterator[World]:
    w, client = build_world(db_url)
    with client:
        assert client.post("/api/v1/maintenance/schedule", headers=w.h("admin")).status_code == 200
        yield w


def _kpis(w: World, who: str) -> dict:
    r = w.client.get("/api/v1/kpis", headers=w.h(who))
    assert r.status_code == 200, r.text
    return {k: (v["value"], v["of"]) for k, v in r.json().items()}


def _ids(w: World, who: str, name: str, key: str = "unit_id") -> list:
    r = w.client.get(f"/api/v1/kpis/{name}", headers=w.h(who))
    assert r.status_code == 200, r.text
    return [row[key] for row in r.json()]


def test_kpis_and_the_lists_behind_them_follow_the_scope(world: World) -> None:
    a = world.h("admin")
    assert world.client.patch("/api/v1/units/EL-2", headers=a, json={"registration_code": None}).status_code == 200
    assert world.client.patch("/api/v1/units/ES-1", headers=a, json={
        "last_inspection_on": "2025-01-01", "next_inspection_due": (TODAY - timedelta(days=1)).isoformat()}
    ).status_code == 200
    telemetry_history(world.dsn, "EL-1", days=1)              # EL-1 online, the others silent
    age_schedule(world.dsn, 20)                                # half-monthly orders 5 days late
    assert world.client.post("/api/v1/public/units/EL-2/hazards", json={"description": "door rattles"}
                             ).status_code == 201
    # the escalator has its own plans (Annex D): its half-monthly order is late too
    assert _kpis(world, "super") == {"registration": (2, 3), "inspection": (2, 3), "maintenance": (0, 3),
                                     "hazards": (1, None), "online": (1, 3)}
    assert _ids(world, "super", "registration") == ["EL-2"]
    assert _ids(world, "super", "inspection") == ["ES-1"]
    late = world.client.get("/api/v1/kpis/maintenance", headers=world.h("super")).json()
    assert sorted((r["unit_id"], r["kind"], r["days_late"]) for r in late) == [
        ("EL-1", "half_monthly", 5), ("EL-2", "half_monthly", 5), ("ES-1", "half_monthly", 5)]
    assert _ids(world, "super", "hazards") == ["EL-2"]
    assert _ids(world, "super", "online") == ["EL-2", "ES-1"]
    # MC1's manager sees EL-1 and ES-1 only; MC2's technician only EL-2
    assert _kpis(world, "mgr1") == {"registration": (2, 2), "inspection": (1, 2), "maintenance": (0, 2),
                                    "hazards": (0, None), "online": (1, 2)}
    assert _ids(world, "tech2", "registration") == ["EL-2"] and _ids(world, "mgr1", "registration") == []
    assert _ids(world, "uu1", "hazards") == [] and _ids(world, "uu2", "hazards") == ["EL-2"]
    # a signed visit on time counts; one signed late does not
    wo = world.order("EL-1", "quarterly")
    world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"), json={})
    world.fill(wo["work_order_id"])
    assert world.sign(wo["work_order_id"], "tech1")[0] == 201
    assert _kpis(world, "mgr1")["maintenance"] == (0, 2)      # quarterly is not due yet: not counted
    assert world.client.get("/api/v1/kpis/nope", headers=world.h("super")).status_code == 422
    assert world.client.get("/api/v1/kpis").status_code == 401


def test_map_points_carry_grade_and_state(world: World) -> None:
    telemetry_history(world.dsn, "EL-1", days=2)
    run_pass(world.dsn, PassOptions(first_window=timedelta(days=3)))
    pts = {p["unit_id"]: p for p in world.client.get("/api/v1/map", headers=world.h("super")).json()}
    assert set(pts) == {"EL-1", "EL-2", "ES-1"}
    assert pts["EL-1"]["state"] == "ok" and pts["EL-1"]["risk_grade"] in "ABCD"
    assert pts["EL-2"]["state"] == "offline"
    assert set(p["unit_id"] for p in world.client.get("/api/v1/map", headers=world.h("tech2")).json()) == {"EL-2"}


def test_the_map_merges_dots_over_its_limit_and_escapes_names() -> None:
    few = [{"unit_id": f"U{i}", "lat": 31 + i / 1000, "lon": 121 + i / 1000, "risk_grade": "B",
            "state": "ok", "site_name": "<script>x</script>"} for i in range(5)]
    svg, binned = charts.distribution_map(few, "map", lambda p: p["site_name"])
    assert not binned and svg.count("<circle") == 5 and "<script>" not in svg and "&lt;script&gt;" in svg
    many = [{**few[0], "unit_id": f"U{i}", "lat": 31 + (i % 60) / 100, "lon": 121 + (i // 60) / 100,
             "risk_grade": "D" if i == 7 else "A", "state": "ok"} for i in range(charts.MAP_MAX_POINTS + 1)]
    svg, binned = charts.distribution_map(many, "map", lambda p: p["unit_id"])
    assert binned and 0 < svg.count("<circle") < len(many) and "g-D" in svg
    assert isinstance(svg, Markup) and charts.distribution_map([], "map", str) == (Markup(""), False)


def test_map_labels_stay_inside_the_map() -> None:
    """A dot at the right edge carries its label on its left (text-anchor end), inside the
    viewBox; a label near the top or bottom edge stays inside too."""
    pts = [{"unit_id": uid, "lat": 31.0, "lon": lon, "risk_grade": None, "state": "ok", "site_name": "s"}
           for uid, lon in (("EL-WEST", 121.0), ("EL-MIDDLE", 121.5), ("EL-EAST-LONG-ID", 122.0))]
    svg, _ = charts.distribution_map(pts, "map", lambda p: p["unit_id"])
    root = ElementTree.fromstring(str(svg))
    assert root.get("viewBox") == f"0 0 {charts.MAP_W} {charts.MAP_H}"
    dot = {a.find("text").text: float(a.find("circle").get("cx")) for a in root.iter("a")}
    label = {t.text: t for t in root.iter("text")}
    assert dot["EL-EAST-LONG-ID"] > charts.MAP_W - 30  # the dot is at the right edge
    east = label["EL-EAST-LONG-ID"]
    assert east.get("text-anchor") == "end" and float(east.get("x")) < dot["EL-EAST-LONG-ID"]
    for uid, t in label.items():
        x, width = float(t.get("x")), charts._label_width(uid)
        left, right = (x - width, x) if t.get("text-anchor") == "end" else (x, x + width)
        assert 0 <= left < right <= charts.MAP_W, (uid, left, right)
        assert charts.MAP_LABEL_PX <= float(t.get("y")) <= charts.MAP_H - 4, uid
    assert label["EL-WEST"].get("text-anchor") is None and label["EL-MIDDLE"].get("text-anchor") is None
    for y in (0.0, 3.0, charts.MAP_H - 1.0):  # a dot at the very top or bottom
        t = ElementTree.fromstring(charts._map_label("EL-1", 300.0, y))
        assert charts.MAP_LABEL_PX <= float(t.get("y")) <= charts.MAP_H - 4, (y, t.get("y"))


def test_scorecards_follow_the_scope(world: World) -> None:
    age_schedule(world.dsn, 20)

    def companies(who: str, **params) -> set[str]:
        r = world.client.get("/api/v1/scorecards", headers=world.h(who), params=params)
        assert r.status_code == 200, r.text
        return {row["company_id"] for row in r.json()}

    assert companies("super") == {"MC1", "MC2"}
    assert companies("mgr1") == companies("tech1") == companies("uu1") == {"MC1"}
    assert companies("tech2") == companies("uu2") == {"MC2"}
    assert companies("mgr1", company_id="MC2") == set()
    rows = world.client.get("/api/v1/scorecards", headers=world.h("super"), params={"company_id": "MC1"}).json()
    assert sum(r["orders_due"] for r in rows) == 2 and rows[0]["company_name"] == "Maint MC1"  # EL-1 and ES-1


def test_unit_series_events_and_history(world: World) -> None:
    telemetry_history(world.dsn, "EL-1", days=3)
    run_pass(world.dsn, PassOptions(first_window=timedelta(days=5)))
    days = world.client.get("/api/v1/units/EL-1/series", headers=world.h("mgr1"), params={"days": 30}).json()
    assert 3 <= len(days) <= 4 and all(d["samples"] > 0 for d in days)
    full = days[1]
    assert full["trips"] > 0 and 2800 < full["door_close_ms_mean"] < 3100 and "inspection" in full["mode_seconds"]
    hours = world.client.get("/api/v1/units/EL-1/series", headers=world.h("mgr1"),
                             params={"bucket": "hour", "days": 1}).json()
    assert 24 <= len(hours) <= 25
    events = world.client.get("/api/v1/units/EL-1/events", headers=world.h("mgr1")).json()
    assert events and events[0]["code"] == "door_close_fault"
    for path in ("series", "events", "history"):
        assert world.client.get(f"/api/v1/units/EL-1/{path}", headers=world.h("tech2")).status_code == 404
    wo = world.order()
    world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"), json={})
    world.fill(wo["work_order_id"])
    assert world.sign(wo["work_order_id"], "tech1")[0] == 201
    assert world.sign(wo["work_order_id"], "uu1")[0] == 201
    hist = world.client.get("/api/v1/units/EL-1/history", headers=world.h("super")).json()
    assert [(s["name"], s["role"], s["meaning"]) for s in hist[0]["signatures"]] == [
        ("张伟", "technician", "performed"), ("刘安全", "user_unit", "confirmed")]
    assert hist[0]["status"] == "closed" and hist[0]["signatures"][0]["signed_at"].endswith("Z")


def test_public_unit_facts_need_no_login_and_name_nobody(world: World) -> None:
    world.client.patch("/api/v1/companies/MC1", headers=world.h("admin"), json={"emergency_phone": "96333"})
    r = world.client.get("/api/v1/public/units/EL-1")
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["company_name"], u["emergency_phone"], u["next_inspection_due"], u["inspection_state"]) == (
        "Maint MC1", "96333", "2027-02-28", "valid")
    assert u["next_maintenance_due"] == (TODAY + timedelta(days=15)).isoformat() and u["live"] == "offline"
    assert not any(k in u for k in ("technician", "technician_name", "alerts", "user_unit_id"))
    assert world.client.get("/api/v1/public/units/NOPE").status_code == 404
    telemetry_history(world.dsn, "EL-1", days=1)
    assert world.client.get("/api/v1/public/units/EL-1").json()["live"] == "normal"


def test_priority_order_puts_overdue_maintenance_first(world: World) -> None:
    age_schedule(world.dsn, 25)
    run_pass(world.dsn, PassOptions(first_window=timedelta(days=3)))
    world.client.patch("/api/v1/units/EL-1", headers=world.h("admin"), json={
        "last_inspection_on": "2025-01-01", "next_inspection_due": (TODAY - timedelta(days=3)).isoformat()})
    run_pass(world.dsn, PassOptions(first_window=timedelta(days=3)))  # a newer critical alert
    newest = world.client.get("/api/v1/alerts", headers=world.h("super")).json()
    assert newest[0]["kind"] == "inspection_overdue"
    ranked = world.client.get("/api/v1/alerts", headers=world.h("super"), params={"order": "priority"}).json()
    kinds = [a["kind"] for a in ranked]
    assert kinds[:2] == ["maintenance_overdue", "maintenance_overdue"] and "inspection_overdue" in kinds


def test_alert_summary_counts_the_open_alerts_each_caller_sees(world: World) -> None:
    world.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source) VALUES
                 ('EL-1', 'offline', 'warning', 'silent', 'analytics'),
                 ('ES-1', 'offline', 'warning', 'silent', 'analytics'),
                 ('EL-1', 'entrapment', 'critical', 'trapped', 'ingest'),
                 ('EL-2', 'frequent_faults', 'warning', 'faults', 'analytics'),
                 ('EL-2', 'inspection_overdue', 'critical', 'expired', 'analytics')""")
    world.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source, status, resolved_at) VALUES
                 ('EL-2', 'offline', 'warning', 'was silent', 'analytics', 'resolved', now())""")
    # acknowledged alerts are still open: they count
    world.sql("UPDATE alerts SET acknowledged_by = 'x', acknowledged_at = now() WHERE unit_id = 'ES-1'")

    def summary(who: str) -> dict[tuple[str, str], int]:
        r = world.client.get("/api/v1/alerts/summary", headers=world.h(who))
        assert r.status_code == 200, r.text
        rows = r.json()
        assert all(set(c) == {"kind", "severity", "count"} and c["count"] > 0 for c in rows), rows
        return {(c["kind"], c["severity"]): c["count"] for c in rows}

    def listed(who: str) -> dict[tuple[str, str], int]:
        r = world.client.get("/api/v1/alerts", headers=world.h(who), params={"status": "open", "limit": 1000})
        assert r.status_code == 200, r.text
        return dict(Counter((a["kind"], a["severity"]) for a in r.json()))

    assert summary("super") == {("offline", "warning"): 2, ("entrapment", "critical"): 1,
                                ("frequent_faults", "warning"): 1, ("inspection_overdue", "critical"): 1}
    # MC1's manager: EL-1 and ES-1 only; MC2's technician and UU2: EL-2 only
    assert summary("mgr1") == {("offline", "warning"): 2, ("entrapment", "critical"): 1}
    assert summary("tech2") == summary("uu2") == {("frequent_faults", "warning"): 1,
                                                  ("inspection_overdue", "critical"): 1}
    for who in ("admin", "super", "mgr1", "tech1", "tech2", "uu1", "uu2"):
        assert summary(who) == listed(who), who  # the counts are the rows the list shows
    assert world.client.get("/api/v1/alerts/summary").status_code == 401
    schema = world.client.app.openapi()["paths"]["/api/v1/alerts/summary"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/AlertCount")
    # the dashboard's matrix comes from the same counts: the manager's page has no MC2 kinds
    _page_login(world, "mgr1")
    matrix = world.client.get("/dashboard").text.split('id="alert-matrix"')[1].split("</table>")[0]
    assert re.findall(r'href="/dashboard\?kind=(\w+)&amp;severity=(\w+)">(\d+)<', matrix) == [
        ("offline", "warning", "2"), ("entrapment", "critical", "1")]


# --- the session cookie, CSRF and the login form ---------------------------------------------------

def _nonce(w: World) -> str:
    r = w.client.get("/login")
    assert r.status_code == 200
    return re.search(r'name="nonce" value="([^"]+)"', r.text).group(1)


def _page_login(w: World, username: str, password: str = PASSWORD, **extra):
    return w.client.post("/login", data={"username": username, "password": password, "nonce": _nonce(w), **extra},
                         follow_redirects=False)


def test_login_page_sets_a_strict_httponly_session_and_the_api_honours_it_with_csrf(world: World) -> None:
    r = _page_login(world, "super", "wrong password!")
    assert r.status_code == 401 and "用户名或密码错误" in r.text and SESSION_COOKIE not in r.cookies
    assert world.sql("SELECT count(*) AS n FROM audit_log WHERE action = 'login_failed'")[0]["n"] == 1
    r = _page_login(world, "super", next="//evil.example/x")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on localhost; https gets Secure
    session = r.cookies[SESSION_COOKIE]
    assert world.client.get("/api/v1/me").json()["username"] == "super"
    alert = world.sql("INSERT INTO alerts (unit_id, kind, severity, reason, source) VALUES "
                      "('EL-1', 'offline', 'warning', 'silent', 'analytics') RETURNING alert_id")[0]["alert_id"]
    url = f"/api/v1/alerts/{alert}/acknowledge"
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf_token("another secret", session)}):
        r = world.client.post(url, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "csrf", r.text
    settings = world.client.app.state.settings
    r = world.client.post(url, headers={"X-CSRF-Token": csrf_token(settings.jwt_secret, session)})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "Sun Supervisor (super)"
    # a Bearer client needs no CSRF token (nothing sends its token by itself)
    world.client.cookies.clear()
    assert world.client.post("/api/v1/hazards", headers=world.h("uu1"),
                             json={"unit_id": "EL-1", "description": "light out"}).status_code == 201


def test_login_form_needs_its_own_nonce_and_throttles(world: World) -> None:
    r = world.client.post("/login", data={"username": "super", "password": PASSWORD, "nonce": "made-up"},
                          follow_redirects=False)
    assert r.status_code == 400 and SESSION_COOKIE not in r.cookies and "过期" in r.text
    r = _page_login(world, "", "")
    assert r.status_code == 422 and r.text.count('class="field-error"') == 2
    for _ in range(5):
        _page_login(world, "tech1", "not the password")
    r = _page_login(world, "tech1")
    assert r.status_code == 429 and "登录失败次数过多" in r.text


def test_pages_need_a_login_and_the_right_role(world: World) -> None:
    r = world.client.get("/dashboard?kind=offline", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/dashboard%3Fkind%3Doffline"
    assert world.client.get("/", follow_redirects=False).headers["location"] == "/login"
    _page_login(world, "tech1")
    assert world.client.get("/", follow_redirects=False).headers["location"] == "/tech"
    r = world.client.get("/dashboard")
    assert r.status_code == 403 and "text/html" in r.headers["content-type"] and "无权" in r.text
    assert world.client.get("/units/EL-2").status_code == 404  # another company's unit: not found
    r = world.client.get("/nowhere?lang=en")
    assert r.status_code == 404 and "Not found" in r.text
    assert world.client.get("/api/v1/nowhere").json()["error"] == "http_error"  # the API stays JSON


def test_pages_carry_the_strict_csp_and_no_store(world: World) -> None:
    r = world.client.get("/login")
    assert r.headers["Content-Security-Policy"] == CSP and "unsafe-inline" not in CSP
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Frame-Options"] == "DENY"
    _page_login(world, "super")
    r = world.client.get("/dashboard")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline for the CSP to refuse


def test_acknowledge_form_without_javascript_needs_the_csrf_field(world: World) -> None:
    alert = world.sql("INSERT INTO alerts (unit_id, kind, severity, reason, source) VALUES "
                      "('EL-1', 'offline', 'warning', 'silent', 'analytics') RETURNING alert_id")[0]["alert_id"]
    r = _page_login(world, "super")
    session = r.cookies[SESSION_COOKIE]
    url = f"/dashboard/alerts/{alert}/acknowledge"
    assert world.client.post(url, data={"csrf": "nope"}).status_code == 403
    assert world.sql("SELECT acknowledged_at FROM alerts")[0]["acknowledged_at"] is None
    token = csrf_token(world.client.app.state.settings.jwt_secret, session)
    r = world.client.post(url, data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and world.sql("SELECT acknowledged_by FROM alerts")[0]["acknowledged_by"]
    page = world.client.get("/dashboard?lang=en").text
    assert "by Sun Supervisor (super) at" in page
    r = world.client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and 'lw_session=""' in r.headers["set-cookie"]


def test_public_report_form_validates_and_is_rate_limited(world: World) -> None:
    r = world.client.post("/u/EL-1/report", data={"description": "x" * 1001})
    assert r.status_code == 422 and "最多 1000 个字" in r.text
    assert world.client.post("/u/NOPE/report", data={"description": "hello there"}).status_code == 404
    for i in range(5):  # five at once from one address, then the limiter says no
        r = world.client.post("/u/EL-1/report", data={"description": f"report number {i}"}, follow_redirects=False)
        assert r.status_code == 303, r.text
    r = world.client.post("/u/EL-1/report", data={"description": "one report too many"})
    assert r.status_code == 429 and "报告过于频繁" in r.text
    assert world.sql("SELECT count(*) AS n FROM hazards WHERE source = 'public'")[0]["n"] == 5
    # a receipt is shown only for a real, recent report of that unit
    first = world.sql("SELECT min(hazard_id) AS h FROM hazards")[0]["h"]
    assert 'id="report-receipt"' in world.client.get(f"/u/EL-1?reported={first}").text
    assert 'id="report-receipt"' not in world.client.get(f"/u/EL-2?reported={first}").text


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    for key, (zh, en) in MESSAGES.items():
        assert zh.strip() and en.strip(), key
        assert set(re.findall(r"{(\w+)}", zh)) == set(re.findall(r"{(\w+)}", en)), key
    from importlib import resources
    web = resources.files("maintenance.web")
    used = set()
    for f in (web / "templates").iterdir():
        used |= set(re.findall(r"""\bt\(["']([a-z0-9_]+)["']\s*[,)]""", f.read_text()))
    for f in (web / "static").iterdir():
        if f.name.endswith(".js"):
            used |= set(re.findall(r"""LW\.t\(["']([a-z0-9_]+)["']\s*[,)]""", f.read_text()))
    assert len(used) > 100 and used <= set(MESSAGES), used - set(MESSAGES)


def test_every_value_the_pages_name_by_prefix_has_a_text() -> None:
    """Templates say t("kind_" + alert.kind) and the like: each vocabulary is covered."""
    from liftwatch.contract import EVENT_CODES, MODES
    from maintenance.checklist import PLAN_KINDS
    from maintenance.routes_alerts import AlertKind
    from maintenance.workorders import RESULTS
    vocab = {
        "kind_": AlertKind.__args__, "sev_": ("info", "warning", "critical"), "wo_kind_": PLAN_KINDS,
        "wo_status_": ("open", "in_progress", "signed", "closed", "cancelled"), "result_": RESULTS,
        "ev_": EVENT_CODES, "ev_state_": ("raised", "cleared"), "hz_source_": ("defect", "staff", "public"),
        "hz_status_": ("open", "assigned", "rectified", "closed"), "role_": ("technician", "user_unit"),
        "meaning_": ("performed", "confirmed"), "state_": ("ok", "warning", "critical", "offline", "out_of_service"),
        "live_": ("entrapment", "out_of_service", "offline", "maintenance", "special", "normal"),
        "unit_status_": ("in_service", "out_of_service", "suspended", "decommissioned"),
        "key_": ("active", "revoked"), "kpi_": ("registration", "inspection", "maintenance", "hazards", "online"),
        "kpi_list_": ("registration", "inspection", "maintenance", "hazards", "online"),
        "sign_statement_": ("performed", "confirmed"), "mode_": MODES,
    }
    missing = [p + v for p, values in vocab.items() for v in values if p + v not in MESSAGES]
    assert missing == []


# error codes of the modules behind the pages' scripts that no page can meet: work-order
# creation and corrections are API-only, the record JSON is a plain link
PAGE_UNREACHABLE_ERRORS = {"no_maintenance_company", "no_checklist", "bad_correction", "not_signed"}


def test_every_api_error_a_page_can_meet_has_a_text_in_both_languages() -> None:
    """lw.js shows MESSAGES["apierr_<code>"] in place of the API's English detail: every code the
    work-order, key and alert endpoints raise has one (a new code without a text fails here)."""
    from importlib import resources
    pkg = resources.files("maintenance")
    codes = {"not_found", "invalid_request", "invalid_value", "forbidden"}  # not_found(), the handlers, deps
    for name in ("workorders.py", "routes_workorders.py", "routes_alerts.py"):
        codes |= set(re.findall(r'ApiError\(\s*\d+,\s*"(\w+)"', (pkg / name).read_text()))
    assert {"out_of_limit", "password_mismatch", "clock_skew", "key_revoked", "already_acknowledged"} <= codes
    missing = sorted(c for c in codes - PAGE_UNREACHABLE_ERRORS if f"apierr_{c}" not in MESSAGES)
    assert missing == []
    lw = (resources.files("maintenance.web") / "static" / "lw.js").read_text()
    assert "texts['apierr_' + data.error]" in lw


def test_a_missing_rate_shows_a_dash_without_a_percent_sign() -> None:
    from maintenance.web.i18n import translator
    from maintenance.web.render import environment, formatters
    row = {"company_name": "Maint MC1", "month": TODAY.replace(day=1), "orders_due": 0, "on_time_pct": None,
           "unverified_visits": 0, "unverified_pct": None, "countersign_avg_h": None, "awaiting_countersign": 0,
           "faults_72h_after_visits": 0}
    html = environment().get_template("scorecards.html").render(
        t=translator("zh"), user=None, lang="zh", html_lang="zh-CN", csrf="", csrf_field="csrf", version="test",
        staff_roles=(), lang_links=[], js_texts={}, rows=[row], **formatters(Settings()))
    cells = re.findall(r"<td>([^<]*)</td>", html.split('<table id="scorecards">')[1])
    assert cells[2:4] == ["—", "0"] and "— %" not in html, cells


def test_web_settings_are_validated() -> None:
    assert Settings(public_base_url="https://lifts.example.org/").public_base_url == "https://lifts.example.org"
    assert Settings(public_base_url="").public_base_url is None
    for bad in ({"public_base_url": "lifts.example.org"}, {"display_tz": "Mars/Olympus"}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_qr_codes_use_the_configured_public_address(db_url: str) -> None:
    w, client = build_world(db_url, public_base_url="https://lifts.example.org")
    with client:
        page = client.get("/u/EL-1/notice").text
        assert "https://lifts.example.org/u/EL-1" in page
        assert segno.make("https://lifts.example.org/u/EL-1", error="m").svg_inline(
            scale=6, title="QR EL-1", svgclass="qr", lineclass="qr-line") in page


# --- who may open which page ---------------------------------------------------------------------

PAGE_ROLES = ("anon", "admin", "super", "mgr1", "tech1", "uu1")
STAFF, ANY_LOGIN = (303, 200, 200, 200, 403, 403), (303, 200, 200, 200, 200, 200)
# fmt: off
PAGE_MATRIX: dict[str, dict[str, tuple]] = {
    # page                               target      anon admin super mgr1 tech1 uu1
    "GET /":                             {"-":       (303, 303, 303, 303, 303, 303)},
    "GET /login":                        {"-":       (200, 200, 200, 200, 200, 200)},
    "GET /dashboard":                    {"-":       STAFF},
    "GET /kpi/{name}":                   {"-":       STAFF},
    "GET /scorecards":                   {"-":       ANY_LOGIN},
    "GET /keys":                         {"-":       ANY_LOGIN},
    "GET /units/{unit_id}":              {"own":     ANY_LOGIN,
                                          "foreign": (303, 200, 200, 404, 404, 404)},
    "GET /sites/{site_id}/notices":      {"own":     ANY_LOGIN,
                                          "foreign": (303, 200, 200, 404, 404, 404)},
    "GET /tech":                         {"-":       (303, 403, 403, 403, 200, 403)},
    "GET /tech/orders/{work_order_id}":  {"own":     (303, 403, 403, 403, 200, 403),
                                          "foreign": (303, 403, 403, 403, 404, 403)},
    "GET /countersign":                  {"-":       (303, 403, 403, 403, 403, 200)},
    "GET /countersign/{work_order_id}":  {"own":     (303, 403, 403, 403, 403, 200),
                                          "foreign": (303, 403, 403, 403, 403, 404)},
    "GET /u/{unit_id}":                  {"own":     (200, 200, 200, 200, 200, 200)},
    "GET /u/{unit_id}/notice":           {"own":     (200, 200, 200, 200, 200, 200)},
    "GET /u/{unit_id}/qr.svg":           {"own":     (200, 200, 200, 200, 200, 200)},
    "GET /u/{unit_id}/qr.png":           {"own":     (200, 200, 200, 200, 200, 200)},
}
# fmt: on
# form posts, each with its own test above: login (nonce, throttle), logout and acknowledge (CSRF), report
POSTS_TESTED_ABOVE = {"POST /login", "POST /logout", "POST /dashboard/alerts/{alert_id}/acknowledge",
                      "POST /u/{unit_id}/report"}


def _page_url(pattern: str, target: str, orders: dict[str, int]) -> str:
    own = target != "foreign"
    return (pattern.replace("{name}", "online").replace("{unit_id}", "EL-1" if own else "EL-2")
            .replace("{site_id}", "S1" if own else "S2")
            .replace("{work_order_id}", str(orders["own" if own else "foreign"])))


def test_every_page_and_role(world: World) -> None:
    from test_api_authz import _endpoints
    pages = {e for e in _endpoints(world.client.app.routes)
             if not e.split(" ", 1)[1].startswith(("/api/", "/healthz", "/docs", "/redoc", "/openapi"))}
    assert pages == set(PAGE_MATRIX) | POSTS_TESTED_ABOVE
    orders = {t: world.order(u, "half_monthly")["work_order_id"] for t, u in (("own", "EL-1"), ("foreign", "EL-2"))}
    wrong = []
    for who in PAGE_ROLES:
        world.client.cookies.clear()
        if who != "anon":
            assert _page_login(world, who).status_code == 303
        for endpoint, row in PAGE_MATRIX.items():
            for target, cells in row.items():
                url = _page_url(endpoint.split(" ", 1)[1], target, orders)
                got = world.client.get(url, follow_redirects=False).status_code
                expected = cells[PAGE_ROLES.index(who)]
                if got != expected:
                    wrong.append(f"{who:>5} {url}: expected {expected}, got {got}")
    assert wrong == []
