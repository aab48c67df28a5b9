"""Real pages in a real browser: `liftwatch api`'s app served by uvicorn on a free port in a
thread, Debian's Chromium driven by Playwright, and data made through the real code paths.

Chromium comes from the Debian package (/usr/bin/chromium, installed by
scripts/install-timescaledb.sh); `playwright install` is never run. Every page a test opens
records console errors and uncaught exceptions; a test ends by asserting there were none
beyond the failed requests it provoked on purpose (Chromium logs each 4xx a script receives
as "Failed to load resource: ... status of 422").
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import uvicorn

from liftwatch.settings import Settings
from maintenance.app import SERVER_OPTIONS, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("LIFTWATCH_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app (pool, middleware, pages) on 127.0.0.1:<free port>: a secure context for WebCrypto."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, lifespan="on",
                                access_log=False, **SERVER_OPTIONS)  # as `liftwatch api` serves it
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class PageLog:
    """Console errors and page errors of one page."""

    errors: list[str] = field(default_factory=list)

    def unexpected(self, *allowed_statuses: int) -> list[str]:
        """Errors other than one 'Failed to load resource' per allowed status (in any order)."""
        left = list(allowed_statuses)
        out = []
        for e in self.errors:
            m = re.search(r"Failed to load resource: the server responded with a status of (\d+)", e)
            if m and int(m.group(1)) in left:
                left.remove(int(m.group(1)))
            else:
                out.append(e)
        return out + [f"expected a failed request with status {s} that did not happen" for s in left]


def watch(page) -> PageLog:
    log = PageLog()
    page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: log.errors.append(f"uncaught: {exc}"))
    return log


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login" not in page.url, page.content()[:2000]


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def api(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30)


def age_schedule(dsn: str, days: int) -> None:
    """Make it as if `liftwatch maintenance schedule` had run `days` ago and nobody had visited
    since: the plans' start and the waiting orders' dates move back (open orders are plain
    rows; signed ones could not be touched, and there are none yet)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("UPDATE maintenance_plans SET created_at = created_at - make_interval(days => %s)", (days,))
        c.execute("UPDATE work_orders SET created_at = created_at - make_interval(days => %s), "
                  "due_on = due_on - %s WHERE status = 'open'", (days, days))


def telemetry_history(dsn: str, unit_id: str, *, days: int = 14, every_min: int = 10,
                      until: datetime | None = None, door_drift_ms: float = 0.0) -> int:
    """Samples as a controller sends them (mode, door close time, vibration, leveling, trip
    counter), every `every_min` minutes for `days` days up to `until`, and one fault a day;
    written as the ingestor writes them (telemetry/events rows and unit_ingest_state)."""
    until = until or datetime.now(UTC)
    start = until - timedelta(days=days)
    rows, events = [], []
    n = int(days * 24 * 60 / every_min)
    run_count = 10_000
    for i in range(n + 1):
        t = start + timedelta(minutes=every_min * i)
        hour = t.hour
        busy = 7 <= hour <= 21
        run_count += 6 if busy else 1
        day = i * every_min / 1440
        mode = "inspection" if (hour == 3 and i % 6 == 0) else "normal"
        wobble = math.sin(day * 1.3)  # days differ, as real ones do
        rows.append((t, unit_id, i, mode, (i % 18) + 1, False, "closed",
                     2900 + 15 * (i % 7) + 60 * wobble + door_drift_ms * day,
                     9.0 + (i % 5) + (3.0 if busy else 0.0) + 2 * wobble, ((i % 9) - 4) * (0.8 + 0.3 * wobble), run_count))
        if i % 144 == 70:
            events.append((t, unit_id, n + 1 + len(events), "door_close_fault", "raised"))
    with psycopg.connect(dsn, autocommit=True) as c, c.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (time, unit_id, seq, mode, floor, moving, door, door_close_ms, "
                        "vibration_mg, leveling_mm, run_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        rows)
        cur.executemany("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, %s, %s, %s, %s)", events)
        cur.execute("INSERT INTO unit_ingest_state (unit_id, next_seq, last_time) VALUES (%s, %s, %s) "
                    "ON CONFLICT (unit_id) DO UPDATE SET next_seq = EXCLUDED.next_seq, last_time = EXCLUDED.last_time",
                    (unit_id, n + 1 + len(events), until))
    return len(rows)


UNLABELLED_JS = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(el => el.type !== 'hidden' && !el.labels.length && !el.getAttribute('aria-label'))
    .map(el => el.outerHTML.slice(0, 120))"""


def unlabelled_controls(page) -> list[str]:
    """Form controls a screen reader would announce without a name."""
    return page.evaluate(UNLABELLED_JS)
