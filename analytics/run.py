"""One analytics pass: rollups, retention, every rule, alert reconciliation, a run record.

load (SQL) -> evaluate (pure functions in rules.py / anomaly.py) -> reconcile alerts; every
pass writes an `analytics_runs` row with its window, parameters, code version and counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from analytics import rules
from analytics.alerts import ReconcileResult, reconcile
from analytics.rollups import drop_old_chunks, update_rollups
from liftwatch import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassOptions:
    grace: timedelta = timedelta(hours=6)  # late data this old is still re-aggregated
    first_window: timedelta = timedelta(days=90)  # how far back the very first pass aggregates
    retention: timedelta | None = None  # drop raw chunks older than this (None: keep everything)
    rules: rules.RuleParams = field(default_factory=rules.RuleParams)
    anomaly: bool = True
    max_advised_days: int = 15  # advisory half-monthly interval never exceeds this (statutory 15)


def _params_json(opts: PassOptions) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, timedelta):
            return v.total_seconds()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(asdict(opts))


def run_pass(dsn: str, opts: PassOptions, *, now: datetime | None = None) -> dict[str, Any]:
    """Run one pass against the database at `dsn`; return the counts also stored in analytics_runs."""
    needed = max(opts.rules.unverified_lookback + opts.rules.inspection_tolerance, opts.rules.frequent_fault_window)
    if opts.retention is not None and opts.retention <= needed:
        raise ValueError(f"retention of {opts.retention} would drop raw rows the rules still read (they look "
                         f"{needed} back): keep at least {needed + timedelta(days=1)}")
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row, application_name="liftwatch-analytics") as conn:
        run_id = conn.execute(
            "INSERT INTO analytics_runs (started_at, parameters, code_version) VALUES (%s, %s, %s) RETURNING run_id",
            (now, Jsonb(_params_json(opts)), __version__)).fetchone()["run_id"]
        try:
            counts, window = _pass(conn, opts, now, run_id)
        except Exception as exc:
            conn.execute("UPDATE analytics_runs SET status = 'failed', finished_at = now(), error = %s, duration_s = %s "
                         "WHERE run_id = %s", (str(exc)[:2000], time.perf_counter() - started, run_id))
            raise
        duration = time.perf_counter() - started
        conn.execute(
            """UPDATE analytics_runs SET status = 'ok', finished_at = now(), window_from = %s, window_to = %s,
                      counts = %s, duration_s = %s WHERE run_id = %s""",
            (window[0], window[1], Jsonb(counts), duration, run_id))
    log.info("analytics pass done", extra={"run_id": run_id, "duration_s": round(duration, 2), **_flat(counts)})
    return {"run_id": run_id, "duration_s": duration, **counts}


class _Stages:
    """Seconds per stage of a pass, kept in analytics_runs.counts: where a slow pass spends them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def _flat(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts.items() if not isinstance(v, dict)}


def _pass(conn: psycopg.Connection, opts: PassOptions, now: datetime, run_id: int) -> tuple[dict[str, Any], tuple]:
    p = opts.rules
    counts: dict[str, Any] = {}
    stage = _Stages()
    with stage("rollups"):
        r = update_rollups(conn, now=now, grace=opts.grace, first_window=opts.first_window)
    counts.update(hourly_rows=r.hourly_rows, daily_rows=r.daily_rows)
    if opts.retention is not None:
        with stage("retention"):
            counts["chunks_dropped"] = drop_old_chunks(conn, before=now - opts.retention)

    results: dict[str, ReconcileResult] = {}
    with stage("maintenance"):
        plans = rules.load(conn, rules.MAINTENANCE_SQL)
        results["maintenance"] = reconcile(conn, ("maintenance_overdue", "maintenance_due_soon"),
                                           rules.maintenance_alerts(plans, now, p))
    with stage("countersign"):
        results["countersign"] = reconcile(conn, ("countersign_missing",),
                                           rules.countersign_alerts(rules.load(conn, rules.COUNTERSIGN_SQL), now, p))
    with stage("unverified"):
        visits = rules.load(conn, rules.UNVERIFIED_SQL, {"tol": p.inspection_tolerance, "since": now - p.unverified_lookback,
                                                         "settled": now - rules.SETTLE - p.inspection_tolerance})
        results["unverified"] = reconcile(conn, ("unverified_visit",), rules.unverified_alerts(visits, p))
        counts["visits_checked"] = rules.record_visit_checks(conn, visits)
    with stage("inspection"):
        results["inspection"] = reconcile(conn, ("inspection_overdue", "inspection_due_soon"),
                                          rules.inspection_alerts(rules.load(conn, rules.INSPECTION_SQL), now.date(), p))
    with stage("offline"):
        results["offline"] = reconcile(conn, ("offline",),
                                       rules.offline_alerts(rules.load(conn, rules.OFFLINE_SQL), now, p))
    with stage("entrapment"):
        keep, resolved = rules.entrapment_outcome(rules.load(conn, rules.ENTRAPMENT_SQL), p)
        results["entrapment"] = reconcile(conn, ("entrapment",), keep, resolved)
    with stage("frequent_faults"):
        faults = rules.load(conn, rules.FAULTS_SQL, {"since": now - p.frequent_fault_window,
                                                     "threshold": p.frequent_fault_threshold})
        results["frequent_faults"] = reconcile(conn, ("frequent_faults",), rules.frequent_fault_alerts(faults, p))
    if opts.anomaly:
        from analytics import anomaly

        with stage("anomaly"):
            results["anomaly"] = anomaly.assess(conn, now=now, run_id=run_id)

    from analytics import risk

    with stage("risk"):
        counts["risk_grades"] = risk.assess(conn, now=now, max_advised_days=opts.max_advised_days)
    counts["alerts"] = {k: asdict(v) for k, v in results.items()}
    counts["alerts_opened"] = sum(v.opened for v in results.values())
    counts["alerts_resolved"] = sum(v.resolved for v in results.values())
    counts["open_alerts"] = conn.execute("SELECT count(*) AS n FROM alerts WHERE status = 'open'").fetchone()["n"]
    counts["stage_seconds"] = stage.seconds
    return counts, (r.window_from, r.window_to)
