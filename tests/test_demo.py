"""`make demo`'s script, run small: after it the database holds what a newcomer must see.

scripts/demo.sh runs as `make demo` does, against the test's database, with its own broker,
API, ingestor, live fleet and analytics on free ports (20 units, 4 days of history), then the
test stops what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from browser_support import free_port
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parents[1]


def _stop_all(state: Path) -> None:
    for pid_file in state.glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
    time.sleep(1)


@pytest.mark.slow
def test_demo_leaves_the_whole_maintenance_loop_to_look_at(db_url: str, tmp_path: Path) -> None:
    state = tmp_path / "demo"
    api_port = free_port()
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url, "DEMO_STATE": str(state), "DEMO_UNITS": "20",
           "DEMO_HISTORY_DAYS": "4", "DEMO_VISIT_SECONDS": "20", "DEMO_FLEET_HOURS": "1",
           "DEMO_MQTT_PORT": str(free_port()), "LIFTWATCH_API_PORT": str(api_port),
           "LIFTWATCH_METRICS_PORT": str(free_port()), "DEMO_BIN": str(Path(sys.executable).parent)}
    try:
        r = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = r.stdout
        with psycopg.connect(db_url, row_factory=dict_row) as c:
            q = lambda sql: c.execute(sql).fetchone()  # noqa: E731
            # every unit kind has its plans; the archive came in as legacy records
            kinds = {row["kind"] for row in c.execute(
                "SELECT DISTINCT u.kind FROM maintenance_plans p JOIN units u USING (unit_id)")}
            assert kinds >= {"traction", "hydraulic", "dumbwaiter", "escalator", "moving_walk"}, kinds
            assert q("SELECT count(*) AS n FROM units u WHERE NOT EXISTS (SELECT 1 FROM maintenance_plans p "
                     "WHERE p.unit_id = u.unit_id)")["n"] == 0
            assert q("SELECT count(*) AS n FROM legacy_maintenance")["n"] > 20
            # signed and countersigned records, some today through the API, all in a sound ledger
            assert q("SELECT count(*) AS n FROM work_orders WHERE status = 'closed'")["n"] >= 3
            assert q("SELECT count(*) AS n FROM work_orders WHERE status = 'closed' AND closed_at > now() - "
                     "interval '15 minutes'")["n"] >= 2
            # the overdue list is right on day one: DEMO-001 was last maintained 40 days ago
            overdue = {row["unit_id"] for row in c.execute(
                "SELECT unit_id FROM alerts WHERE status = 'open' AND kind = 'maintenance_overdue'")}
            assert "DEMO-001" in overdue, overdue
            assert q("SELECT count(*) AS n FROM alerts WHERE status = 'open' AND kind = 'unverified_visit'")["n"] >= 1
        # the on-time KPI counts real orders; the printed record verifies without Liftwatch
        password = next(line.split("supervisor / ")[1].split(";")[0] for line in out.splitlines()
                        if "log in as supervisor" in line)
        api = f"http://127.0.0.1:{api_port}"
        token = httpx.post(f"{api}/api/v1/auth/token", data={"username": "supervisor", "password": password}
                           ).json()["access_token"]
        kpi = httpx.get(f"{api}/api/v1/kpis", headers={"Authorization": f"Bearer {token}"}).json()
        assert kpi["maintenance"]["of"] > 0, kpi
        record_id = next(line.split("(work order ")[1].split(";")[0] for line in out.splitlines()
                         if "verify a signed record by hand" in line)
        doc = httpx.get(f"{api}/api/v1/work-orders/{record_id}/record", headers={"Authorization": f"Bearer {token}"})
        v = subprocess.run([sys.executable, "scripts/verify-record.py"], cwd=REPO, input=doc.text, capture_output=True,
                           text=True)
        assert v.returncode == 0 and "performed" in v.stdout and "confirmed" in v.stdout, v.stdout + v.stderr
        assert "overdue list" in out and "ready in" in out
    finally:
        _stop_all(state)
