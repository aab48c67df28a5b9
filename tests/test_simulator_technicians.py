"""`liftwatch simulate technicians` end to end: a real `liftwatch api` process on a free port,
a real database, accounts bootstrapped through `liftwatch users add` and POST /api/v1/keys,
then a plan with every case driven over HTTP and checked in SQL and with `ledger verify`.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from simulators.cli import technicians_cmd
from simulators.clock import LOCAL_TZ
from simulators.fleet import build_fleet
from simulators.registration import register
from simulators.visits import Visit, write_plan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def api_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """`liftwatch api` in its own process, as the simulator would meet it."""
    port = _free_port()
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "liftwatch", "api", "--port", str(port)],
                            env={**os.environ, "LIFTWATCH_DATABASE_URL": db_url}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, "the API did not answer /healthz within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _visit(u, case: str, kind: str, start: float, minutes: float, n: int) -> Visit:
    return Visit(visit_id=f"{u.unit_id}-V{n}", unit_id=u.unit_id, kind=kind, case=case,
                 due_on=datetime.fromtimestamp(start, LOCAL_TZ).date().isoformat(), start=round(start, 3),
                 end=round(start + minutes * 60, 3), maintenance_company_id=u.site.maintenance_company_id,
                 technician=f"{u.site.maintenance_company_id}-T1", countersigner=f"{u.site.user_unit_id}-SM1")


def _sql(dsn: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        return c.execute(query, params).fetchall()


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_technicians_drive_every_case_through_the_api(db_url: str, api_url: str, tmp_path: Path) -> None:
    prefix = f"TT{uuid.uuid4().hex[:5]}"
    now = datetime.now(UTC)
    fleet = build_fleet(seed=3, n_units=40, prefix=prefix, today=now.astimezone(LOCAL_TZ).date())
    with psycopg.connect(db_url, autocommit=True) as c:
        register(c, fleet)
    spec = {u.unit_id: u for u in fleet.units}
    # units of one maintenance company and one user unit: two accounts to bootstrap (each
    # `liftwatch users add` is a Python process, the slow part of a bootstrap)
    by_pair: dict[tuple[str, str], list] = defaultdict(list)
    for u in fleet.units:
        by_pair[(u.site.maintenance_company_id, u.site.user_unit_id)].append(u)
    group = max(by_pair.values(), key=len)
    traction = [u for u in group if u.kind == "traction"]
    escalator = next(u for u in group if u.kind == "escalator")
    assert len(traction) >= 6
    t0 = now.timestamp() - 3 * 3600  # overdue when the run starts: driven at once, in this order
    g1, g2, unv, mc, sk = traction[:5]
    past = [_visit(g1, "genuine", "half_monthly", t0, 50, 1), _visit(g2, "genuine", "quarterly", t0 + 600, 80, 1),
            _visit(unv, "unverified", "half_monthly", t0 + 1200, 45, 1),
            _visit(mc, "missing_countersign", "semi_annual", t0 + 1800, 100, 1),
            _visit(sk, "skipped", "half_monthly", t0 + 2400, 50, 1),
            _visit(escalator, "genuine", "half_monthly", t0 + 3000, 50, 1)]
    accounts = tmp_path / "state" / "accounts.json"
    common = ["--api-url", api_url, "--accounts", str(accounts), "--quiet"]

    # --- bootstrap: accounts through `liftwatch users add`, keys through the API, schedule -----------
    plan = tmp_path / "plan.json"
    live = _visit(traction[5], "genuine", "half_monthly", t0, 1, 1)  # its times are set below, before driving
    write_plan(plan, [*past, live], seed=3, prefix=prefix, units=40, start=t0, end=t0 + 1)
    res = CliRunner().invoke(technicians_cmd, ["--visits", str(plan), "--bootstrap-only", *common])
    assert res.exit_code == 0, res.output
    sites = [spec[v.unit_id].site for v in [*past, live]]
    users = {r["username"]: r for r in _sql(
        db_url, "SELECT us.username, p.role, p.company_id FROM users us JOIN people p USING (person_id)")}
    assert set(users) == {f"tech-{s.maintenance_company_id}" for s in sites} | {f"uu-{s.user_unit_id}" for s in sites}
    assert len(users) == 2
    for name, u in users.items():
        assert u["role"] == ("technician" if name.startswith("tech-") else "user_unit")
        assert name.endswith(u["company_id"])
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    keys = _sql(db_url, "SELECT person_id FROM signing_keys WHERE status = 'active'")
    assert len(keys) == len(users)
    # every kind has its checklist (Annexes A-D): four waiting orders per unit, escalators included
    assert _sql(db_url, "SELECT count(*) AS n FROM work_orders WHERE status = 'open'")[0]["n"] == 4 * len(fleet.units)
    assert "accounts created" in res.output and "schedule" in res.output

    # a second bootstrap changes nothing
    res = CliRunner().invoke(technicians_cmd, ["--visits", str(plan), "--bootstrap-only", *common])
    assert res.exit_code == 0, res.output
    assert "0 accounts created" in res.output and "0 signing keys enrolled" in res.output

    # --- drive: overdue visits at once, one live visit when its planned time comes --------------------
    start_live = time.time() + 4.0
    live = _visit(traction[5], "genuine", "half_monthly", start_live, 2 / 60, 1)  # on site 4 s .. 6 s from now
    write_plan(plan, [*past, live], seed=3, prefix=prefix, units=40, start=t0, end=start_live + 10)
    truth_path = tmp_path / "truth.json"
    res = CliRunner().invoke(technicians_cmd, ["--visits", str(plan), "--duration", "12s", "--speedup", "1",
                                               "--truth", str(truth_path), *common])
    assert res.exit_code == 0, res.output
    assert "0 schedule runs" in res.output  # the bootstrap made every order this plan needs
    truth = orjson.loads(truth_path.read_bytes())
    by_id = {v["visit_id"]: v for v in truth["visits"]}
    assert truth["counts"]["done"] == {"genuine": 4, "unverified": 1, "missing_countersign": 1}
    assert truth["counts"]["no_checklist"] == 0 and truth["counts"]["failed"] == {}

    def order(v: Visit) -> dict:
        wo_id = by_id[v.visit_id]["work_order_id"]
        row = _sql(db_url, "SELECT w.*, (SELECT count(*) FROM signatures s WHERE s.work_order_id = w.work_order_id) "
                           "AS signatures FROM work_orders w WHERE work_order_id = %s", (wo_id,))[0]
        assert row["unit_id"] == v.unit_id and row["kind"] == v.kind
        return row

    for v in (past[0], past[1], past[2], past[5], live):  # genuine and unverified: signed and countersigned
        row, t = order(v), by_id[v.visit_id]
        assert row["status"] == "closed" and row["signatures"] == 2, (v.case, row)
        assert row["signed_at"] == _t(t["signed_at"]) and row["closed_at"] == _t(t["countersigned_at"])
        assert row["checked_in_at"] == _t(t["checked_in_at"])
        assert abs(row["check_in_lat"] - spec[v.unit_id].site.lat) < 0.001
    row = order(past[3])
    assert row["status"] == "signed" and row["signatures"] == 1 and row["closed_at"] is None
    row = order(past[4])
    assert row["status"] == "open" and row["signatures"] == 0 and row["technician_id"] is None
    # the escalator's visit went through its own checklist (Annex D, 33 half-monthly items)
    assert by_id[past[5].visit_id]["outcome"] == "done"
    assert _sql(db_url, "SELECT w.checklist_id, count(i.code) AS n FROM work_orders w JOIN work_order_items i "
                        "USING (work_order_id) WHERE w.work_order_id = %s GROUP BY 1",
                (by_id[past[5].visit_id]["work_order_id"],)) == [{"checklist_id": "tsg-t5002-2017-escalator", "n": 33}]

    # the live visit was driven when its time came, not before: check-in at its start, signed at its end
    t = by_id[live.visit_id]
    checked_in, signed = _t(t["checked_in_at"]).timestamp(), _t(t["signed_at"]).timestamp()
    busy_until = max(_t(by_id[v.visit_id]["signed_at"] if v.case == "missing_countersign" else
                        by_id[v.visit_id]["countersigned_at"]).timestamp() for v in past[:4])
    assert live.start <= checked_in < max(live.start, busy_until) + 1.5  # late only behind the overdue ones
    assert live.end <= signed < live.end + 30

    # every item has a result; measured ones a realistic value (A-1-29 >= 7 mm unless a defect)
    items = _sql(db_url, "SELECT i.code, i.result, i.measured_value FROM work_order_items i JOIN work_orders w "
                         "USING (work_order_id) WHERE w.status IN ('signed', 'closed')")
    assert items and all(i["result"] is not None for i in items)
    # three half-monthly, one quarterly, one semi-annual (Annex A) and the escalator's half-monthly (Annex D)
    assert len(items) == 31 * 3 + 44 + 59 + 33
    for i in items:
        if i["code"] == "A-1-29":
            assert i["result"] == "defect" or 7.5 <= i["measured_value"] <= 12.0
    results = {i["result"] for i in items}
    assert "ok" in results and "adjusted" in results

    # the ledger holds every signature and verifies
    led = subprocess.run([sys.executable, "-m", "liftwatch", "ledger", "verify"], capture_output=True, text=True,
                         env={**os.environ, "LIFTWATCH_DATABASE_URL": db_url}, timeout=60)
    assert led.returncode == 0, led.stderr
    assert "ledger OK: 11 entries" in led.stdout  # 5 closed orders x 2 + 1 uncountersigned

    # --- a failure is reported with the API's error code and exit code 1 -------------------------------
    ghost = replace(past[0], unit_id=f"{prefix}-GHOST", visit_id=f"{prefix}-GHOST-V1")
    write_plan(plan, [ghost], seed=3, prefix=prefix, units=40, start=t0, end=t0 + 1)
    res = CliRunner().invoke(technicians_cmd, ["--visits", str(plan), "--speedup", "0", *common])
    assert res.exit_code == 1, res.output
    assert "FAILED: 1 visits: not_found 1" in res.output and "HTTP 404 not_found" in res.output
