"""Web pages benchmark: what a page weighs and how long Chromium takes to show it, for a fleet.

Setup: a throwaway PostgreSQL+TimescaleDB cluster, migrated; N units (default 500 and 5 000)
on sites spread over a city, imported with the registry CSV code; plans and orders from
`maintenance schedule`, moved 20 days back for a third of the units (so they are overdue);
two days of telemetry for the first 200 units; one analytics pass (rollups, rules, risk
grades). The app is served by uvicorn in this process on 127.0.0.1; Debian's Chromium is
driven by Playwright with a warm cache disabled (every load fetches everything).

Per page, the median of 5 loads: bytes transferred (HTML, CSS, JS, all responses), DOM
content loaded and load event times from the Navigation Timing entry. /login is the baseline:
the same server, stack and browser, and a page that queries nothing.

Run: .venv/bin/python bench/web.py [--units 500,5000] [--screenshot PATH]
Writes bench/results/web-<timestamp>.json. Wait while /tmp/liftwatch-quiet exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import psycopg  # noqa: E402
import uvicorn  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from analytics.run import PassOptions, run_pass  # noqa: E402
from bench.common import log  # noqa: E402
from liftwatch.db import migrate  # noqa: E402
from liftwatch.registry import COLUMN_NAMES, import_units  # noqa: E402
from liftwatch.settings import Settings  # noqa: E402
from liftwatch.throwaway import PgCluster, free_port  # noqa: E402
from maintenance.app import create_app  # noqa: E402
from maintenance.auth import add_user  # noqa: E402
from maintenance.schedule import schedule  # noqa: E402

PASSWORD = "bench password 123"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADS = 5


def fleet_csv(n: int, seed: int = 3) -> str:
    r = random.Random(seed)
    lines = [",".join(COLUMN_NAMES)]
    for i in range(n):
        site = i // 4  # four lifts per building
        row = dict.fromkeys(COLUMN_NAMES, "")
        row.update(unit_id=f"U{i:05d}", kind="traction", site_id=f"S{site:04d}", site_name=f"Building {site}",
                   city="上海", lat=f"{31.05 + r.random() * 0.35:.5f}", lon=f"{121.25 + r.random() * 0.45:.5f}",
                   maintenance_company_id=f"MC{i % 20}", maintenance_company_name=f"Maint {i % 20}",
                   user_unit_id=f"UU{site % 200}", user_unit_name=f"Owner {site % 200}",
                   registration_code="" if i % 50 == 0 else f"REG{i:05d}",
                   last_inspection_on="2024-12-01" if i % 40 == 0 else "2026-03-01",
                   next_inspection_due="2025-12-01" if i % 40 == 0 else "2027-03-01",
                   installed_on=f"{2000 + i % 25}-06-01")
        lines.append(",".join(row[c] for c in COLUMN_NAMES))
    return "\n".join(lines) + "\n"


def build(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        import_units(conn, io.StringIO(fleet_csv(n)))
        add_user(conn, username="super", name="Bench Supervisor", role="supervisor", company_id=None,
                 password=PASSWORD)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            schedule(conn)
        conn.execute("""UPDATE maintenance_plans SET created_at = created_at - interval '20 days'
                         WHERE mod(abs(hashtext(unit_id)), 3) = 0""")
        conn.execute("""UPDATE work_orders SET due_on = due_on - 20 WHERE status = 'open' AND mod(abs(hashtext(unit_id)), 3) = 0""")
        now = datetime.now(UTC)
        rows = []
        for u in range(min(n, 200)):
            for k in range(96):
                t = now - timedelta(minutes=30 * k)
                rows.append((t, f"U{u:05d}", k, "inspection" if k == 50 else "normal", 3000 + (k % 9) * 20,
                             10 + k % 7, (k % 5) - 2, 100_000 - k * 4))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO telemetry (time, unit_id, seq, mode, door_close_ms, vibration_mg, "
                            "leveling_mm, run_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
            cur.execute("""INSERT INTO unit_ingest_state (unit_id, next_seq, last_time)
                           SELECT unit_id, 96, max(time) FROM telemetry GROUP BY unit_id""")
    run_pass(dsn, PassOptions(first_window=timedelta(days=3)))


def measure(base: str, paths: list[str], screenshot: str | None) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.route("**/*", lambda route: route.continue_())  # disables the cache: every load fetches all
        page.goto(f"{base}/login")
        page.fill("#username", "super")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        for path in paths:
            loads = []
            for _ in range(LOADS):
                page.goto(base + path, wait_until="load")
                # the page and every resource it loaded, as the browser counted them
                loads.append(page.evaluate("""(() => {
                    const n = performance.getEntriesByType('navigation')[0];
                    const rs = performance.getEntriesByType('resource');
                    return {html: n.decodedBodySize, bytes: n.decodedBodySize + rs.reduce((a, r) => a + r.decodedBodySize, 0),
                            requests: 1 + rs.length, ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd,
                            load: n.loadEventEnd}; })()"""))
            out[path] = {k: statistics.median(x[k] for x in loads) for k in loads[0]}
            if screenshot and path == "/dashboard":
                page.screenshot(path=screenshot, full_page=True)
        browser.close()
    return out


def run(n: int, screenshot: str | None) -> dict:
    cluster = PgCluster().init().start()
    try:
        dsn = cluster.dsn("liftwatch")
        migrate(dsn)
        t0 = time.perf_counter()
        build(dsn, n)
        log(f"{n} units built in {time.perf_counter() - t0:.0f} s")
        settings = Settings(database_url=dsn)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                                               access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            return measure(f"http://127.0.0.1:{port}", ["/login", "/dashboard", "/units/U00001", "/u/U00001",
                                                        "/kpi/maintenance"], screenshot)
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", default="500,5000", help="fleet sizes, comma-separated")
    ap.add_argument("--screenshot", default=None, help="save the dashboard of the first fleet here")
    args = ap.parse_args()
    results = {}
    for i, n in enumerate(int(x) for x in args.units.split(",")):
        results[n] = run(n, args.screenshot if i == 0 else None)
    print(f"{'units':>6} {'page':<18} {'requests':>8} {'KiB all':>8} {'KiB html':>8} {'TTFB ms':>8} "
          f"{'DCL ms':>7} {'load ms':>8}")
    for n, pages in results.items():
        for path, m in pages.items():
            print(f"{n:>6} {path:<18} {m['requests']:>8.0f} {m['bytes'] / 1024:>8.1f} {m['html'] / 1024:>8.1f} "
                  f"{m['ttfb']:>8.0f} {m['dcl']:>7.0f} {m['load']:>8.0f}")
    out = _REPO / "bench" / "results" / f"web-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"loads_per_page": LOADS, "results": results}, indent=2))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
