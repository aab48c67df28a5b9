"""publish -> commit latency with a live ingestor at a paced offered rate.

A Python feeder writes into one `mosquitto_pub -l` pipe per unit. A message's newest sample
is stamped with the moment the message is handed to the publisher; a batched message's other
samples are 100 ms apart before it (what a terminal buffering 10 Hz samples sends). The
latency of a message is the commit timestamp of its transaction (track_commit_timestamp) minus
that newest ts, so a batch's own buffering time is not counted. `ts` has millisecond
precision: the latency is overstated by less than 1 ms.
"""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psutil
import psycopg

from bench.common import CpuMeter, UnitSim, clear_session, log, mosquitto_pub_cmd, rejected
from bench.ingestkit.cpu import BackendCpu, backend_delta, loadavg
from liftwatch.contract import encode

STEP = timedelta(milliseconds=100)
QUANTILES = ("p50", "p90", "p99", "p999")


def run_latency(bench, rate: int, samples: int, seconds: float) -> dict:
    """One live run at `rate` messages/s of `samples` samples each; returns the figures."""
    key = f"latency{samples}"
    db = f"bench_{key}"
    dsn = bench.fresh_db(db)
    cid = f"bench-{key}"
    # 20 units at 5 k msg/s are 250 msg/s each: the default per-unit limit would rightly refuse that
    proc, logpath = bench.start_ingestor(dsn, cid, key, raise_rate_limit=True)
    bench.wait_log(proc, logpath, "connected to broker")
    time.sleep(1.0)
    units = bench.units
    log(f"{key}: publishing {rate:,} msg/s x {samples} samples for {seconds:.0f} s "
        f"({len(units)} mosquitto_pub -l, QoS 1) into the live ingestor")
    pubs = {u: bench.procs.start(mosquitto_pub_cmd(bench.port, u, f"pub-{key}-{u}"), stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, bufsize=0)
            for u in units}
    sims = {u: UnitSim(u, 7) for u in units}
    seqs = dict.fromkeys(units, 0)
    ing = psutil.Process(proc.pid)
    backends = BackendCpu(bench.servers.postmaster_pid(), db, set())
    b0 = backends.sample()
    cpu_ing0 = sum(ing.cpu_times()[:2])
    cpu0, load0 = bench.meter.snapshot(), loadavg()
    t0 = time.perf_counter()
    sent = k = 0
    while (el := time.perf_counter() - t0) < seconds:
        due = int(el * rate)
        if due > sent:
            now = datetime.now(UTC)  # the newest sample's ts is the moment it is handed to the publisher
            lines: dict[str, list[bytes]] = defaultdict(list)
            for _ in range(due - sent):
                u = units[k % len(units)]
                k += 1
                batch = [sims[u].step(now - STEP * (samples - 1 - i), seqs[u] + i) for i in range(samples)]
                seqs[u] += samples
                lines[u].append(encode(batch if samples > 1 else batch[0]) + b"\n")
            sent = due
            for u, ls in lines.items():
                pubs[u].stdin.write(b"".join(ls))
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    for p in pubs.values():
        p.stdin.close()
    for p in pubs.values():
        p.wait(60)
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] < sent * samples:
            if bad := rejected(conn):
                raise RuntimeError(f"the ingestor rejected benchmark messages: {bad}")
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{key}: rows missing; log tail:\n{logpath.read_text()[-3000:]}")
            time.sleep(0.25)
        cpu_ing = sum(ing.cpu_times()[:2]) - cpu_ing0
        backend_s, _ = backend_delta(b0, backends.stop())  # before this connection's queries below
        cpu1 = bench.meter.snapshot()
        # one figure per message: its newest sample (the last seq of each message)
        q = """SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99, 0.999]) WITHIN GROUP (ORDER BY lat),
                      max(lat), avg(lat), count(*)
               FROM (SELECT (extract(epoch FROM {expr} - time) * 1000)::float8 AS lat FROM telemetry
                     WHERE seq %% %s = %s) t"""
        commit = conn.execute(q.format(expr="pg_xact_commit_timestamp(xmin)"), (samples, samples - 1)).fetchone()
        recv = conn.execute(q.format(expr="received_at"), (samples, samples - 1)).fetchone()
        txns, = conn.execute("SELECT count(DISTINCT xmin::text) FROM telemetry").fetchone()
    bench.procs.stop(proc)
    clear_session(bench.port, cid)
    bench.servers.drop_db(db)
    if commit[3] != sent:
        raise RuntimeError(f"{key}: {commit[3]} messages measured, {sent} sent")
    result = {
        "samples_per_message": samples, "offered_msg_s": round(sent / elapsed), "messages": sent,
        "rows": sent * samples, "seconds": round(elapsed, 2),
        "commit_ms": _quantiles(commit), "received_at_ms": _quantiles(recv),
        "commits": txns, "mean_batch": round(sent / txns, 1),
        "ingestor_cpu_pct": round(100 * cpu_ing / elapsed, 1),
        # under a trickle batches are small (the 50 ms window): CPU per row is what each commit costs
        "cpu_ms_per_1000_rows": round(1e6 * (cpu_ing + backend_s) / (sent * samples), 2),
        "backend_s": round(backend_s, 2),
        "cpu_s": CpuMeter.delta(cpu0, cpu1, extra=cpu_ing) | {"ingestor_process": round(cpu_ing, 2)},
        "load": {"before": load0, "after": loadavg()},
    }
    c = result["commit_ms"]
    log(f"{key}: {sent:,} msgs at {result['offered_msg_s']:,} msg/s: p50 {c['p50']} ms, p99 {c['p99']} ms, "
        f"max {c['max']} ms; {txns} commits; ingestor CPU {result['ingestor_cpu_pct']} %, "
        f"{result['cpu_ms_per_1000_rows']} ms per 1,000 rows with its backends")
    bench.latency[key] = result
    return result


def _quantiles(row: tuple) -> dict[str, float]:
    return dict(zip(QUANTILES, [round(v, 1) for v in row[0]], strict=True)) | {"max": round(row[1], 1),
                                                                              "mean": round(row[2], 1)}
