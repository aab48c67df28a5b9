"""Ingest benchmark: the Liftwatch ingestor against a naive subscriber and a C "limit pipe".

Same broker, same database server, same message files, one run; prints a table with ratios
(stdout) and writes the numbers to bench/results/ingest-<timestamp>.json.

Contenders (each writes into its own fresh, migrated database on the one cluster):
  naive        a paho subscriber doing one INSERT + commit per message (bench/naive_subscriber.py)
  limit        mosquitto_sub -q 1 | psql \\copy into a jsonb staging table, then one typed
               INSERT ... SELECT ... ON CONFLICT DO NOTHING: C clients doing the same storage
               work without validation or bookkeeping (1 and 10 samples per message)
  liftwatch    `python -m liftwatch ingest`, one process (1 and 10 samples per message)

Method (backlog drain, so the publisher is never the bottleneck): each consumer first connects
once to create its persistent session and subscription, then disconnects; all messages are
published into the broker's queue for that session by one `mosquitto_pub -l -q 1` per unit;
then the consumer is started and timed from its start until the commit of the last row
(commit times come from track_commit_timestamp, read after the run). Start-up is included.
The throughput contenders run in 3 interleaved rounds (--repeat) and the table shows medians:
on a small shared machine single runs vary by 10-20 %.

The ingestor runs with its per-unit rate limit raised (LIFTWATCH_INGEST_UNIT_RATE): 20 units at
5 k msg/s are 250 msg/s each, which the default limit would rightly reject. Any rejected
message aborts the benchmark: every message here is valid.

Also measured: publish->commit latency with a live ingestor at a paced offered rate (default
5 k msg/s; latency = commit timestamp of the row's transaction - the sample's ts, which the
publisher stamps when it hands the message to mosquitto_pub), and the ingestor's peak RSS
while a 500 k-message backlog drains.

Needs: mosquitto, mosquitto_pub, mosquitto_sub, psql, PostgreSQL 15 with TimescaleDB. Runs as
root or not (the throwaway cluster drops to the postgres user). Takes several minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
# run as `python bench/ingest.py`, sys.path[0] is bench/, where this file would shadow the
# `ingest` package; put the repository root there instead
if sys.path and Path(sys.path[0] or ".").resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)
elif str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench.common import (  # noqa: E402
    PYTHON,
    REPO,
    CpuMeter,
    Dataset,
    Processes,
    Servers,
    UnitSim,
    all_last_rows_present,
    clear_session,
    commit_span,
    env_for_ingest,
    log,
    mosquitto_pub_cmd,
    need,
    now_utc,
    publish_backlog,
    rejected,
    unit_ids,
    write_dataset,
)
from liftwatch.contract import encode  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
PHASES = ("naive", "limit1", "lift1", "limit10", "lift10", "latency", "backlog")

TEL_CAST = """(d->>'ts')::timestamptz, split_part(topic, '/', 2), (d->>'seq')::int8, d->>'mode',
  (d->>'floor')::int2, d->>'direction', (d->>'moving')::bool, d->>'door', (d->>'door_zone')::bool,
  (d->>'passengers')::bool, (d->>'speed_mps')::float4, (d->>'load_pct')::float4,
  (d->>'vibration_mg')::float4, (d->>'motor_temp_c')::float4, (d->>'leveling_mm')::float4,
  (d->>'door_close_ms')::float4, (d->>'run_count')::int8, (d->>'run_hours')::float8"""
TEL_COLS = ("time, unit_id, seq, mode, floor, direction, moving, door, door_zone, passengers, speed_mps, "
            "load_pct, vibration_mg, motor_temp_c, leveling_mm, door_close_ms, run_count, run_hours")


@dataclass
class Sizes:
    units: int = 20
    messages: int = 100_000  # per throughput contender (1 and 10 samples per message)
    naive_messages: int = 20_000  # the naive baseline is slow; its rate does not depend on N
    backlog: int = 500_000  # RSS run
    samples: int = 10
    latency_rate: int = 5_000
    latency_seconds: float = 20.0
    repeat: int = 3  # rounds of the throughput contenders; the table shows each one's median

    @classmethod
    def quick(cls) -> Sizes:
        return cls(messages=20_000, naive_messages=4_000, backlog=50_000, latency_seconds=8.0, repeat=1)


@dataclass
class Run:
    """One timed drain."""

    key: str
    contender: str
    samples_per_message: int
    messages: int
    rows: int
    seconds: float  # consumer start -> last commit
    first_commit_s: float  # consumer start -> first commit (start-up + first batch)
    transactions: int
    steady_msg_s: float | None  # messages after the first commit / (last - first commit)
    publish_msg_s: float  # how fast the C publishers filled the backlog (not part of the timing)
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    notes: str = ""

    @property
    def msg_s(self) -> float:
        return self.messages / self.seconds

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds


class Bench:
    def __init__(self, sizes: Sizes, root: Path) -> None:
        self.sizes = sizes
        self.root = root
        self.procs = Processes()
        self.servers: Servers | None = None
        self.meter: CpuMeter | None = None
        self.units = unit_ids(sizes.units)
        self.runs: dict[str, list[Run]] = defaultdict(list)
        self.latency: dict | None = None
        self.profile_dir: Path | None = None

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.servers.mqtt_port

    def fresh_db(self, name: str) -> str:
        self.servers.drop_db(name)
        return self.servers.create_db(name, self.units)

    def start_ingestor(self, dsn: str, client_id: str, group: str, logname: str) -> tuple[subprocess.Popen, Path]:
        self._started = getattr(self, "_started", 0) + 1
        logpath = self.root / f"{logname}-{self._started}.log"  # a fresh file: wait_log reads it all
        with logpath.open("wb") as fh:
            proc = self.procs.start(
                [PYTHON, "-m", "liftwatch", "ingest", "--client-id", client_id, "--group", group],
                cwd=REPO, env=env_for_ingest(dsn, self.servers.mqtt.url), stdout=fh, stderr=subprocess.STDOUT)
        if self.profile_dir is not None and not logname.endswith("-prime"):
            # py-spy attaches to the running ingestor and writes when it exits (folded stacks)
            out = self.profile_dir / f"{logname}-{self._started}.folded"
            self.procs.start([str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(proc.pid), "--gil",
                              "--threads", "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, logpath

    @staticmethod
    def wait_log(proc: subprocess.Popen, logpath: Path, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in logpath.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"ingestor did not log {text!r}; log tail:\n{_tail(logpath)}")

    def wait_complete(self, conn: psycopg.Connection, ds: Dataset, proc: subprocess.Popen | None,
                      timeout: float, logpath: Path | None = None) -> None:
        """Until every row of `ds` is stored: first the cheap last-row check, then a full count."""
        pending = dict(ds.last)
        deadline = time.monotonic() + timeout
        last_reject_check = time.monotonic()
        while not all_last_rows_present(conn, pending):
            if time.monotonic() - last_reject_check > 2:
                last_reject_check = time.monotonic()
                if bad := rejected(conn):
                    raise RuntimeError(f"the ingestor rejected benchmark messages: {bad}")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"consumer exited with {proc.returncode} before the last rows were stored"
                                   + (f"; log tail:\n{_tail(logpath)}" if logpath else ""))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} units still miss their last row after {timeout:.0f} s")
            time.sleep(0.1)
        while (n := conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]) < ds.rows:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {n} of {ds.rows} rows after {timeout:.0f} s")
            time.sleep(0.5)
        if n != ds.rows:
            raise RuntimeError(f"{n} rows stored, expected {ds.rows}")

    def _finish(self, key: str, contender: str, ds: Dataset, dsn: str, t0: float, cpu0, pub_rate: float,
                peak_rss: float | None = None, notes: str = "") -> Run:
        cpu1 = self.meter.snapshot()
        with psycopg.connect(dsn, autocommit=True) as conn:
            c = commit_span(conn)
            bad = rejected(conn)
        if bad:
            raise RuntimeError(f"{key}: messages were rejected: {bad}")
        if c.rows != ds.rows:
            raise RuntimeError(f"{key}: {c.rows} rows, expected {ds.rows}")
        steady = None
        if c.transactions > 1 and c.last > c.first:
            steady = (ds.messages - ds.messages * c.rows_in_first / c.rows) / (c.last - c.first)
        run = Run(key, contender, ds.samples_per_message, ds.messages, ds.rows, c.last - t0, c.first - t0,
                  c.transactions, steady, pub_rate, CpuMeter.delta(cpu0, cpu1), peak_rss, notes)
        self.runs[key].append(run)
        log(f"{key}: {run.messages} msgs / {run.rows} rows in {run.seconds:.2f} s = {run.msg_s:,.0f} msg/s, "
            f"{run.rows_s:,.0f} rows/s ({run.transactions} commits, first after {run.first_commit_s:.2f} s)")
        return run

    # --- contenders -------------------------------------------------------------------------

    def run_liftwatch(self, key: str, ds: Dataset, contender: str) -> Run:
        db = f"bench_{key}"
        dsn = self.fresh_db(db)
        cid, group = f"bench-{key}", f"bench{key}"
        log(f"{key}: creating the ingestor's session ({cid}, $share/{group}/...)")
        proc, logpath = self.start_ingestor(dsn, cid, group, f"{key}-prime")
        self.wait_log(proc, logpath, "connected to broker")
        time.sleep(0.5)  # the SUBSCRIBE went out in on_connect; let the broker take it
        if (rc := self.procs.stop(proc)) != 0:
            raise RuntimeError(f"ingestor did not stop cleanly (exit {rc}):\n{_tail(logpath)}")
        log(f"{key}: publishing {ds.messages:,} messages ({ds.samples_per_message} samples each) into the backlog")
        pub_rate = publish_backlog(self.procs, self.port, ds, key)
        log(f"{key}: published at {pub_rate:,.0f} msg/s; starting the ingestor")
        with psycopg.connect(dsn, autocommit=True) as conn:
            cpu0 = self.meter.snapshot()
            t0 = time.time()
            proc, logpath = self.start_ingestor(dsn, cid, group, key)
            rss = RssSampler(proc.pid)
            rss.start()
            try:
                self.wait_complete(conn, ds, proc, timeout=max(180.0, ds.rows / 2000), logpath=logpath)
            finally:
                rss.stop()
        self.procs.stop(proc)
        run = self._finish(key, contender, ds, dsn, t0, cpu0, pub_rate, peak_rss=rss.peak_mb,
                           notes=_ingest_summary(logpath))
        run.cpu_s["ingestor_process"] = round(rss.cpu_s, 2)
        run.rss_series = rss.series  # type: ignore[attr-defined]
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        return run

    def run_naive(self, ds: Dataset) -> Run:
        key = "naive"
        db = f"bench_{key}"
        dsn = self.fresh_db(db)
        cid = "bench-naive"
        cmd = [PYTHON, str(REPO / "bench" / "naive_subscriber.py"), "--port", str(self.port),
               "--client-id", cid, "--dsn", dsn]
        log("naive: creating the subscriber's session")
        p = self.procs.start([*cmd, "--subscribe-only"], cwd=REPO)
        if p.wait(60) != 0:
            raise RuntimeError("naive subscriber failed to subscribe")
        log(f"naive: publishing {ds.messages:,} messages into the backlog")
        pub_rate = publish_backlog(self.procs, self.port, ds, key)
        log(f"naive: published at {pub_rate:,.0f} msg/s; starting the subscriber")
        cpu0 = self.meter.snapshot()
        t0 = time.time()
        p = self.procs.start([*cmd, "--count", str(ds.messages)], cwd=REPO, stderr=subprocess.PIPE)
        _, err = p.communicate(timeout=max(600.0, ds.messages / 200))
        if p.returncode != 0:
            raise RuntimeError(f"naive subscriber failed: {err.decode(errors='replace')[-2000:]}")
        run = self._finish(key, "naive, 1 sample/msg", ds, dsn, t0, cpu0, pub_rate)
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        return run

    def run_limit(self, key: str, ds: Dataset) -> Run:
        db = f"bench_{key}"
        dsn = self.fresh_db(db)
        cid = f"bench-{key}"
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-c", "-i", cid,
               "-t", "lift/+/telemetry"]
        subprocess.run([*sub, "-E"], check=True, capture_output=True, timeout=30)
        log(f"{key}: publishing {ds.messages:,} messages ({ds.samples_per_message} samples each) into the backlog")
        pub_rate = publish_backlog(self.procs, self.port, ds, key)
        log(f"{key}: published at {pub_rate:,.0f} msg/s; starting mosquitto_sub | psql")
        source = "stage, jsonb_array_elements(doc) d" if ds.samples_per_message > 1 else "stage, LATERAL (SELECT doc) s(d)"
        insert = (f"INSERT INTO telemetry ({TEL_COLS}) SELECT {TEL_CAST} FROM {source} "  # noqa: S608 - constants
                  "ON CONFLICT DO NOTHING")
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                "-c", "CREATE TEMP TABLE stage (topic text, doc jsonb)",
                "-c", "\\copy stage (topic, doc) from pstdin",
                "-c", insert]
        cpu0 = self.meter.snapshot()
        t0 = time.time()
        ms = self.procs.start([*sub, "-C", str(ds.messages), "-F", "%t\\t%p"], stdout=subprocess.PIPE)
        pq = self.procs.start(psql, stdin=ms.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ms.stdout.close()
        out, err = pq.communicate(timeout=max(600.0, ds.rows / 1000))
        ms.wait(30)
        if pq.returncode != 0 or ms.returncode != 0:
            raise RuntimeError(f"limit pipe failed (mosquitto_sub {ms.returncode}, psql {pq.returncode}): "
                               f"{err.decode(errors='replace')[-2000:]}")
        run = self._finish(key, f"limit pipe, {ds.samples_per_message} sample/msg",
                           ds, dsn, t0, cpu0, pub_rate)
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        return run

    # --- latency ----------------------------------------------------------------------------

    def run_latency(self) -> dict:
        s = self.sizes
        db = "bench_latency"
        dsn = self.fresh_db(db)
        cid, group = "bench-latency", "benchlatency"
        proc, logpath = self.start_ingestor(dsn, cid, group, "latency")
        self.wait_log(proc, logpath, "connected to broker")
        time.sleep(1.0)
        log(f"latency: publishing at {s.latency_rate:,} msg/s for {s.latency_seconds:.0f} s "
            f"({len(self.units)} mosquitto_pub -l, QoS 1) into the live ingestor")
        pubs = {u: self.procs.start(mosquitto_pub_cmd(self.port, u, f"pub-lat-{u}"), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, bufsize=0)
                for u in self.units}
        sims = {u: UnitSim(u, 7) for u in self.units}
        seqs = dict.fromkeys(self.units, 0)
        ing = psutil.Process(proc.pid)
        cpu_ing0 = sum(ing.cpu_times()[:2])
        cpu0 = self.meter.snapshot()
        t0 = time.perf_counter()
        sent = k = 0
        while (el := time.perf_counter() - t0) < s.latency_seconds:
            due = int(el * s.latency_rate)
            if due > sent:
                now = datetime.now(UTC)  # the sample's ts is the moment it is handed to the publisher
                lines: dict[str, list[bytes]] = defaultdict(list)
                for _ in range(due - sent):
                    u = self.units[k % len(self.units)]
                    k += 1
                    lines[u].append(encode(sims[u].step(now, seqs[u])) + b"\n")
                    seqs[u] += 1
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
            while conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] < sent:
                if bad := rejected(conn):
                    raise RuntimeError(f"the ingestor rejected benchmark messages: {bad}")
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"latency run: rows missing; log tail:\n{_tail(logpath)}")
                time.sleep(0.25)
            cpu_ing = sum(ing.cpu_times()[:2]) - cpu_ing0
            cpu1 = self.meter.snapshot()
            q = """SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99, 0.999]) WITHIN GROUP (ORDER BY lat),
                          max(lat), avg(lat), count(*)
                   FROM (SELECT (extract(epoch FROM {expr} - time) * 1000)::float8 AS lat FROM telemetry) t"""
            commit = conn.execute(q.format(expr="pg_xact_commit_timestamp(xmin)")).fetchone()
            recv = conn.execute(q.format(expr="received_at")).fetchone()
            txns, = conn.execute("SELECT count(DISTINCT xmin::text) FROM telemetry").fetchone()
        self.procs.stop(proc)
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        result = {
            "offered_msg_s": round(sent / elapsed), "messages": sent, "seconds": round(elapsed, 2),
            "commit_ms": dict(zip(("p50", "p90", "p99", "p999"), [round(v, 1) for v in commit[0]], strict=True))
            | {"max": round(commit[1], 1), "mean": round(commit[2], 1)},
            "received_at_ms": dict(zip(("p50", "p90", "p99", "p999"), [round(v, 1) for v in recv[0]], strict=True))
            | {"max": round(recv[1], 1), "mean": round(recv[2], 1)},
            "commits": txns, "mean_batch": round(sent / txns, 1),
            "ingestor_cpu_pct": round(100 * cpu_ing / elapsed, 1),
            "cpu_s": CpuMeter.delta(cpu0, cpu1, extra=cpu_ing) | {"ingestor_process": round(cpu_ing, 2)},
        }
        self.latency = result
        c = result["commit_ms"]
        log(f"latency: {sent:,} msgs at {result['offered_msg_s']:,} msg/s: p50 {c['p50']} ms, p99 {c['p99']} ms, "
            f"max {c['max']} ms; {txns} commits; ingestor CPU {result['ingestor_cpu_pct']} %")
        return result

    # --- the whole run ------------------------------------------------------------------------

    def run(self, phases: list[str]) -> None:
        s = self.sizes
        per_unit = -(-s.messages // s.units)
        per_unit_big = max(per_unit, -(-s.backlog // s.units))
        log(f"writing message files for {s.units} units under {self.root}")
        end = now_utc()
        one = write_dataset(self.root, "s1", self.units, per_unit_big, 1, end=end)
        main1 = one.subset(per_unit, self.root)
        naive1 = one.subset(-(-s.naive_messages // s.units), self.root)
        backlog = one.subset(-(-s.backlog // s.units), self.root)
        ten = write_dataset(self.root, f"s{s.samples}", self.units, per_unit, s.samples, end=end) \
            if {"limit10", "lift10"} & set(phases) else None
        log("starting the throwaway PostgreSQL+TimescaleDB cluster and Mosquitto broker")
        self.servers = Servers.start()
        self.meter = CpuMeter(self.servers)
        throughput = [p for p in phases if p not in ("latency", "backlog")]
        for rep in range(s.repeat):  # interleaved, so drift on the machine spreads over all contenders
            if s.repeat > 1 and throughput:
                log(f"--- throughput round {rep + 1} of {s.repeat}")
            for phase in throughput:
                if phase == "naive":
                    self.run_naive(naive1)
                elif phase == "limit1":
                    self.run_limit("limit1", main1)
                elif phase == "lift1":
                    self.run_liftwatch("lift1", main1, "Liftwatch, 1 sample/msg")
                elif phase == "limit10":
                    self.run_limit(f"limit{s.samples}", ten)
                elif phase == "lift10":
                    self.run_liftwatch(f"lift{s.samples}", ten, f"Liftwatch, {s.samples} samples/msg")
        if "latency" in phases:
            self.run_latency()
        if "backlog" in phases:
            self.run_liftwatch("backlog", backlog, f"Liftwatch, {backlog.messages // 1000} k backlog (RSS run)")

    def median(self, key: str) -> Run | None:
        """The run with the median rows/s of a contender (the lower middle one for an even count)."""
        runs = sorted(self.runs.get(key, []), key=lambda r: r.rows_s)
        return runs[(len(runs) - 1) // 2] if runs else None

    def close(self) -> None:
        self.procs.kill_all()
        if self.servers is not None:
            self.servers.destroy()


class RssSampler(threading.Thread):
    """Peak RSS (process + children) and CPU of one process, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.cpu_s = 0.0
        self.series: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(0.1)
        self.sample()

    def sample(self) -> None:
        try:
            rss = self.proc.memory_info().rss
            for c in self.proc.children(recursive=True):
                rss += c.memory_info().rss
            self.cpu_s = sum(self.proc.cpu_times()[:2])
        except psutil.Error:
            return
        self.peak = max(self.peak, rss)
        self.series.append((round(time.monotonic() - self._t0, 2), round(rss / 2**20, 1)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def _tail(path: Path | None, n: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def _ingest_summary(logpath: Path) -> str:
    """Warnings/errors the ingestor logged (there should be none)."""
    bad = [ln for ln in logpath.read_text(errors="replace").splitlines() if " WARNING " in ln or " ERROR " in ln]
    return f"{len(bad)} warning/error log lines, first: {bad[0][:160]}" if bad else ""


# --- report -----------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "—"


def report(bench: Bench, quick: bool, started: datetime) -> dict:
    s = bench.sizes
    runs = {key: bench.median(key) for key in bench.runs}
    naive, lim1, lim10 = runs.get("naive"), runs.get("limit1"), runs.get(f"limit{s.samples}")
    lines = []
    hdr = (f"{'contender':<34} {'messages':>9} {'rows':>9} {'s':>7} {'msg/s':>8} {'rows/s':>8} "
           f"{'×naive':>7} {'×limit':>7} {'1st commit':>10} {'steady msg/s':>12} {'peak RSS':>9}  rows/s of each round")
    lines += [hdr, "-" * len(hdr)]
    for key, r in runs.items():
        lim = lim1 if r.samples_per_message == 1 else lim10
        rounds = " ".join(f"{x.rows_s:,.0f}" for x in bench.runs[key]) if len(bench.runs[key]) > 1 else ""
        lines.append(
            f"{r.contender:<34} {r.messages:>9,} {r.rows:>9,} {r.seconds:>7.2f} {r.msg_s:>8,.0f} {r.rows_s:>8,.0f} "
            f"{_ratio(r.rows_s, naive.rows_s if naive else None):>7} "
            f"{_ratio(r.rows_s, lim.rows_s if lim else None):>7} {r.first_commit_s:>9.2f}s "
            f"{(f'{r.steady_msg_s:,.0f}' if r.steady_msg_s else '—'):>12} "
            f"{(f'{r.peak_rss_mb:.0f} MB' if r.peak_rss_mb else '—'):>9}  {rounds}")
    lines.append("")
    if s.repeat > 1:
        lines.append(f"Each throughput row is the median of {s.repeat} interleaved rounds (by rows/s).")
    lines.append("×naive and ×limit compare rows/s (= msg/s at 1 sample/msg); ×limit is against the limit pipe "
                 "with the same samples per message.")
    lines.append("seconds = consumer process start -> commit of the last row (start-up included); "
                 "'1st commit' = start -> first commit;")
    lines.append("'steady' = rate between the first and the last commit. CPU seconds per run are in the JSON.")
    noisy = [f"{r.key} ({r.cpu_s['other']:.1f} CPU-s in {r.seconds:.0f} s)" for rs in bench.runs.values() for r in rs
             if r.cpu_s.get("other", 0) > 0.1 * r.seconds]
    if noisy:
        lines.append(f"NOTE: CPU not attributed to the benchmark processes (other work on the machine, or kernel "
                     f"I/O threads) during: {', '.join(noisy)}; treat these runs with care.")
    lat = bench.latency
    if lat:
        c, rv = lat["commit_ms"], lat["received_at_ms"]
        lines += ["", f"latency, live ingestor at {lat['offered_msg_s']:,} msg/s offered for {lat['seconds']:.0f} s "
                      f"({lat['messages']:,} msgs, {lat['commits']} commits, mean batch {lat['mean_batch']}, "
                      f"ingestor CPU {lat['ingestor_cpu_pct']} %):",
                  f"  publish -> commit      p50 {c['p50']:>7.1f} ms  p90 {c['p90']:>7.1f} ms  p99 {c['p99']:>7.1f} ms  "
                  f"max {c['max']:>7.1f} ms",
                  f"  publish -> txn start   p50 {rv['p50']:>7.1f} ms  p90 {rv['p90']:>7.1f} ms  p99 {rv['p99']:>7.1f} ms  "
                  f"max {rv['max']:>7.1f} ms   (received_at = now() of the batch)"]
        if lat["cpu_s"]["other"] > 0.1 * lat["seconds"]:
            lines.append(f"WARNING: other work on the machine during the latency run ({lat['cpu_s']['other']:.1f} CPU-s)")
    bl = runs.get("backlog")
    if bl:
        lines += ["", f"ingestor peak RSS while a {bl.messages:,}-message backlog drains: {bl.peak_rss_mb:.0f} MB "
                      f"(drained at {bl.msg_s:,.0f} msg/s, steady {bl.steady_msg_s or 0:,.0f} msg/s)"]

    lift1, lift10 = runs.get("lift1"), runs.get(f"lift{s.samples}")
    targets = []

    def target(name: str, value: float | None, op: str, limit: float, unit: str = "") -> None:
        ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
        targets.append({"target": name, "value": value, "op": op, "limit": limit, "unit": unit,
                        "met": ok})

    target("Liftwatch msg/s vs naive (1 sample/msg)", lift1.msg_s / naive.msg_s if lift1 and naive else None,
           ">=", 10, "×")
    target("Liftwatch msg/s vs limit pipe (1 sample/msg)", lift1.msg_s / lim1.msg_s if lift1 and lim1 else None,
           ">=", 0.7, "×")
    target(f"Liftwatch rows/s vs limit pipe ({s.samples} samples/msg)",
           lift10.rows_s / lim10.rows_s if lift10 and lim10 else None, ">=", 0.7, "×")
    target(f"publish->commit p99 at {s.latency_rate:,} msg/s", lat["commit_ms"]["p99"] if lat else None,
           "<=", 250, " ms")
    target(f"ingestor peak RSS draining {s.backlog:,} backlog", bl.peak_rss_mb if bl else None, "<=", 200, " MB")
    lines += ["", "targets" + ("   (QUICK RUN: sizes below the spec, indicative only)" if quick else "")]
    for t in targets:
        v = "not run" if t["value"] is None else f"{t['value']:.2f}{t['unit']}"
        verdict = "—" if t["met"] is None else ("PASS" if t["met"] else "MISS")
        lines.append(f"  {verdict:<5} {t['target']:<52} {v:>12}  (target {t['op']} {t['limit']}{t['unit']})")
    print("\n".join(lines), flush=True)

    meta = {
        "started": started.isoformat(timespec="seconds"), "quick": quick, "sizes": asdict(s),
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(bench),
    }
    return {
        "meta": meta,
        "medians": {key: {"msg_s": round(r.msg_s), "rows_s": round(r.rows_s), "seconds": round(r.seconds, 3)}
                    for key, r in runs.items()},
        "runs": [asdict(r) | {"msg_s": round(r.msg_s), "rows_s": round(r.rows_s),
                              "rss_series": getattr(r, "rss_series", None)}
                 for rs in bench.runs.values() for r in rs],
        "latency": lat, "targets": targets, "table": lines,
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


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/ingest.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke-run sizes (20 k messages, 4 k naive, 50 k backlog, 8 s latency)")
    ap.add_argument("--messages", type=int, help="messages per throughput contender (default 100000)")
    ap.add_argument("--naive-messages", type=int, help="messages for the naive baseline (default 20000)")
    ap.add_argument("--backlog", type=int, help="backlog for the RSS run (default 500000)")
    ap.add_argument("--units", type=int, help="publishing units, one mosquitto_pub each (default 20)")
    ap.add_argument("--samples", type=int, help="samples per message in the batched runs (default 10)")
    ap.add_argument("--latency-rate", type=int, help="offered msg/s in the latency run (default 5000)")
    ap.add_argument("--latency-seconds", type=float, help="length of the latency run (default 20)")
    ap.add_argument("--repeat", type=int, help="rounds of the throughput contenders, median reported (default 3)")
    ap.add_argument("--only", help=f"comma-separated phases to run, in this order: {','.join(PHASES)}")
    ap.add_argument("--keep", action="store_true", help="keep the message files and logs (path printed)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/ingest-*.json")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="attach py-spy (--gil) to every timed ingestor run; folded stacks land in DIR "
                         "(profiling slows the ingestor: do not read the table of such a run)")
    args = ap.parse_args()

    need("mosquitto_pub", "mosquitto_sub", "psql")
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in ("messages", "naive_messages", "backlog", "units", "samples", "latency_rate", "latency_seconds",
                 "repeat"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    phases = [p.strip() for p in args.only.split(",")] if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")

    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="liftwatch-bench-"))
    if os.geteuid() == 0:  # the throwaway cluster runs as postgres; nothing here needs it, but be tidy
        os.chmod(root, 0o755)
    bench = Bench(sizes, root)
    if args.profile is not None:
        need(str(Path(PYTHON).parent / "py-spy"))
        args.profile.mkdir(parents=True, exist_ok=True)
        bench.profile_dir = args.profile
    if (load := os.getloadavg()[0]) > 0.5:
        log(f"WARNING: load average {load:.1f} before the start: other work on this machine skews the numbers")
    try:
        bench.run(phases)
        results = report(bench, args.quick, started)
    finally:
        bench.close()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if args.quick else ''}.json"
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"results written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
