"""The report: versions of everything, every lost message attributed to a fault, the table."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections import Counter

import psycopg

from bench.chaoskit.faults import Fault
from liftwatch.throwaway import PgCluster

DB_NAME = "chaos"

def versions(pg: PgCluster) -> dict:
    import paho.mqtt

    out = {"python": platform.python_version(), "paho": paho.mqtt.__version__}
    try:
        out["mosquitto"] = subprocess.run([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"],
                                          capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        pass
    try:
        with psycopg.connect(pg.dsn(DB_NAME), autocommit=True) as c:
            out["postgres"] = c.execute("SHOW server_version").fetchone()[0]
            row = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            out["timescaledb"] = row[0] if row else None
    except psycopg.Error:
        pass
    return out


def explain_lost(lost: list[tuple[str, int, int, str]], faults: list[Fault], stream_wall0: float,
                 rejected_keys: set[tuple[str, int]]) -> dict:
    """Attribute every lost message: the fault just before its publish time, the broker's PUBACK
    reason, and whether the ingestor recorded it as rejected. Plus a sample, as per-unit seq ranges."""
    causes: Counter = Counter()
    ranges: dict[str, list[list[int]]] = {}
    for unit, seq, ts_ms, reason in lost:
        at = ts_ms / 1000 - stream_wall0
        before = [f for f in faults if f.at_s <= at + 0.5]
        fault = f"{before[-1].kind}@{before[-1].at_s:.1f}s" if before else "none"
        how = "rejected by the ingestor" if (unit, seq) in rejected_keys else f"PUBACK '{reason}', never delivered"
        causes[f"after {fault}: {how}"] += 1
        r = ranges.setdefault(unit, [])
        if r and r[-1][1] == seq - 1:
            r[-1][1] = seq
        else:
            r.append([seq, seq])
    sample = {u: ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in rs) for u, rs in list(ranges.items())[:12]}
    return {"by_cause": dict(causes.most_common()), "seq_ranges_sample": sample}


def print_report(r: dict) -> None:
    s, d, lag, side, cpu = r["stream"], r["drain"], r["lag_s"], r["side"], r["cpu_s"]
    fk = r["faults_by_kind"]
    print()
    ing = r["ingestor"]
    print(f"Chaos run{' (quick)' if r['quick'] else ''}: {s['messages']:,} QoS1 messages from {s['units']} units "
          f"on {s['connections']} connections over {s['seconds']:.0f} s ({s['offered_msg_s']:,.0f} msg/s offered); "
          f"{ing['replicas']} ingestor(s), topology {ing['topology']}")
    print()
    print("| t (s) | fault | what happened | away (s) | consuming again (s) | worst lag of the next 3 s (s) |")
    print("|---:|---|---|---:|---:|---:|")
    dash = "—"
    for f in r["faults"]:
        print(f"| {f['at_s']:.1f} | {f['kind']} | {f['detail']} | {f['down_s'] if f['down_s'] is not None else dash} "
              f"| {f['recovered_s'] if f['recovered_s'] is not None else dash} "
              f"| {f['extra'].get('max_lag_of_next_3s_s', dash)} |")
    print()
    print("| measure | value |")
    print("|---|---:|")
    rows = [
        ("samples published (one per message unless --samples)", f"{r['published']:,}"),
        ("acknowledged by the broker", f"{r['acked']:,}"),
        ("faults: ingestor kill -9", fk["ingestor_kill9"]),
        ("faults: broker restart (SIGTERM, persistence)", fk["broker_restart"]),
        ("faults: database immediate stop", fk["database_immediate_stop"]),
        ("  of which ingestor restarted while the database was down",
         fk["overlapping (ingestor restarted while the database was down)"]),
        ("rows in telemetry", f"{r['rows']:,}"),
        ("PUBACK reason codes", ", ".join(f"{k}: {v:,}" for k, v in sorted(r["puback_reasons"].items()))),
        ("**lost** (acked, not stored)", r["lost"]),
        ("  of which the broker acked with 'No matching subscribers'", r["lost_with_no_matching_subscribers"]),
        ("**duplicated** rows (count − distinct (unit, seq))", r["duplicated"]),
        ("rows never published", r["not_published"]),
        ("rows whose ts differs from the published one", r["ts_mismatch"]),
        ("rejected messages", f"{r['rejected']} {r['rejected_by_reason'] or ''}".strip()),
        ("seq bookkeeping disagreeing with the table (units)", r["seq_state_mismatch"]),
        ("gaps recorded on the stream's units (unfilled seqs)", f"{r['ingest_gaps']} ({r['ingest_gaps_unfilled']})"),
        ("side units: event rows / alert rows / alerts published / rejects / gaps (want)",
         " / ".join(f"{side['got'][k]} ({side['want'][k]})"
                    for k in ("event_rows", "alert_rows", "alerts_published", "rejected_rows", "gap_rows"))),
        ("drain: last commit after the stream ended", f"{d['last_commit_after_stream_end_s']} s"),
        ("publish→commit lag p50 / p99 / max", f"{lag['p50']} / {lag['p99']} / {lag['max']} s"),
        ("ingestor incarnations", r["ingestor"]["incarnations"]),
        ("CPU s: ingestors / postgres / broker", f"{cpu['ingestors']} / {cpu['postgres']} / {cpu['broker']}"),
        ("messages the ingestors committed / of them redeliveries absorbed by the unique key",
         f"{r['ingestor']['totals']['messages']:,} / {r['ingestor']['totals']['duplicates']:,}"),
        ("batch attempts that failed on the database (retried)", r["ingestor"]["totals"]["db_errors"]),
        ("result", "PASS" if r["passed"] else f"FAIL {r['failures']}"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")
    bp = r.get("broker_probe") or {}
    if bp:
        print()
        print("broker probe (persistent session, restart, publish before the subscriber is back):")
        for k, v in bp.items():
            print(f"  {k:6} {v['filter']:22} PUBACK '{v['puback']}', delivered after reconnect: {v['delivered']}")
    if r["lost"]:
        print()
        print(f"lost messages ({r['lost']:,}, {r['units_with_loss']} units), by the fault before their publish time:")
        for cause, n in r["lost_explained"]["by_cause"].items():
            print(f"  {n:6,}  {cause}")
        print("  lost seqs of the first units:")
        for unit, seqs in r["lost_explained"]["seq_ranges_sample"].items():
            print(f"    {unit}: {seqs}")
    if r["rejected"]:
        print()
        print("rejected (first 5):")
        for x in r["rejected_sample"][:5]:
            print(f"  {x}")
    print()
