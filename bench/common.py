"""Shared pieces of the benchmarks: throwaway servers, message files, C publishers, CPU meters.

Nothing here imports from tests/: the benchmarks are a separate program with their own
copies of the few helpers they need.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil
import psycopg
from psycopg import sql

from liftwatch.contract import Telemetry, encode, format_ts
from liftwatch.db import migrate
from liftwatch.throwaway import Mosquitto, PgCluster

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def log(msg: str) -> None:
    """A progress line on stderr (stdout is kept for the result table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def need(*exes: str) -> None:
    missing = [e for e in exes if shutil.which(e) is None]
    if missing:
        sys.exit(f"missing programs: {', '.join(missing)} (install mosquitto-clients and postgresql-client)")


# --- processes ------------------------------------------------------------------------------

class Processes:
    """Every child process a benchmark starts, so a `finally` can end them all (by pid)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()


# --- servers --------------------------------------------------------------------------------

@dataclass
class Servers:
    """One PostgreSQL+TimescaleDB cluster and one Mosquitto broker for the whole run."""

    pg: PgCluster
    mqtt: Mosquitto

    @classmethod
    def start(cls) -> Servers:
        # commit timestamps let the benchmark read when each row's transaction committed,
        # after the fact, instead of timing by polling (which would also load the server)
        pg = PgCluster(settings={"track_commit_timestamp": "on"})
        mq = Mosquitto()
        try:
            pg.init().start()
            mq.start()
        except BaseException:
            pg.destroy()
            mq.destroy()
            raise
        return cls(pg, mq)

    def destroy(self) -> None:
        self.mqtt.destroy()
        self.pg.destroy()

    @property
    def mqtt_port(self) -> int:
        return self.mqtt.port

    def create_db(self, name: str, units: list[str]) -> str:
        """A fresh migrated database with `units` registered; returns its DSN."""
        dsn = self.pg.dsn(name)
        migrate(dsn)
        register_units(dsn, units)
        return dsn

    def drop_db(self, name: str) -> None:
        with psycopg.connect(self.pg.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def postmaster_pid(self) -> int:
        return int((self.pg.datadir / "postmaster.pid").read_text().split()[0])


def register_units(dsn: str, unit_ids: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO companies (company_id, name, kind) VALUES ('MC1', 'Maint Co', 'maintenance'),"
                  " ('UU1', 'User Co', 'user_unit') ON CONFLICT DO NOTHING")
        c.execute("INSERT INTO sites (site_id, name, lat, lon) VALUES ('S1', 'Site', 31.2, 121.4) "
                  "ON CONFLICT DO NOTHING")
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO units (unit_id, site_id, kind, maintenance_company_id, user_unit_id) "
                "VALUES (%s, 'S1', 'traction', 'MC1', 'UU1') ON CONFLICT DO NOTHING",
                [(u,) for u in unit_ids],
            )


def clear_session(port: int, client_id: str) -> None:
    """Connect once with a clean session: the broker forgets the client's session and queue."""
    subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", client_id,
                    "-t", "bench/none", "-E"], check=False, capture_output=True, timeout=30)


# --- CPU accounting -------------------------------------------------------------------------

def _cpu(p: psutil.Process, children: bool = False) -> float:
    t = p.cpu_times()
    s = t.user + t.system
    if children:
        s += t.children_user + t.children_system
    return s


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU seconds of a process, with `children` its whole tree (reaped children included)."""
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        total = t.user + t.system
        if children:
            total += t.children_user + t.children_system
            for ch in p.children(recursive=True):
                try:
                    c = ch.cpu_times()
                    total += c.user + c.system
                except psutil.Error:
                    pass
        return total
    except psutil.Error:
        return 0.0


@dataclass
class CpuSnapshot:
    postgres: float
    broker: float
    reaped_children: float  # our own children reaped so far (mosquitto_sub, psql, consumers)
    bench: float  # this process (polling)
    system_busy: float  # every CPU of the machine, non-idle time


def system_busy_s() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class CpuMeter:
    """CPU seconds used by the database server, the broker and our reaped children."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers

    def snapshot(self) -> CpuSnapshot:
        pg = 0.0
        try:
            master = psutil.Process(self.servers.postmaster_pid())
            pg = _cpu(master, children=True)  # reaped backends land in the postmaster's children_*
            for child in master.children(recursive=True):
                try:
                    pg += _cpu(child)
                except psutil.NoSuchProcess:
                    pass
        except (OSError, psutil.Error):
            pass
        broker = 0.0
        if self.servers.mqtt.proc is not None:
            try:
                broker = _cpu(psutil.Process(self.servers.mqtt.proc.pid))
            except psutil.Error:
                pass
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return CpuSnapshot(pg, broker, ch.ru_utime + ch.ru_stime, me.ru_utime + me.ru_stime, system_busy_s())

    @staticmethod
    def delta(a: CpuSnapshot, b: CpuSnapshot, extra: float = 0.0) -> dict[str, float]:
        """CPU seconds between two snapshots; `other` is what the rest of the machine used
        (other people's work, VM steal): a large value means a noisy measurement. `extra` is
        CPU of our processes not yet reaped at `b`."""
        out = {k: round(getattr(b, k) - getattr(a, k), 2) for k in ("postgres", "broker", "reaped_children", "bench")}
        out["other"] = round(b.system_busy - a.system_busy - sum(out.values()) - extra, 2)
        return out


# --- messages -------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Per-unit JSONL files, one MQTT payload per line, for `mosquitto_pub -l`."""

    name: str
    files: dict[str, Path]
    per_unit: int  # messages per unit
    samples_per_message: int
    last: dict[str, tuple[str, int]] = field(default_factory=dict)  # unit -> (ts, seq) of its last sample

    @property
    def messages(self) -> int:
        return self.per_unit * len(self.files)

    @property
    def rows(self) -> int:
        return self.messages * self.samples_per_message

    @property
    def units(self) -> list[str]:
        return sorted(self.files)

    def subset(self, per_unit: int, root: Path) -> Dataset:
        """The first `per_unit` messages of each unit, as new files."""
        if per_unit >= self.per_unit:
            return self
        out = root / f"{self.name}-first{per_unit}"
        out.mkdir(parents=True, exist_ok=True)
        files, last = {}, {}
        for unit, path in self.files.items():
            lines = []
            with path.open("rb") as fh:
                for _ in range(per_unit):
                    lines.append(fh.readline())
            (out / path.name).write_bytes(b"".join(lines))
            files[unit] = out / path.name
            last[unit] = _last_key(lines[-1])
        return Dataset(f"{self.name}-first{per_unit}", files, per_unit, self.samples_per_message, last)


def _last_key(line: bytes) -> tuple[str, int]:
    doc = orjson.loads(line)
    if isinstance(doc, list):
        doc = doc[-1]
    return doc["ts"], doc["seq"]


def unit_ids(n: int) -> list[str]:
    return [f"BENCH-{i:03d}" for i in range(n)]


class UnitSim:
    """A plausible traction elevator: trips between floors, door cycles, slow drifts."""

    def __init__(self, unit_id: str, seed: int) -> None:
        self.unit_id = unit_id
        self.rng = random.Random(f"{seed}-{unit_id}")
        self.floors = self.rng.choice((12, 18, 24, 32))
        self.floor = self.rng.randrange(self.floors)
        self.target = self.floor
        self.phase = "idle"  # idle | opening | open | closing | moving
        self.ticks = 0
        self.run_count = self.rng.randrange(50_000, 900_000)
        self.run_hours = round(self.run_count / 40.0, 2)
        self.motor_temp = self.rng.uniform(30, 45)
        self.leveling = round(self.rng.gauss(0, 2), 1)
        self.door_close = round(self.rng.gauss(3100, 150), 0)

    def step(self, t: datetime, seq: int) -> Telemetry:
        r = self.rng
        self.ticks -= 1
        if self.ticks <= 0:
            if self.phase == "idle":
                self.phase, self.ticks = "opening", 2
            elif self.phase == "opening":
                self.phase, self.ticks = "open", r.randint(3, 8)
            elif self.phase == "open":
                self.phase, self.ticks = "closing", 2
            elif self.phase == "closing":
                self.target = r.randrange(self.floors)
                if self.target == self.floor:
                    self.phase, self.ticks = "idle", r.randint(2, 10)
                else:
                    self.phase, self.ticks = "moving", abs(self.target - self.floor) * 2
                    self.run_count += 1
            else:  # arrived
                self.floor = self.target
                self.phase, self.ticks = "idle", r.randint(1, 5)
        moving = self.phase == "moving"
        direction = ("up" if self.target > self.floor else "down") if moving else "none"
        door = {"opening": "opening", "open": "open", "closing": "closing"}.get(self.phase, "closed")
        self.motor_temp += (0.05 if moving else -0.02) + r.uniform(-0.01, 0.01)
        self.motor_temp = min(max(self.motor_temp, 25.0), 80.0)
        if moving:
            self.run_hours = round(self.run_hours + 0.0003, 4)
        else:  # the stop error at this landing, reported until the next stop
            self.leveling = round(r.gauss(0, 2), 1)
        if door == "closing":  # the last door close time, reported until the next close
            self.door_close = round(r.gauss(3100, 150), 0)
        # every contract field in every sample, as a controller reporting its full status does
        return Telemetry(
            time=t, unit_id=self.unit_id, seq=seq,
            mode="normal" if r.random() > 0.001 else "inspection",
            floor=self.floor, direction=direction, moving=moving, door=door,
            door_zone=not moving, passengers=r.random() < 0.4,
            speed_mps=round(r.uniform(1.4, 1.6), 3) if moving else 0.0,
            load_pct=round(r.uniform(0, 80), 1),
            vibration_mg=round(r.gauss(25 if moving else 3, 2), 2),
            motor_temp_c=round(self.motor_temp, 2),
            leveling_mm=self.leveling, door_close_ms=self.door_close,
            run_count=self.run_count, run_hours=self.run_hours,
        )


SAMPLE_STEP = timedelta(milliseconds=100)  # device clock between a unit's samples (10 Hz, inside the default rate limit)


def write_dataset(root: Path, name: str, units: list[str], per_unit: int, samples_per_message: int,
                  *, end: datetime, step: timedelta = SAMPLE_STEP, seed: int = 1) -> Dataset:
    """Messages for every unit, its samples `step` apart on the device clock, the last one at
    `end` (so none is stale or in the future), seq increasing from 0 per unit."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    samples = per_unit * samples_per_message
    span = step * (samples - 1)
    files, last = {}, {}
    for k, unit in enumerate(units):
        sim = UnitSim(unit, seed)
        start = end - span - timedelta(milliseconds=k)  # units are not in lock step
        lines = []
        seq = 0
        for _ in range(per_unit):
            batch = []
            for _ in range(samples_per_message):
                batch.append(sim.step(start + step * seq, seq))
                seq += 1
            payload = encode(batch if samples_per_message > 1 else batch[0])
            if b"\\" in payload or b"\n" in payload or b"\t" in payload:
                raise ValueError("payload would need escaping for mosquitto_pub -l / COPY text")
            lines.append(payload)
        path = out / f"{unit}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files[unit] = path
        last[unit] = (format_ts(batch[-1].time), batch[-1].seq)
    return Dataset(name, files, per_unit, samples_per_message, last)


# --- publishing -----------------------------------------------------------------------------

def mosquitto_pub_cmd(port: int, unit: str, client_id: str) -> list[str]:
    return ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l", "-M", "1000",
            "--nodelay", "-i", client_id, "-t", f"lift/{unit}/telemetry"]


def wait_with_cpu(proc: subprocess.Popen, timeout: float) -> float:
    """Wait for one of our children to exit; return its user + system CPU seconds, exact (wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.args[0]} still running after {timeout:.0f} s")
        time.sleep(0.01)


class Publishers:
    """One `mosquitto_pub -l -q 1` per unit, each sending its unit's file as fast as the broker
    acknowledges (up to 1,000 in flight), all in parallel. A thread reaps them as they exit, so
    `ended_epoch` is when the last one had its last PUBACK (within 10 ms), whenever `wait` is called."""

    def __init__(self, procs: Processes, port: int, ds: Dataset, tag: str) -> None:
        self.messages = ds.messages
        self.started = time.perf_counter()
        self.started_epoch = time.time()
        self.running: list[subprocess.Popen] = []
        for unit in ds.units:
            with ds.files[unit].open("rb") as fh:
                self.running.append(procs.start(mosquitto_pub_cmd(port, unit, f"pub-{tag}-{unit}"), stdin=fh,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        self.cpu_s = 0.0  # of the publisher processes
        self.seconds = 0.0
        self.ended_epoch = 0.0
        self._reaper = threading.Thread(target=self._reap, name=f"reap-{tag}", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        for p in self.running:
            self.cpu_s += wait_with_cpu(p, 3600)
        self.seconds = time.perf_counter() - self.started
        self.ended_epoch = time.time()

    def wait(self) -> float:
        """Until all have exited (the broker acknowledged every message); returns msg/s."""
        self._reaper.join()
        failed = [p.stderr.read().decode(errors="replace").strip()[:200] for p in self.running if p.returncode != 0]
        for p in self.running:
            p.stderr.close()
        if failed:
            raise RuntimeError(f"mosquitto_pub failed: {failed[:3]}")
        return self.messages / self.seconds


def publish_backlog(procs: Processes, port: int, ds: Dataset, tag: str) -> float:
    """Publish every message of `ds` at QoS 1 with one `mosquitto_pub -l` per unit in parallel;
    return once the broker has acknowledged all of them. Returns msg/s of the publish."""
    return Publishers(procs, port, ds, tag).wait()


# --- database checks ------------------------------------------------------------------------

def all_last_rows_present(conn: psycopg.Connection, pending: dict[str, tuple[str, int]]) -> bool:
    """Cheap completion check: drop units whose last sample is stored; True when none is left.
    Each ingest path writes a unit's messages in order, so the last one implies the rest (the
    caller confirms with a full count afterwards)."""
    for unit, (ts, seq) in list(pending.items()):
        row = conn.execute("SELECT 1 FROM telemetry WHERE unit_id = %s AND time = %s::timestamptz AND seq = %s",
                           (unit, ts, seq)).fetchone()
        if not row:
            return False  # units finish together: one index probe per poll until then
        del pending[unit]
    return True


@dataclass
class Commits:
    """When the telemetry rows were committed (from track_commit_timestamp)."""

    first: float  # epoch of the first commit
    last: float  # epoch of the last commit
    rows: int
    transactions: int
    rows_in_first: int


def commit_span(conn: psycopg.Connection) -> Commits:
    row = conn.execute(
        """WITH t AS (SELECT pg_xact_commit_timestamp(xmin) AS c, xmin::text AS x FROM telemetry)
           SELECT extract(epoch FROM min(c)), extract(epoch FROM max(c)), count(*), count(DISTINCT x),
                  count(*) FILTER (WHERE c = (SELECT min(c) FROM t)) FROM t"""
    ).fetchone()
    return Commits(float(row[0]), float(row[1]), int(row[2]), int(row[3]), int(row[4]))


def now_utc() -> datetime:
    return datetime.now(UTC)


# The ingestor's per-unit token bucket (default 20 samples/s, refilled by the device clock)
# would rightly cut off the benchmark's few hot units: the latency run offers 5 k msg/s from
# 20 units, 250 msg/s each. The limiter stays on (its cost is measured) with a rate no unit
# here reaches. The backlog files keep every unit under 20 samples/s of device time anyway.
BENCH_UNIT_RATE = "100000"
BENCH_UNIT_BURST = "100000"


def env_for_ingest(dsn: str, mqtt_url: str, metrics_port: int = 0, *, raise_rate_limit: bool = True
                   ) -> dict[str, str]:
    """The ingestor's environment; `raise_rate_limit=False` keeps the production default
    (the throughput files stay inside it: 10 samples/s per unit on the device clock)."""
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": dsn, "LIFTWATCH_MQTT_URL": mqtt_url,
           "LIFTWATCH_METRICS_PORT": str(metrics_port), "LIFTWATCH_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
           # bench/ingest.py may drain a backlog through a --group on a broker it never restarts
           "LIFTWATCH_INGEST_ALLOW_VOLATILE_GROUP": "true"}
    if raise_rate_limit:
        env |= {"LIFTWATCH_INGEST_UNIT_RATE": BENCH_UNIT_RATE, "LIFTWATCH_INGEST_UNIT_BURST": BENCH_UNIT_BURST}
    else:
        for k in ("LIFTWATCH_INGEST_UNIT_RATE", "LIFTWATCH_INGEST_UNIT_BURST"):
            env.pop(k, None)
    return env


def rejected(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """Reject reasons and counts (the benchmark's messages are all valid: any is a bench bug)."""
    if not conn.execute("SELECT to_regclass('rejected_messages')").fetchone()[0]:
        return []
    return conn.execute("SELECT reason, count(*) FROM rejected_messages GROUP BY 1 ORDER BY 2 DESC").fetchall()
