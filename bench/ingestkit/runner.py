"""The contenders of bench/ingest.py, each drained from a backlog or fed live by publishers.

backlog  every message is queued at the broker for the consumer's persistent session before
         the consumer starts; timed from the consumer's start (start-up included) to the
         commit of the last row. The publishers are never the bottleneck.
live     the consumer is running and idle; one `mosquitto_pub -l` per unit then publishes its
         file as fast as the broker takes it while the consumer works, on the same cores.
         Timed from the publishers' start to the commit of the last row. This is what devices
         do, and what a consumer that needs more CPU per row loses on.

CPU per stored row (cpu.py) counts the consumer's own processes and the PostgreSQL backends
serving it: in live mode from the publishers' start (both consumers are already up), in
backlog mode from the consumer's start.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from bench.common import (
    PYTHON,
    REPO,
    CpuMeter,
    Dataset,
    Processes,
    Publishers,
    Servers,
    all_last_rows_present,
    clear_session,
    commit_span,
    env_for_ingest,
    log,
    publish_backlog,
    rejected,
    unit_ids,
    wait_with_cpu,
)
from bench.ingestkit.cpu import BackendCpu, Usage, backend_delta, loadavg, proc_cpu

MODES = ("backlog", "live")
LIVE_SETTLE_S = 1.0  # consumer connected and subscribed before the publishers start

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
    latency_rate: int = 5_000  # msg/s of 1 sample
    latency_batched_rate: int = 500  # msg/s of `samples` samples
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
    mode: str
    samples_per_message: int
    messages: int
    rows: int
    seconds: float  # start (consumer in backlog mode, publishers in live mode) -> last commit
    first_commit_s: float  # start -> first commit
    transactions: int
    steady_msg_s: float | None  # messages after the first commit / (last - first commit)
    publish_msg_s: float  # how fast the C publishers sent (backlog: into the queue; live: to the consumer)
    publish_s: float | None = None  # live: start -> the publishers' last PUBACK (the rest is the consumer's tail)
    publishers_cpu_s: float | None = None  # live: the publishers' own CPU (not the contender's)
    cpu: dict = field(default_factory=dict)  # the contender's CPU (Usage) and CPU ms per 1,000 rows
    machine_cpu_s: dict[str, float] = field(default_factory=dict)  # everything else on the machine meanwhile
    load: dict[str, list[float]] = field(default_factory=dict)  # loadavg before and after
    peak_rss_mb: float | None = None
    notes: str = ""

    @property
    def msg_s(self) -> float:
        return self.messages / self.seconds

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu["ms_per_1000_rows"]


class Bench:
    def __init__(self, sizes: Sizes, root: Path) -> None:
        self.sizes = sizes
        self.root = root
        self.procs = Processes()
        self.servers: Servers | None = None
        self.meter: CpuMeter | None = None
        self.units = unit_ids(sizes.units)
        self.runs: dict[str, list[Run]] = defaultdict(list)
        self.latency: dict[str, dict] = {}
        self.profile_dir: Path | None = None
        self._started = 0

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.servers.mqtt_port

    def fresh_db(self, name: str) -> str:
        self.servers.drop_db(name)
        return self.servers.create_db(name, self.units)

    def start_ingestor(self, dsn: str, client_id: str, logname: str, *, raise_rate_limit: bool = False
                       ) -> tuple[subprocess.Popen, Path]:
        """`python -m liftwatch ingest` as in production: one process, plain subscription."""
        self._started += 1
        logpath = self.root / f"{logname}-{self._started}.log"  # a fresh file: wait_log reads it all
        env = env_for_ingest(dsn, self.servers.mqtt.url, raise_rate_limit=raise_rate_limit)
        with logpath.open("wb") as fh:
            proc = self.procs.start([PYTHON, "-m", "liftwatch", "ingest", "--client-id", client_id],
                                    cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if self.profile_dir is not None and not logname.endswith("-prime"):
            # py-spy attaches to the running ingestor and writes when it exits (folded stacks)
            out = self.profile_dir / f"{logname}-{self._started}.folded"
            self.procs.start([str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(proc.pid), "--gil",
                              "--threads", "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, logpath

    def prime_ingestor(self, dsn: str, client_id: str, key: str) -> None:
        """Connect once, which creates the persistent session and its subscription, and leave."""
        proc, logpath = self.start_ingestor(dsn, client_id, f"{key}-prime")
        self.wait_log(proc, logpath, "connected to broker")
        time.sleep(0.5)  # the SUBSCRIBE went out in on_connect; let the broker take it
        if (rc := self.procs.stop(proc)) != 0:
            raise RuntimeError(f"ingestor did not stop cleanly (exit {rc}):\n{tail(logpath)}")

    @staticmethod
    def wait_log(proc: subprocess.Popen, logpath: Path, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in logpath.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"ingestor did not log {text!r}; log tail:\n{tail(logpath)}")

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
                                   + (f"; log tail:\n{tail(logpath)}" if logpath else ""))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} units still miss their last row after {timeout:.0f} s")
            time.sleep(0.1)
        while (n := conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]) < ds.rows:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {n} of {ds.rows} rows after {timeout:.0f} s")
            time.sleep(0.5)
        if n != ds.rows:
            raise RuntimeError(f"{n} rows stored, expected {ds.rows}")

    def backends(self, db: str, conn: psycopg.Connection) -> BackendCpu:
        b = BackendCpu(self.servers.postmaster_pid(), db, {conn.info.backend_pid})
        b.start()
        return b

    def _finish(self, key: str, contender: str, mode: str, ds: Dataset, dsn: str, t0: float, usage: Usage,
                meter0, load0: list[float], pub_rate: float, peak_rss: float | None = None, notes: str = "",
                pubs: Publishers | None = None) -> Run:
        meter1 = self.meter.snapshot()
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
        cpu = {"consumer_process_s": round(usage.consumer_process_s, 3), "backend_s": round(usage.backend_s, 3),
               "backends": usage.backends, "ms_per_1000_rows": round(usage.per_1000_rows_ms(ds.rows), 3)}
        run = Run(key, contender, mode, ds.samples_per_message, ds.messages, ds.rows, c.last - t0, c.first - t0,
                  c.transactions, steady, pub_rate, None, None, cpu, CpuMeter.delta(meter0, meter1),
                  {"before": load0, "after": loadavg()}, peak_rss, notes)
        if pubs is not None:
            run.publish_s = round(pubs.ended_epoch - t0, 3)
            run.publishers_cpu_s = round(pubs.cpu_s, 2)
        self.runs[key].append(run)
        tail = f" (publishers done at {run.publish_s:.2f} s)" if pubs is not None else ""
        log(f"{key}: {run.rows:,} rows in {run.seconds:.2f} s{tail} = {run.rows_s:,.0f} rows/s; CPU "
            f"{run.cpu_ms_per_1000:.1f} ms per 1,000 rows ({usage.consumer_process_s:.2f} s process + "
            f"{usage.backend_s:.2f} s in {usage.backends} backends); {run.transactions} commits; load {load0[0]}")
        return run

    # --- contenders -------------------------------------------------------------------------

    def run_liftwatch(self, key: str, ds: Dataset, contender: str, mode: str) -> Run:
        db = f"bench_{key}"
        dsn = self.fresh_db(db)
        cid = f"bench-{key}"
        self.prime_ingestor(dsn, cid, key)
        pub_rate, pubs = 0.0, None
        if mode == "backlog":
            log(f"{key}: publishing {ds.messages:,} messages ({ds.samples_per_message} samples each) into the backlog")
            pub_rate = publish_backlog(self.procs, self.port, ds, key)
            log(f"{key}: published at {pub_rate:,.0f} msg/s; starting the ingestor")
        with psycopg.connect(dsn, autocommit=True) as conn:
            backends = self.backends(db, conn)
            meter0, load0 = self.meter.snapshot(), loadavg()
            if mode == "backlog":
                t0 = time.time()
                proc, logpath = self.start_ingestor(dsn, cid, key)
                b0, p0 = {}, 0.0
            else:
                proc, logpath = self.start_ingestor(dsn, cid, key)
                self.wait_log(proc, logpath, "connected to broker")
                time.sleep(LIVE_SETTLE_S)
                b0, p0 = backends.sample(), proc_cpu(proc.pid)
                log(f"{key}: {len(ds.units)} publishers sending {ds.messages:,} messages "
                    f"({ds.samples_per_message} samples each) to the running ingestor")
                t0 = time.time()
                pubs = Publishers(self.procs, self.port, ds, key)
            rss = RssSampler(proc.pid)
            rss.start()
            try:
                self.wait_complete(conn, ds, proc, timeout=max(180.0, ds.rows / 2000), logpath=logpath)
            finally:
                rss.stop()
            p1 = proc_cpu(proc.pid)
            b_s, n_b = backend_delta(b0, backends.stop())
        if pubs is not None:
            pub_rate = pubs.wait()
        self.procs.stop(proc)
        run = self._finish(key, contender, mode, ds, dsn, t0, Usage(p1 - p0, b_s, n_b), meter0, load0, pub_rate,
                           peak_rss=rss.peak_mb, notes=_ingest_summary(logpath), pubs=pubs)
        run.rss_series = rss.series  # type: ignore[attr-defined]
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        return run

    def run_limit(self, key: str, ds: Dataset, mode: str) -> Run:
        db = f"bench_{key}"
        dsn = self.fresh_db(db)
        cid = f"bench-{key}"
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-c", "-i", cid,
               "-t", "lift/+/telemetry"]
        subprocess.run([*sub, "-E"], check=True, capture_output=True, timeout=30)
        pub_rate, pubs = 0.0, None
        if mode == "backlog":
            log(f"{key}: publishing {ds.messages:,} messages ({ds.samples_per_message} samples each) into the backlog")
            pub_rate = publish_backlog(self.procs, self.port, ds, key)
            log(f"{key}: published at {pub_rate:,.0f} msg/s; starting mosquitto_sub | psql")
        source = "stage, jsonb_array_elements(doc) d" if ds.samples_per_message > 1 else "stage, LATERAL (SELECT doc) s(d)"
        insert = (f"INSERT INTO telemetry ({TEL_COLS}) SELECT {TEL_CAST} FROM {source} "  # noqa: S608 - constants
                  "ON CONFLICT DO NOTHING")
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                "-c", "CREATE TEMP TABLE stage (topic text, doc jsonb)",
                "-c", "\\copy stage (topic, doc) from pstdin",
                "-c", insert,
                "-c", "SELECT pg_sleep(0.3)"]  # the backend stays until its CPU is read (after the commit)
        errpath = self.root / f"{key}-psql.err"
        with psycopg.connect(dsn, autocommit=True) as conn, errpath.open("wb") as err:
            backends = self.backends(db, conn)
            meter0, load0 = self.meter.snapshot(), loadavg()
            t0 = time.time()
            ms = self.procs.start([*sub, "-C", str(ds.messages), "-F", "%t\\t%p"], stdout=subprocess.PIPE)
            pq = self.procs.start(psql, stdin=ms.stdout, stdout=subprocess.DEVNULL, stderr=err)
            ms.stdout.close()
            b0, p0 = {}, 0.0
            if mode == "live":
                time.sleep(LIVE_SETTLE_S)
                b0, p0 = backends.sample(), proc_cpu(ms.pid) + proc_cpu(pq.pid)
                log(f"{key}: {len(ds.units)} publishers sending {ds.messages:,} messages "
                    f"({ds.samples_per_message} samples each) to mosquitto_sub | psql")
                t0 = time.time()
                pubs = Publishers(self.procs, self.port, ds, key)
            timeout = max(600.0, ds.rows / 1000)
            p1 = wait_with_cpu(ms, timeout) + wait_with_cpu(pq, timeout)
            b_s, n_b = backend_delta(b0, backends.stop())
        if pq.returncode != 0 or ms.returncode != 0:
            raise RuntimeError(f"limit pipe failed (mosquitto_sub {ms.returncode}, psql {pq.returncode}): "
                               f"{errpath.read_text(errors='replace')[-2000:]}")
        if pubs is not None:
            pub_rate = pubs.wait()
        run = self._finish(key, f"limit pipe, {ds.samples_per_message} sample/msg, {mode}", mode, ds, dsn, t0,
                           Usage(p1 - p0, b_s, n_b), meter0, load0, pub_rate, pubs=pubs)
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
        errpath = self.root / "naive.err"
        with psycopg.connect(dsn, autocommit=True) as conn, errpath.open("wb") as err:
            backends = self.backends(db, conn)
            meter0, load0 = self.meter.snapshot(), loadavg()
            t0 = time.time()
            p = self.procs.start([*cmd, "--count", str(ds.messages)], cwd=REPO, stderr=err)
            cpu_p = wait_with_cpu(p, max(600.0, ds.messages / 200))
            b_s, n_b = backend_delta({}, backends.stop())
        if p.returncode != 0:
            raise RuntimeError(f"naive subscriber failed: {errpath.read_text(errors='replace')[-2000:]}")
        run = self._finish(key, "naive, 1 sample/msg", "backlog", ds, dsn, t0, Usage(cpu_p, b_s, n_b), meter0, load0,
                           pub_rate)
        clear_session(self.port, cid)
        self.servers.drop_db(db)
        return run

    def median(self, key: str) -> Run | None:
        """The run with the median rows/s of a contender (the lower middle one for an even count)."""
        runs = sorted(self.runs.get(key, []), key=lambda r: r.rows_s)
        return runs[(len(runs) - 1) // 2] if runs else None

    def median_cpu(self, key: str) -> float | None:
        """The median CPU ms per 1,000 rows of a contender's rounds (not necessarily the same round)."""
        v = sorted(r.cpu_ms_per_1000 for r in self.runs.get(key, []))
        return v[(len(v) - 1) // 2] if v else None

    def close(self) -> None:
        self.procs.kill_all()
        if self.servers is not None:
            self.servers.destroy()


class RssSampler(threading.Thread):
    """Peak RSS (process + children) of one process, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
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


def tail(path: Path | None, n: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def _ingest_summary(logpath: Path) -> str:
    """Warnings/errors the ingestor logged (there should be none)."""
    bad = [ln for ln in logpath.read_text(errors="replace").splitlines() if " WARNING " in ln or " ERROR " in ln]
    return f"{len(bad)} warning/error log lines, first: {bad[0][:160]}" if bad else ""
