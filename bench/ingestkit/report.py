"""The result table, the targets and the JSON of bench/ingest.py."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict
from datetime import datetime

import psutil
import psycopg

from bench.ingestkit.runner import Bench


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "—"


def baseline_key(key: str) -> str | None:
    """The limit pipe run with the same mode and samples per message."""
    if key.startswith("livelift"):
        return "livelimit" + key[len("livelift"):]
    if key.startswith("lift"):
        return "limit" + key[len("lift"):]
    if key == "backlog":
        return "limit1"
    return None


def table(bench: Bench) -> list[str]:
    runs = {key: bench.median(key) for key in bench.runs}
    naive = runs.get("naive")
    hdr = (f"{'contender':<40} {'rows':>9} {'s':>7} {'rows/s':>8} {'×limit':>7} {'×naive':>7} "
           f"{'CPU ms/1k rows':>14} {'×limit':>7} {'1st commit':>10} {'peak RSS':>9}  each round: rows/s | CPU ms/1k")
    lines = [hdr, "-" * len(hdr)]
    for key, r in runs.items():
        base = bench.median(b) if (b := baseline_key(key)) else None
        cpu, base_cpu = bench.median_cpu(key), bench.median_cpu(b) if b else None
        rs = bench.runs[key]
        rounds = (" ".join(f"{x.rows_s:,.0f}" for x in rs) + " | " + " ".join(f"{x.cpu_ms_per_1000:.1f}" for x in rs)
                  if len(rs) > 1 else "")
        lines.append(
            f"{r.contender:<40} {r.rows:>9,} {r.seconds:>7.2f} {r.rows_s:>8,.0f} "
            f"{_ratio(r.rows_s, base.rows_s if base else None):>7} "
            f"{_ratio(r.rows_s, naive.rows_s if naive and r.mode == 'backlog' else None):>7} "
            f"{cpu:>14.1f} {_ratio(cpu, base_cpu):>7} {r.first_commit_s:>9.2f}s "
            f"{(f'{r.peak_rss_mb:.0f} MB' if r.peak_rss_mb else '—'):>9}  {rounds}")
    return lines


def targets(bench: Bench) -> list[dict]:
    s = bench.sizes
    n = s.samples
    out: list[dict] = []

    def add(issue: int, name: str, value: float | None, op: str, limit: float, unit: str = "") -> None:
        ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append({"issue": issue, "target": name, "value": value, "op": op, "limit": limit, "unit": unit,
                    "met": ok})

    def rows_ratio(a: str, b: str) -> float | None:
        ra, rb = bench.median(a), bench.median(b)
        return ra.rows_s / rb.rows_s if ra and rb else None

    def cpu_ratio(a: str, b: str) -> float | None:
        ca, cb = bench.median_cpu(a), bench.median_cpu(b)
        return ca / cb if ca and cb else None

    def p99(key: str) -> float | None:
        lat = bench.latency.get(key)
        return lat["commit_ms"]["p99"] if lat else None

    add(18, f"CPU per stored row vs limit pipe, live, {n} samples/msg", cpu_ratio(f"livelift{n}", f"livelimit{n}"),
        "<=", 1.0, "×")
    add(18, f"CPU per stored row vs limit pipe, backlog, {n} samples/msg", cpu_ratio(f"lift{n}", f"limit{n}"),
        "<=", 1.0, "×")
    add(18, f"rows/s vs limit pipe, live, {n} samples/msg", rows_ratio(f"livelift{n}", f"livelimit{n}"), ">=", 0.9, "×")
    add(18, "rows/s vs limit pipe, live, 1 sample/msg", rows_ratio("livelift1", "livelimit1"), ">=", 0.85, "×")
    add(18, f"publish->commit p99 at {s.latency_rate:,} msg/s x 1", p99("latency1"), "<=", 250, " ms")
    add(18, f"publish->commit p99 at {s.latency_batched_rate:,} msg/s x {n}", p99(f"latency{n}"), "<=", 250, " ms")
    add(3, "msg/s vs naive, backlog, 1 sample/msg", rows_ratio("lift1", "naive"), ">=", 10, "×")
    add(3, "msg/s vs limit pipe, backlog, 1 sample/msg", rows_ratio("lift1", "limit1"), ">=", 0.7, "×")
    add(3, f"rows/s vs limit pipe, backlog, {n} samples/msg", rows_ratio(f"lift{n}", f"limit{n}"), ">=", 0.7, "×")
    bl = bench.median("backlog")
    add(3, f"ingestor peak RSS draining {s.backlog:,} backlog", bl.peak_rss_mb if bl else None, "<=", 200, " MB")
    return out


def report(bench: Bench, quick: bool, started: datetime, load_start: list[float], load_end: list[float]) -> dict:
    s = bench.sizes
    lines = table(bench)
    lines.append("")
    if s.repeat > 1:
        lines.append(f"rows/s: the median of {s.repeat} alternating rounds; CPU: the median of the rounds' CPU "
                     "per 1,000 stored rows (consumer processes + their PostgreSQL backends).")
    lines.append("backlog: timed from the consumer's start (start-up included) to the last commit; live: from the "
                 f"{s.units} publishers' start to the last commit.")
    noisy = [f"{r.key} ({r.machine_cpu_s['other']:.1f} CPU-s in {r.seconds:.0f} s)"
             for rs in bench.runs.values() for r in rs if r.machine_cpu_s.get("other", 0) > 0.1 * r.seconds]
    if noisy:
        lines.append(f"NOTE: CPU of other work on the machine during: {', '.join(noisy)}.")
    lines.append(f"load average at the start {load_start}, at the end {load_end}.")
    for key, lat in bench.latency.items():
        c, rv = lat["commit_ms"], lat["received_at_ms"]
        lines += ["", f"{key}: live ingestor, {lat['offered_msg_s']:,} msg/s x {lat['samples_per_message']} offered "
                      f"for {lat['seconds']:.0f} s ({lat['messages']:,} msgs, {lat['commits']} commits, mean batch "
                      f"{lat['mean_batch']} msgs, ingestor CPU {lat['ingestor_cpu_pct']} %, "
                      f"{lat['cpu_ms_per_1000_rows']} CPU ms per 1,000 rows with its backends):",
                  f"  publish -> commit      p50 {c['p50']:>7.1f} ms  p90 {c['p90']:>7.1f} ms  p99 {c['p99']:>7.1f} ms  "
                  f"max {c['max']:>7.1f} ms",
                  f"  publish -> txn start   p50 {rv['p50']:>7.1f} ms  p90 {rv['p90']:>7.1f} ms  p99 {rv['p99']:>7.1f} ms  "
                  f"max {rv['max']:>7.1f} ms   (received_at = now() of the batch)"]
    bl = bench.median("backlog")
    if bl:
        lines += ["", f"ingestor peak RSS while a {bl.messages:,}-message backlog drains: {bl.peak_rss_mb:.0f} MB "
                      f"(drained at {bl.msg_s:,.0f} msg/s)"]
    tg = targets(bench)
    lines += ["", "targets" + ("   (QUICK RUN: sizes below the spec, indicative only)" if quick else "")]
    for t in tg:
        v = "not run" if t["value"] is None else f"{t['value']:.2f}{t['unit']}"
        verdict = "—" if t["met"] is None else ("PASS" if t["met"] else "MISS")
        lines.append(f"  {verdict:<5} #{t['issue']:<3} {t['target']:<58} {v:>10}  (target {t['op']} "
                     f"{t['limit']}{t['unit']})")
    print("\n".join(lines), flush=True)
    meta = {
        "started": started.isoformat(timespec="seconds"), "quick": quick, "sizes": asdict(s),
        "load": {"start": load_start, "end": load_end},
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(bench),
    }
    return {
        "meta": meta,
        "medians": {key: {"rows_s": round(r.rows_s), "msg_s": round(r.msg_s), "seconds": round(r.seconds, 3),
                          "cpu_ms_per_1000_rows": bench.median_cpu(key)}
                    for key in bench.runs if (r := bench.median(key))},
        "runs": [asdict(r) | {"msg_s": round(r.msg_s), "rows_s": round(r.rows_s),
                              "rss_series": getattr(r, "rss_series", None)}
                 for rs in bench.runs.values() for r in rs],
        "latency": bench.latency, "targets": tg, "table": lines,
    }


def _versions(bench: Bench) -> dict:
    out = {}
    try:
        out["mosquitto"] = subprocess.run(["mosquitto_pub", "--help"], capture_output=True, text=True
                                          ).stdout.splitlines()[1].strip()
    except (OSError, IndexError):
        pass
    if bench.servers is not None:
        try:
            with psycopg.connect(bench.servers.pg.dsn(), autocommit=True) as c:
                out["postgres"] = c.execute("SHOW server_version").fetchone()[0]
                row = c.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
                                ).fetchone()
                out["timescaledb"] = row[0] if row else None
        except psycopg.Error:
            pass
    return out
