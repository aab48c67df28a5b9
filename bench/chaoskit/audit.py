"""Progress lines, the drain (until every acknowledged (unit, seq) is stored and the count is
stable), and the audit of the table against what the publishers were told was accepted."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter

import orjson
import psycopg

from bench.chaoskit.clock import log
from bench.chaoskit.fleet import PROGRESS_EVERY_S, Fleet, puback_received
from bench.chaoskit.ingestors import Replicas

SETTLE_S = 5.0  # the row count must stay at the target this long before the audit
FAULT_WINDOW_S = 3.0  # lag after a fault: of the messages published within this long after it


def row_count(dsn: str) -> int | None:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
            return c.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    except psycopg.Error:
        return None


class Progress(threading.Thread):
    def __init__(self, dsn: str, fleet: Fleet, ing: Replicas) -> None:
        super().__init__(name="chaos-progress", daemon=True)
        self.dsn, self.fleet, self.ing = dsn, fleet, ing
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(PROGRESS_EVERY_S):
            rows = row_count(self.dsn)
            log(f"progress: published {self.fleet.published:,}, acked {self.fleet.acks():,}, "
                f"rows {'(database down)' if rows is None else f'{rows:,}'}, "
                f"publishers connected {self.fleet.connected()}/{len(self.fleet.clients)}, "
                f"ingestors up {self.ing.alive()}/{len(self.ing.members)}")


# --- drain and audit -------------------------------------------------------------------------

def wait_drained(dsn: str, target: int, stall: float, timeout: float) -> dict:
    """Until count(DISTINCT (unit, seq)) >= target and the row count is stable for SETTLE_S, or no
    change for `stall` seconds, or `timeout`."""
    t0 = time.monotonic()
    last, last_change, reached_at = -1, time.monotonic(), None
    last_log = 0.0
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
                rows, distinct = c.execute("SELECT count(*), count(DISTINCT (unit_id, seq)) FROM telemetry").fetchone()
        except psycopg.Error:
            rows = distinct = -1
        now = time.monotonic()
        if rows != last:
            last, last_change = rows, now
        if distinct >= target and reached_at is None:
            reached_at = now
        if reached_at is not None and now - last_change >= SETTLE_S:
            return {"complete": True, "rows": rows, "waited_s": round(now - t0, 2)}
        if now - last_change >= stall or now - t0 >= timeout:
            return {"complete": False, "rows": rows, "waited_s": round(now - t0, 2)}
        if now - last_log > PROGRESS_EVERY_S:
            last_log = now
            log(f"draining: {distinct:,} of {target:,} acked (unit, seq) stored")
        time.sleep(0.5)


def audit(dsn: str, fleet: Fleet, side_units: list[str], fault_walls: list[float]) -> dict:
    """The main stream's units only (the side units are audited by SideStream). `fault_walls`:
    wall-clock times of the faults, for the worst lag of what was published just after each."""
    published: dict[tuple[str, int], int] = {}  # (unit, seq) -> ts_ms
    acked: set[tuple[str, int]] = set()
    refused = {(u, s) for c in fleet.clients for u, s, _ in c.refused}
    noted = {(u, s): r for c in fleet.clients for u, s, r in c.noted}
    reasons: Counter = Counter()
    for c in fleet.clients:
        reasons.update(c.reasons)
    for c in fleet.clients:
        for s in c.sent:
            published[(s.unit, s.seq)] = s.ts_ms
            if puback_received(s.info) and (s.unit, s.seq) not in refused:
                acked.add((s.unit, s.seq))
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT unit_id, seq, round(extract(epoch FROM time) * 1000)::int8, "
            "extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM telemetry").fetchall()
        rejected = c.execute("SELECT reason, unit_id, detail, payload FROM rejected_messages "
                             "WHERE unit_id IS NULL OR unit_id <> ALL(%s)", (side_units,)).fetchall()
        gaps = c.execute("SELECT unit_id, from_seq, to_seq, filled FROM ingest_gaps WHERE unit_id <> ALL(%s) "
                         "ORDER BY 1, 2", (side_units,)).fetchall()
        state = c.execute("SELECT unit_id, next_seq, ahead FROM unit_ingest_state WHERE unit_id <> ALL(%s)",
                          (side_units,)).fetchall()
    stored: Counter = Counter((u, s) for u, s, _, _ in rows)
    duplicated = len(rows) - len(stored)
    ts_mismatch = [(u, s, t, published[(u, s)]) for u, s, t, _ in rows
                   if (u, s) in published and t != published[(u, s)]]
    not_published = sorted(k for k in stored if k not in published)
    lost = sorted(k for k in acked if k not in stored)
    unacked_stored = sum(1 for k in published if k not in acked and k in stored)
    lags = sorted(ct - t / 1000 for _, _, t, ct in rows if ct is not None)
    after_fault = [max((ct - t / 1000 for _, _, t, ct in rows
                        if ct is not None and w <= t / 1000 < w + FAULT_WINDOW_S), default=None)
                   for w in fault_walls]
    commits = [ct for _, _, _, ct in rows if ct is not None]

    # the seq bookkeeping must agree with the table: next_seq = per-unit count, nothing ahead
    per_unit = Counter(u for u, _ in stored)
    state_mismatch = [{"unit": u, "next_seq": n, "stored": per_unit.get(u, 0), "ahead": len(a),
                       "ahead_first": list(a[:5])} for u, n, a in state if n != per_unit.get(u, 0) or a]
    lost_set = set(lost)
    rej_keys = []
    for reason, unit, detail, payload in rejected:
        try:
            seq = orjson.loads(bytes(payload)).get("seq")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            seq = None
        rej_keys.append({"reason": reason, "unit_id": unit, "seq": seq, "detail": (detail or "")[:160],
                         "lost": (unit, seq) in lost_set})

    def pct(p: float) -> float | None:
        return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3) if lags else None

    return {
        "published": len(published),
        "acked": len(acked),
        "puback_reasons": dict(reasons),
        "puback_failures": sorted(refused),
        "acked_no_matching_subscribers": sum(1 for r in noted.values() if "matching" in r),
        "lost_with_no_matching_subscribers": sum(1 for k in lost if "matching" in noted.get(k, "")),
        "not_queued_by_paho": [x for c in fleet.clients for x in c.not_queued],
        "rows": len(rows),
        "distinct_unit_seq": len(stored),
        "lost": len(lost),
        "_lost_all": [(u, q, published[(u, q)], noted.get((u, q), "Success")) for u, q in lost],  # popped
        "units_with_loss": len({u for u, _ in lost}),
        "duplicated": duplicated,
        "duplicated_keys": [list(k) for k, n in stored.items() if n > 1][:50],
        "not_published": len(not_published),
        "ts_mismatch": len(ts_mismatch),
        "unacked_but_stored": unacked_stored,
        "rejected": len(rejected),
        "rejected_by_reason": dict(Counter(r["reason"] for r in rej_keys)),
        "rejected_sample": rej_keys[:20],
        "_rejected_all": rej_keys,  # popped
        "ingest_gaps": len(gaps),
        "ingest_gaps_unfilled": sum(to - fr + 1 - filled for _, fr, to, filled in gaps),
        "max_lag_after_fault_s": [round(x, 3) if x is not None else None for x in after_fault],
        "seq_state_mismatch": len(state_mismatch),
        "seq_state_mismatch_sample": state_mismatch[:10],
        "units_with_state": len(state),
        "lag_s": {"p50": pct(0.50), "p99": pct(0.99), "max": round(lags[-1], 3) if lags else None,
                  "mean": round(statistics.fmean(lags), 3) if lags else None},
        "last_commit_epoch": max(commits) if commits else None,
    }
