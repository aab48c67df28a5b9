"""API hardening: login throttling, the audit log, security headers, CORS and the body limit."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from api_support import PASSWORD, World, build_world
from fastapi.testclient import TestClient
from pydantic import ValidationError

from liftwatch.settings import Settings
from maintenance.app import create_app
from maintenance.security import CSP
from maintenance.throttle import LoginThrottle

TOKEN = "/api/v1/auth/token"


@pytest.fixture()
def world(db_url: str) -> Iterator[World]:
    w, client = build_world(db_url)
    with client:
        yield w


def _login(w: World, username: str, password: str) -> object:
    return w.client.post(TOKEN, data={"username": username, "password": password})


# --- login throttling --------------------------------------------------------------------------

def test_five_failures_throttle_the_username_and_not_the_others(world: World) -> None:
    for _ in range(5):
        assert _login(world, "tech1", "wrong password!").status_code == 401
    r = _login(world, "tech1", "wrong password!")
    assert r.status_code == 429 and r.json()["error"] == "throttled"
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60
    # the right password does not get through while throttled
    assert _login(world, "tech1", PASSWORD).status_code == 429
    # other users are unaffected (5 failures is far from the per-address limit)
    assert _login(world, "tech2", PASSWORD).status_code == 200
    assert _login(world, "tech1b", "wrong password!").status_code == 401


def test_success_resets_the_username_counter(world: World) -> None:
    for _ in range(4):
        assert _login(world, "uu1", "wrong password!").status_code == 401
    assert _login(world, "uu1", PASSWORD).status_code == 200
    for _ in range(4):
        assert _login(world, "uu1", "wrong password!").status_code == 401
    assert _login(world, "uu1", PASSWORD).status_code == 200


def test_the_address_is_throttled_after_twenty_failures_across_usernames(world: World) -> None:
    for i in range(20):
        assert _login(world, f"nobody{i}", "guess guess").status_code == 401
    r = _login(world, "admin", PASSWORD)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_the_window_passes() -> None:
    now = [1000.0]
    t = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        assert t.attempt("u", "ip") == 0  # counted as failures: none succeeded
    assert t.attempt("u", "ip") == 15 * 60
    now[0] += 15 * 60 - 10
    assert t.attempt("u", "ip") == 10
    now[0] += 10
    assert t.attempt("u", "ip") == 0
    t.succeeded("u", "ip")
    assert len(t.users) == 0


def test_successes_do_not_count_against_the_address() -> None:
    t = LoginThrottle()
    for i in range(50):  # an office behind one NAT address, everyone logging in
        assert t.attempt(f"user{i % 7}", "192.0.2.1") == 0
        t.succeeded(f"user{i % 7}", "192.0.2.1")
    assert t.attempt("x" * 100_000, "192.0.2.1") == 0  # a huge username is keyed by its first characters


def test_counters_are_bounded() -> None:
    t = LoginThrottle(max_keys=100)
    for i in range(1000):
        assert t.attempt(f"user{i}", f"10.0.{i // 250}.{i % 250}") == 0
    assert len(t.users) == 100 and len(t.ips) == 100  # the least recently used are forgotten


def test_each_app_has_its_own_counters(db_url: str, world: World) -> None:
    for _ in range(5):
        _login(world, "mgr1", "wrong password!")
    assert _login(world, "mgr1", PASSWORD).status_code == 429
    with TestClient(create_app(Settings(database_url=db_url))) as fresh:
        assert fresh.post(TOKEN, data={"username": "mgr1", "password": PASSWORD}).status_code == 200


# --- audit log ---------------------------------------------------------------------------------

def _audit(w: World, **where: str) -> list[dict]:
    cond = " AND ".join(f"{k} = %s" for k in where) or "TRUE"
    return w.sql(f"SELECT * FROM audit_log WHERE {cond} ORDER BY id", tuple(where.values()))  # noqa: S608


def test_logins_are_audited_without_passwords(world: World) -> None:
    assert _login(world, "tech1", "not-the-password-123").status_code == 401
    assert _login(world, "ghost", "not-the-password-456").status_code == 401
    world.h("tech1")
    rows = _audit(world)
    assert [(r["actor"], r["action"], r["detail"].get("reason")) for r in rows] == [
        ("tech1", "login_failed", "wrong_password"), ("ghost", "login_failed", "unknown_user"),
        ("tech1", "login_ok", None)]
    dump = repr(world.sql("SELECT * FROM audit_log"))
    assert "not-the-password" not in dump and PASSWORD not in dump
    for _ in range(5):
        _login(world, "ghost", "x" * 10)
    assert _audit(world, action="login_throttled", actor="ghost")[0]["detail"]["retry_after_s"] >= 1


def test_a_signature_and_its_steps_are_audited(world: World) -> None:
    assert world.client.post("/api/v1/maintenance/schedule", headers=world.h("admin")).status_code == 200
    wo_id = world.order("EL-1")["work_order_id"]
    world.client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=world.h("tech1"), json={})
    world.fill(wo_id)
    status, body = world.sign(wo_id, "tech1")
    assert status == 201, body
    assert [r["actor"] for r in _audit(world, action="schedule_run")] == ["admin"]
    assert _audit(world, action="key_enrolled")[0]["actor"] == "tech1"
    (signed,) = _audit(world, action="work_order_signed")
    assert signed["actor"] == "tech1" and signed["object"] == f"work_order:{wo_id}"
    assert {k: signed["detail"][k] for k in ("work_order_id", "meaning", "ledger_seq")} == {
        "work_order_id": wo_id, "meaning": "performed", "ledger_seq": body["ledger_seq"]}
    # the admin reads it through the API; nobody else does
    r = world.client.get("/api/v1/audit", headers=world.h("admin"), params={"action": "work_order_signed"})
    assert r.status_code == 200 and [e["detail"]["work_order_id"] for e in r.json()] == [wo_id]
    assert r.headers["X-Total-Count"] == "1"
    assert world.client.get("/api/v1/audit", headers=world.h("super")).status_code == 403


def test_the_audit_api_filters_and_pages(world: World) -> None:
    for who in ("admin", "tech1", "uu1"):
        world.h(who)
    r = world.client.get("/api/v1/audit", headers=world.h("admin"), params={"actor": "tech1"})
    assert [(e["actor"], e["action"]) for e in r.json()] == [("tech1", "login_ok")]
    r = world.client.get("/api/v1/audit", headers=world.h("admin"), params={"action": "login_ok", "limit": 2})
    assert len(r.json()) == 2 and r.headers["X-Total-Count"] == "3"
    assert r.json()[0]["id"] > r.json()[1]["id"]  # newest first
    r = world.client.get("/api/v1/audit", headers=world.h("admin"), params={"since": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json() == []
    r = world.client.get("/api/v1/audit", headers=world.h("admin"), params={"since": "2020-01-01T00:00:00"})
    assert r.status_code == 422 and r.json()["field"] == "since"  # a time without offset is ambiguous


def test_registry_and_hazard_changes_are_audited(world: World) -> None:
    admin = world.h("admin")
    assert world.client.patch("/api/v1/units/EL-1", headers=admin, json={"model": "TX-9"}).status_code == 200
    r = world.client.post("/api/v1/hazards", headers=world.h("uu1"), json={"unit_id": "EL-1",
                                                                        "description": "door bangs shut"})
    hazard_id = r.json()["hazard_id"]
    r = world.client.post(f"/api/v1/hazards/{hazard_id}/assign", headers=world.h("mgr1"),
                          json={"person_id": world.person["tech1"]})
    assert r.status_code == 200
    (unit,) = _audit(world, action="unit_updated")
    assert (unit["actor"], unit["object"], unit["detail"]) == ("admin", "unit:EL-1", {"fields": {"model": "TX-9"}})
    assert [(r["actor"], r["action"]) for r in _audit(world, object=f"hazard:{hazard_id}")] == [
        ("uu1", "hazard_reported"), ("mgr1", "hazard_assigned")]


def test_the_audit_log_is_append_only(world: World) -> None:
    world.h("admin")
    with psycopg.connect(world.dsn, autocommit=True) as c:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
                c.execute(statement)
    assert [r["actor"] for r in _audit(world)] == ["admin"]


# --- values the database cannot hold are the client's mistake ------------------------------------

@pytest.mark.parametrize(("method", "url", "body"), [
    ("GET", "/api/v1/units/EL-1%00", None),
    ("GET", "/api/v1/units?site_id=S1%00", None),
    ("POST", "/api/v1/hazards", {"unit_id": "EL-1", "description": "bang\u0000 bang"}),
    ("PATCH", "/api/v1/units/EL-1", {"model": "TX\u0000"}),
    ("POST", "/api/v1/public/units/EL-1/hazards", {"description": "smoke\u0000 in the car"}),
])
def test_nul_in_text_is_a_422_not_a_500(world: World, method: str, url: str, body: dict | None) -> None:
    r = world.client.request(method, url, headers=world.h("admin"), json=body)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_value"), r.text
    r = world.client.post(TOKEN, data={"username": "admin\x00", "password": "whatever"})
    assert r.status_code == 422


def test_validation_errors_match_the_documented_schema(world: World) -> None:
    documented = world.client.app.openapi()["components"]["schemas"]["HTTPValidationError"]
    r = world.client.get("/api/v1/units", headers=world.h("admin"), params={"limit": "many"})
    assert r.status_code == 422
    assert set(documented["required"]) <= set(r.json()) <= set(documented["properties"])


# --- headers, CORS, body limit -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/api/v1/me", "/api/v1/units"])
def test_security_headers_everywhere(world: World, path: str) -> None:
    r = world.client.get(path)  # 200 for /healthz, 401 for the others: errors carry them too
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Content-Security-Policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP
    assert (r.headers.get("Cache-Control") == "no-store") == path.startswith("/api/")
    assert "Strict-Transport-Security" not in r.headers  # plain http
    assert "Access-Control-Allow-Origin" not in r.headers


def test_hsts_only_over_https(world: World) -> None:
    r = world.client.get("https://testserver/healthz")
    assert r.status_code == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")


def test_docs_have_their_own_csp(world: World) -> None:
    r = world.client.get("/docs")
    assert r.status_code == 200 and "cdn.jsdelivr.net" in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_an_unhandled_error_still_carries_the_headers(db_url: str) -> None:
    app = create_app(Settings(database_url=db_url))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500 and r.headers["X-Content-Type-Options"] == "nosniff"


def test_cors_is_closed_by_default(world: World) -> None:
    origin = {"Origin": "https://evil.example"}
    r = world.client.get("/healthz", headers=origin)
    assert "Access-Control-Allow-Origin" not in r.headers
    r = world.client.options(TOKEN, headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_for_a_configured_origin(db_url: str) -> None:
    w, client = build_world(db_url, cors_origins=["https://dash.example"])
    with client:
        r = client.get("/api/v1/units", headers={**w.h("admin"), "Origin": "https://dash.example"})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "X-Total-Count" in r.headers["Access-Control-Expose-Headers"]
        r = client.options("/api/v1/units", headers={"Origin": "https://dash.example",
                                                     "Access-Control-Request-Method": "GET",
                                                     "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        r = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in r.headers


def test_settings_take_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTWATCH_CORS_ORIGINS", "https://a.example, http://localhost:5173")
    assert Settings().cors_origins == ["https://a.example", "http://localhost:5173"]
    monkeypatch.setenv("LIFTWATCH_CORS_ORIGINS", "*")
    with pytest.raises(ValidationError, match="CORS"):
        Settings()


def test_an_oversize_body_is_refused(world: World) -> None:
    big = {"unit_id": "EL-1", "description": "x" * (300 * 1024)}
    r = world.client.post("/api/v1/hazards", headers=world.h("uu1"), json=big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # a lying Content-Length does not get past it either: the body is counted as it arrives
    r = world.client.post("/api/v1/hazards", headers={**world.h("uu1"), "Content-Type": "application/json"},
                          content=iter([b"{" + b" " * 200_000, b" " * 200_000 + b"}"]))
    assert r.status_code == 413


# --- reverse proxies ---------------------------------------------------------------------------

@pytest.mark.parametrize("trusted", [[], ["127.0.0.1"]])
def test_forwarded_address_is_believed_only_from_a_trusted_proxy(db_url: str, trusted: list[str]) -> None:
    """Behind a proxy every login comes from the proxy's address; trusting X-Forwarded-For from
    anyone else would let a client pick a fresh address per attempt and walk past the throttle."""
    import httpx
    from browser_support import LiveServer

    world, _ = build_world(db_url)
    server = LiveServer(Settings(database_url=db_url, trusted_proxies=trusted)).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            r = client.post("/api/v1/auth/token", data={"username": "tech1", "password": "wrong-password-1"},
                            headers={"X-Forwarded-For": "203.0.113.7"})
            assert r.status_code == 401
    finally:
        server.stop()
    [row] = world.sql("SELECT host(client_ip) AS ip FROM audit_log WHERE action = 'login_failed'")
    assert row["ip"] == ("203.0.113.7" if trusted else "127.0.0.1")


def test_trusting_every_peer_is_refused() -> None:
    for bad in ("*", "proxy.example", "10.0.0.0/33"):
        with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
            Settings(trusted_proxies=bad)
    assert Settings(trusted_proxies="10.0.0.1, 192.168.0.0/16").trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
