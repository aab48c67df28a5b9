"""Chaos run for the ingestor (issue #8): a live QoS 1 stream through broker restarts,
database crashes and kill -9 of the ingestor, then a per-unit, per-seq audit of the table.

Setup: one throwaway PostgreSQL+TimescaleDB cluster (track_commit_timestamp on, a migrated
database, the units registered) and one throwaway Mosquitto 2 broker (persistence on,
max_queued_messages 0). One ingestor runs as a subprocess:
`python -m liftwatch ingest --client-id chaos-1` (plain subscription; `--shared` adds
`--group chaos`), with the per-unit rate limit
raised, the gap settle time at an hour (nothing here is a real gap) and its metrics on a free
port, read just before each kill (how many redeliveries the unique key absorbed).
Before all that, a probe on a separate throwaway broker records whether a persistent
session's plain and shared subscriptions survive a broker restart (Mosquitto 2.0.11 keeps
the plain one and drops the shared one: see docs/reliability.md).

Publishers: one paho MQTT v5 client per unit by default (one device = one connection), QoS 1,
a stable client id, clean_start=False with a session expiry, unlimited in-flight and queue.
A message published while the broker is away, or in flight when it went away, is kept by
paho and (re)sent on reconnect in the same process with the same bytes, so a resend can only
produce a redelivery the ingestor must deduplicate, never a different row. Every message's
MQTTMessageInfo is kept: the publisher side knows exactly which (unit, seq) the broker
acknowledged (a PUBACK with a failure reason code does not count). Each sample is stamped
with the wall clock when it is handed to paho (ms precision), so `commit time - ts` is the
publish->commit lag, outages included.

Stream: every unit sends seq 0, 1, 2, ... one message per tick, all units per tick, paced so
the whole stream takes --duration seconds. With --samples N each message is a JSON array of N
samples (seqs n*N ... n*N+N-1, the newest stamped at hand-off, the others up to 100 ms apart
before it); the audit below counts samples. While it runs, faults are injected one after the
other at spread-out times (with a seeded jitter):
  ingestor   kill -9 the ingestor, start it again at once (same client id)
  broker     SIGTERM the broker (it saves its persistence file), 1 s down, start it again
  database   pg_ctl stop -m immediate (a crash: recovery on start), a few s down, start again
  overlap    the database crashes, then the ingestor is killed -9 and restarted while the
             database is still down (a host reboot where the ingestor comes up first)
Default schedule: 4 x ingestor, 3 x broker, 2 x database, 1 x overlap (--no-overlap: 3 x
database instead). --quick: one of each of ingestor, broker, database.

End: wait until every publisher has all its PUBACKs, then until the table holds every acked
(unit, seq) and the row count has been stable for a few seconds (or nothing has moved for
--stall seconds), stop the ingestor with SIGTERM, and check per unit by seq:
  lost            acked by the broker, not in `telemetry`
  duplicated      count(*) - count(DISTINCT (unit_id, seq))
  not published   rows whose (unit, seq) this run never handed to a publisher
  ts mismatch     rows whose time differs from the ts that was published for that seq
  rejected        rows in rejected_messages (every message here is valid)
Exit code 1 if any of these is non-zero. Every lost message is attributed to the fault
before its publish time and to the broker's PUBACK reason (0x10 "No matching subscribers"
counts as acknowledged: the device is done with it) or to the ingestor's reject. Also
reported: whether the seq bookkeeping (unit_ingest_state) agrees with the table, ingest_gaps
rows, drain time, publish->commit lag (commit timestamp - ts), time each component took to
serve again.

Output: a table on stdout, progress and fault lines (with times since the stream start) on
stderr, and every number in bench/results/chaos-<UTC timestamp>[-quick].json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
# run as `python bench/chaos.py`, sys.path[0] is bench/; the repository root must come first
if sys.path and Path(sys.path[0] or ".").resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)
elif str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from bench.common import (  # noqa: E402
    PYTHON,
    REPO,
    Processes,
    UnitSim,
    env_for_ingest,
    register_units,
)
from liftwatch.contract import encode  # noqa: E402
from liftwatch.db import migrate  # noqa: E402
from liftwatch.throwaway import Mosquitto, PgCluster, free_port  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
DB_NAME = "chaos"
CLIENT_ID = "chaos-1"
GROUP = "chaos"
PUB_SESSION_EXPIRY_S = 3600
PROGRESS_EVERY_S = 5.0
SETTLE_S = 5.0  # the row count must stay at the target this long before the audit

T0 = time.monotonic()  # reset when the stream starts; log lines show t+<seconds since then>


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} t{time.monotonic() - T0:+7.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return round(time.monotonic() - T0, 2)


# --- plan ------------------------------------------------------------------------------------

@dataclass
class Plan:
    units: int = 200
    per_unit: int = 500  # messages per unit: 100 k in all
    duration: float = 100.0  # seconds the stream takes (paced)
    faults: list[str] = field(default_factory=lambda: ["ingestor", "broker", "database", "ingestor", "broker",
                                                        "database", "ingestor", "broker", "overlap", "ingestor"])
    clients: int = 0  # MQTT connections for the units; 0 = one per unit
    broker_down_s: float = 1.0
    db_down_s: float = 4.0
    seed: int = 8
    quick: bool = False
    samples: int = 1  # samples per message (a JSON array when more than one), seq and ts per sample

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(per_unit=100, duration=20.0, faults=["ingestor", "broker", "database"], quick=True)

    @property
    def messages(self) -> int:
        return self.units * self.per_unit

    @property
    def n_clients(self) -> int:
        return self.clients or self.units


# --- publishers ------------------------------------------------------------------------------

def puback_received(info: mqtt.MQTTMessageInfo) -> bool:
    """True once paho has had the PUBACK. `is_published()` raises for a message first offered
    while disconnected (its rc stays NO_CONN even after paho sent it on reconnect and the
    broker acked it), so read the flag it guards."""
    with info._condition:
        return info._published


@dataclass(slots=True)
class Sent:
    unit: str
    seq: int
    ts_ms: int
    info: mqtt.MQTTMessageInfo


class DeviceClient:
    """One paho MQTT v5 connection publishing for one or more units, QoS 1, persistent session."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client_id = client_id
        self.sent: list[Sent] = []
        self.acks = 0  # PUBACKs received (any reason code)
        self.refused: list[tuple[str, int, str]] = []  # (unit, seq, reason) of PUBACKs with a failure code
        self.noted: list[tuple[str, int, str]] = []  # (unit, seq, reason) of other PUBACKs that are not 0x00
        self.reasons: Counter = Counter()  # PUBACK reason codes
        self.not_queued: list[tuple[str, int, str]] = []  # publish() refused to take the message
        self.connects = 0
        self.sessions_resumed = 0
        self.disconnects = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(0)  # unlimited: paho's "queued" state and its resend paths stay out of play
        c.max_queued_messages_set(0)  # unlimited: nothing is dropped on the publisher side
        c.reconnect_delay_set(min_delay=1, max_delay=4)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = PUB_SESSION_EXPIRY_S
        c.connect_async("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        self.client = c

    def start(self) -> None:
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            self.sessions_resumed += bool(flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.disconnects += 1

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acks += 1
        self.reasons[str(reason_code)] += 1
        if reason_code.value:  # not plain Success: remember which message it was
            m = client._out_messages.get(mid)  # still there: paho pops it after this callback
            if m is not None:
                doc = orjson.loads(m.payload)
                for d in doc if isinstance(doc, list) else [doc]:
                    key = (m.topic.split("/")[1], d["seq"], str(reason_code))
                    # a failure code (>= 0x80) is not an acknowledgement, although paho marks the info
                    # published; "No matching subscribers" (0x10) is a success: the device is done with it
                    (self.refused if reason_code.is_failure else self.noted).append(key)

    def publish(self, unit: str, samples: list[tuple[int, int]], payload: bytes) -> None:
        """One message carrying `samples` ((seq, ts_ms) each); every sample is audited on its own."""
        info = self.client.publish(f"lift/{unit}/telemetry", payload, qos=1)
        for seq, ts_ms in samples:
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.not_queued.append((unit, seq, mqtt.error_string(info.rc)))  # never handed to the wire
            self.sent.append(Sent(unit, seq, ts_ms, info))  # NO_CONN: kept by paho, sent on reconnect

    def unacked(self) -> int:
        return sum(not puback_received(s.info) for s in self.sent)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """The simulated units and their connections."""

    def __init__(self, plan: Plan, port: int) -> None:
        self.plan = plan
        self.units = [f"CHAOS-{i:04d}" for i in range(plan.units)]
        n = plan.n_clients
        self.clients = [DeviceClient(port, f"chaos-pub-{k:04d}") for k in range(n)]
        self.client_of = {u: self.clients[i % n] for i, u in enumerate(self.units)}
        self.published = 0
        self.stream_started = 0.0
        self.stream_ended = 0.0
        self.behind_s = 0.0  # how far the pacer fell behind its schedule at worst
        self.error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> None:
        for c in self.clients:
            c.start()
        deadline = time.monotonic() + timeout
        while not all(c.connects for c in self.clients):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(not c.connects for c in self.clients)} publishers did not connect")
            time.sleep(0.1)

    def connected(self) -> int:
        return sum(c.client.is_connected() for c in self.clients)

    def acks(self) -> int:
        return sum(c.acks for c in self.clients)

    def stream(self) -> None:
        """Publish seq 0..per_unit-1 for every unit, one tick per seq, paced over plan.duration."""
        try:
            sims = {u: UnitSim(u, self.plan.seed) for u in self.units}
            interval = self.plan.duration / self.plan.per_unit
            n = self.plan.samples  # a message's samples: step ms apart, the newest stamped now
            step = timedelta(milliseconds=max(1, min(100, int(1000 * interval / n))))
            self.stream_started = time.monotonic()
            for seq in range(self.plan.per_unit):
                due = self.stream_started + seq * interval
                if (lag := time.monotonic() - due) > 0:
                    self.behind_s = max(self.behind_s, lag)
                else:
                    time.sleep(-lag)
                for unit in self.units:
                    now = datetime.now(UTC)
                    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the contract's ms precision
                    batch = [sims[unit].step(now - step * (n - 1 - i), seq * n + i) for i in range(n)]
                    payload = encode(batch if n > 1 else batch[0])
                    self.client_of[unit].publish(unit, [(b.seq, round(b.time.timestamp() * 1000)) for b in batch],
                                                 payload)
                    self.published += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.stream_ended = time.monotonic()

    def wait_acked(self, timeout: float) -> int:
        """Until every message has its PUBACK; returns how many have not."""
        deadline = time.monotonic() + timeout
        last_log = 0.0
        while True:
            left = sum(c.unacked() for c in self.clients)
            if left == 0 or time.monotonic() > deadline:
                return left
            if time.monotonic() - last_log > PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log(f"waiting for {left:,} PUBACKs ({self.connected()}/{len(self.clients)} publishers connected)")
            time.sleep(0.2)

    def close(self) -> None:
        for c in self.clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001, S110 - best effort at teardown
                pass


# --- ingestor --------------------------------------------------------------------------------

class IngestorProc:
    """The ingestor subprocess; each incarnation logs to its own file."""

    def __init__(self, procs: Processes, root: Path, dsn: str, mqtt_url: str, shared: bool = False) -> None:
        self.shared = shared
        self.procs = procs
        self.root = root
        self.env = {**env_for_ingest(dsn, mqtt_url), "LIFTWATCH_GAP_SETTLE_S": "3600"}
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.metrics_port = 0
        self.counters: list[dict] = []  # per incarnation, scraped just before it ended

    @property
    def logpath(self) -> Path:
        return self.logs[-1]

    def start(self) -> None:
        path = self.root / f"ingest-{len(self.logs) + 1}.log"
        self.logs.append(path)
        self.metrics_port = free_port()
        with path.open("wb") as fh:
            group = ["--group", GROUP] if self.shared else []
            self.proc = self.procs.start([PYTHON, "-m", "liftwatch", "ingest", "--client-id", CLIENT_ID, *group],
                                         cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**self.env, "LIFTWATCH_METRICS_PORT": str(self.metrics_port)})

    def count(self, text: str) -> int:
        return self.logpath.read_text(errors="replace").count(text) if self.logs else 0

    def wait_log(self, text: str, n: int = 1, timeout: float = 30.0) -> float | None:
        """Seconds until the current incarnation has logged `text` n times; None on timeout/exit."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.count(text) >= n:
                return round(time.monotonic() - t0, 2)
            if self.proc is None or self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def kill9(self) -> int:
        self.scrape("kill -9")
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        return pid

    def stop(self) -> int | None:
        if self.alive():
            self.scrape("SIGTERM")
        return self.procs.stop(self.proc, timeout=60) if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self, *needles: str) -> Counter:
        out: Counter = Counter()
        for p in self.logs:
            text = p.read_text(errors="replace")
            for n in needles:
                out[n] += text.count(n)
        return out

    def scrape(self, ended_by: str) -> None:
        """Read the incarnation's Prometheus counters just before it is killed or stopped, so the
        run knows how many redeliveries the unique key absorbed (a kill loses only the last ms)."""
        row: dict = {"log": self.logpath.name, "ended_by": ended_by}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError as exc:
            row["error"] = str(exc)[:100]
            self.counters.append(row)
            return
        for key, name in (("messages", "liftwatch_ingest_messages_received_total"),
                          ("acked", "liftwatch_ingest_messages_acked_total"),
                          ("duplicates", "liftwatch_ingest_duplicate_rows_total"),
                          ("rejected", "liftwatch_ingest_rejected_total"),
                          ("db_errors", "liftwatch_ingest_db_errors_total")):
            row[key] = int(sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                               if ln.startswith(name + " ") or ln.startswith(name + "{")))
        self.counters.append(row)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:]) if self.logs else ""


# --- faults ----------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str
    at_s: float  # since the stream started
    detail: str = ""
    down_s: float | None = None  # how long the component was away
    recovered_s: float | None = None  # from the fault until the component was serving again
    extra: dict = field(default_factory=dict)


class Chaos:
    def __init__(self, plan: Plan, pg: PgCluster, mq: Mosquitto, ing: IngestorProc, fleet: Fleet) -> None:
        self.plan = plan
        self.pg = pg
        self.mq = mq
        self.ing = ing
        self.fleet = fleet
        self.done: list[Fault] = []

    def schedule(self) -> list[float]:
        """Fault start times (s since the stream start): spread over 10 %..80 % of the stream."""
        n = len(self.plan.faults)
        d = self.plan.duration
        if n == 1:
            return [0.4 * d]
        step = 0.7 * d / (n - 1)
        rng = random.Random(self.plan.seed)
        return [0.1 * d + i * step + rng.uniform(-0.25, 0.25) * step for i in range(n)]

    def run(self, started: float) -> None:
        for kind, at in zip(self.plan.faults, self.schedule(), strict=True):
            wait = started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.fleet.stream_ended:
                log(f"stream already over: fault {kind} skipped")
                continue
            fault = getattr(self, f"_{kind}")()
            self.done.append(fault)
            time.sleep(1.0)  # at least a second of undisturbed stream between faults

    def _restart_ingestor(self, fault: Fault) -> None:
        t = time.monotonic()
        self.ing.start()
        fault.extra["ingestor_log"] = self.ing.logpath.name
        ready = self.ing.wait_log("connected to broker", timeout=30)
        fault.recovered_s = round(time.monotonic() - t, 2) if ready is not None else None
        log(f"  ingestor restarted ({self.ing.logpath.name}); connected to the broker after "
            f"{fault.recovered_s if ready is not None else '>30'} s")

    def _ingestor(self) -> Fault:
        f = Fault("ingestor", elapsed())
        pid = self.ing.kill9()
        f.detail = f"kill -9 pid {pid}, restarted at once"
        log(f"FAULT ingestor: kill -9 pid {pid} (published {self.fleet.published:,})")
        self._restart_ingestor(f)
        return f

    def _broker(self) -> Fault:
        f = Fault("broker", elapsed())
        log(f"FAULT broker: SIGTERM (persistence saved on exit), down {self.plan.broker_down_s} s "
            f"(published {self.fleet.published:,})")
        t = time.monotonic()
        self.mq.stop(signal.SIGTERM)
        f.extra["stop_s"] = round(time.monotonic() - t, 2)
        time.sleep(self.plan.broker_down_s)
        self.mq.start()
        f.down_s = round(time.monotonic() - t, 2)
        f.detail = f"SIGTERM, saved in {f.extra['stop_s']} s, started again after {f.down_s} s"
        connects = self.ing.count("connected to broker")
        back = self.ing.wait_log("connected to broker", n=connects + 1, timeout=45)
        f.extra["ingestor_reconnected_s"] = back
        deadline = time.monotonic() + 30
        while self.fleet.connected() < len(self.fleet.clients) and time.monotonic() < deadline:
            time.sleep(0.1)
        f.recovered_s = round(time.monotonic() - t, 2)
        log(f"  broker back after {f.down_s} s; ingestor reconnected {back} s later; "
            f"{self.fleet.connected()}/{len(self.fleet.clients)} publishers connected at t+{f.recovered_s} s")
        return f

    def _db_stop(self, f: Fault) -> float:
        log(f"FAULT {f.kind}: pg_ctl stop -m immediate, down {self.plan.db_down_s} s "
            f"(published {self.fleet.published:,})")
        t = time.monotonic()
        self.pg.stop("immediate")
        return t

    def _db_start(self, f: Fault, t: float) -> None:
        left = t + self.plan.db_down_s - time.monotonic()
        if left > 0:
            time.sleep(left)
        t_start = time.monotonic()
        backs = self.ing.count("database is back")
        self.pg.start()
        f.down_s = round(time.monotonic() - t, 2)
        f.extra["start_s"] = round(time.monotonic() - t_start, 2)
        log(f"  database accepting connections again after {f.down_s} s (start + recovery {f.extra['start_s']} s)")
        # the writer has been retrying a batch with backoff (up to 5 s): serving when it commits again
        if self.ing.wait_log("database is back", n=backs + 1, timeout=20) is not None:
            f.recovered_s = round(time.monotonic() - t, 2)
            log(f"  ingestor committed its retried batch at +{f.recovered_s} s")

    def _database(self) -> Fault:
        f = Fault("database", elapsed())
        t = self._db_stop(f)
        self._db_start(f, t)
        f.detail = f"immediate stop, {f.down_s} s away (crash recovery on start)"
        return f

    def _overlap(self) -> Fault:
        f = Fault("overlap", elapsed())
        t = self._db_stop(f)
        time.sleep(min(1.0, self.plan.db_down_s / 3))
        pid = self.ing.kill9()
        log(f"FAULT overlap: kill -9 ingestor pid {pid} while the database is down; restarting it at once")
        self._restart_ingestor(f)
        self._db_start(f, t)
        f.detail = (f"database immediate stop, {f.down_s} s away; ingestor pid {pid} killed -9 and restarted "
                    "while it was down")
        return f


# --- broker probe ----------------------------------------------------------------------------

def _probe_session(port: int, got: list[bytes]) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-sub", protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    return c


def _probe_one(flt: str) -> dict:
    mq = Mosquitto().start()
    try:
        got: list[bytes] = []
        sub = _probe_session(mq.port, got)
        sub.subscribe(flt, qos=1)
        time.sleep(0.5)
        mq.stop(signal.SIGTERM)  # the subscriber is still connected, as the ingestor is
        sub.loop_stop()
        mq.start()
        reasons: list[str] = []
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-pub", protocol=mqtt.MQTTv5)
        pub.on_publish = lambda cl, u, mid, rc, pr: reasons.append(str(rc))
        pub.connect("127.0.0.1", mq.port)
        pub.loop_start()
        pub.publish("probe/x", b"after-restart", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        back = _probe_session(mq.port, got)  # the same session, back without subscribing again
        time.sleep(1.5)
        back.disconnect()
        back.loop_stop()
        return {"filter": flt, "puback": reasons[0] if reasons else None, "delivered": bool(got)}
    finally:
        mq.destroy()


def probe_broker_restart() -> dict:
    """On a separate throwaway broker: does a persistent session's subscription survive a restart
    (SIGTERM, persistence on) before its client has reconnected? One plain and one shared filter;
    for each, the PUBACK reason of a message published right after the restart and whether the
    session receives it when it comes back (without subscribing again)."""
    return {"plain": _probe_one("probe/#"), "shared": _probe_one("$share/probe/probe/#")}


# --- progress --------------------------------------------------------------------------------

def row_count(dsn: str) -> int | None:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
            return c.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    except psycopg.Error:
        return None


class Progress(threading.Thread):
    def __init__(self, dsn: str, fleet: Fleet, ing: IngestorProc) -> None:
        super().__init__(name="chaos-progress", daemon=True)
        self.dsn, self.fleet, self.ing = dsn, fleet, ing
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(PROGRESS_EVERY_S):
            rows = row_count(self.dsn)
            log(f"progress: published {self.fleet.published:,}, acked {self.fleet.acks():,}, "
                f"rows {'(database down)' if rows is None else f'{rows:,}'}, "
                f"publishers connected {self.fleet.connected()}/{len(self.fleet.clients)}, "
                f"ingestor {'up' if self.ing.alive() else 'DOWN'}")


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


def audit(dsn: str, fleet: Fleet) -> dict:
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
        rejected = c.execute("SELECT reason, unit_id, detail, payload FROM rejected_messages").fetchall()
        gaps = c.execute("SELECT unit_id, from_seq, to_seq, filled FROM ingest_gaps ORDER BY 1, 2").fetchall()
        state = c.execute("SELECT unit_id, next_seq, ahead FROM unit_ingest_state").fetchall()
    stored: Counter = Counter((u, s) for u, s, _, _ in rows)
    duplicated = len(rows) - len(stored)
    ts_mismatch = [(u, s, t, published[(u, s)]) for u, s, t, _ in rows
                   if (u, s) in published and t != published[(u, s)]]
    not_published = sorted(k for k in stored if k not in published)
    lost = sorted(k for k in acked if k not in stored)
    unacked_stored = sum(1 for k in published if k not in acked and k in stored)
    lags = sorted(ct - t / 1000 for _, _, t, ct in rows if ct is not None)
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
        "seq_state_mismatch": len(state_mismatch),
        "seq_state_mismatch_sample": state_mismatch[:10],
        "units_with_state": len(state),
        "lag_s": {"p50": pct(0.50), "p99": pct(0.99), "max": round(lags[-1], 3) if lags else None,
                  "mean": round(statistics.fmean(lags), 3) if lags else None},
        "last_commit_epoch": max(commits) if commits else None,
    }


# --- run -------------------------------------------------------------------------------------

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


def main() -> int:
    global T0
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 units x 100 messages over 20 s, one fault of each kind (~45 s in all)")
    ap.add_argument("--units", type=int, help="simulated units (default 200)")
    ap.add_argument("--per-unit", type=int, help="messages per unit (default 500: 100 k in all; quick 100)")
    ap.add_argument("--duration", type=float, help="seconds the paced stream takes (default 100; quick 20)")
    ap.add_argument("--clients", type=int, help="MQTT connections carrying the units (default: one per unit)")
    ap.add_argument("--faults", help="comma-separated fault kinds in order, from ingestor, broker, database, "
                                     "overlap (default ingestor,broker,database x3 with one overlap, then ingestor)")
    ap.add_argument("--no-overlap", action="store_true", help="no overlapping fault: 'overlap' becomes 'database'")
    ap.add_argument("--shared", action="store_true",
                    help="subscribe the ingestor with a shared subscription ($share/chaos/...) as a replica set "
                         "would; Mosquitto 2.0 drops it on restart, so broker faults then lose messages")
    ap.add_argument("--db-down", type=float, help="seconds the database stays down per crash (default 4)")
    ap.add_argument("--broker-down", type=float, help="seconds the broker stays down per restart (default 1)")
    ap.add_argument("--stall", type=float,
                    help="give up draining when the row count has not moved for this long (default 60 s; quick 20)")
    ap.add_argument("--seed", type=int, help="seed of the fault jitter and the unit simulation (default 8)")
    ap.add_argument("--samples", type=int, help="samples per message, sent as one JSON array (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the ingestor logs (kept anyway on failure)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/chaos-*.json")
    args = ap.parse_args()

    for exe in ("mosquitto",):
        if shutil.which(exe) is None and not Path("/usr/sbin/mosquitto").exists():
            sys.exit(f"missing program: {exe} (run scripts/install-timescaledb.sh)")
    plan = Plan.quick_plan() if args.quick else Plan()
    for name, attr in (("units", "units"), ("per_unit", "per_unit"), ("duration", "duration"),
                       ("clients", "clients"), ("db_down", "db_down_s"), ("broker_down", "broker_down_s"),
                       ("seed", "seed"), ("samples", "samples")):
        if getattr(args, name) is not None:
            setattr(plan, attr, getattr(args, name))
    if args.faults:
        plan.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        bad = set(plan.faults) - {"ingestor", "broker", "database", "overlap"}
        if bad:
            ap.error(f"unknown fault kinds {sorted(bad)}")
    if args.no_overlap:
        plan.faults = ["database" if f == "overlap" else f for f in plan.faults]

    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="liftwatch-chaos-"))
    procs = Processes()
    pg = PgCluster(settings={"track_commit_timestamp": "on"})
    mq = Mosquitto()
    fleet: Fleet | None = None
    progress: Progress | None = None
    ing: IngestorProc | None = None
    result: dict = {}
    passed = False
    try:
        log(f"plan: {plan.units} units x {plan.per_unit} = {plan.messages:,} QoS1 messages "
            f"of {plan.samples} sample(s) over "
            f"{plan.duration:.0f} s on {plan.n_clients} connections; faults {','.join(plan.faults)}")
        broker_probe = probe_broker_restart()
        log("probe: a message published after a broker restart, before its subscriber is back: "
            + "; ".join(f"{k} subscription -> PUBACK '{v['puback']}', delivered {v['delivered']}"
                        for k, v in broker_probe.items()))
        pg.init().start()
        mq.start()
        dsn = pg.dsn(DB_NAME)
        with psycopg.connect(pg.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB_NAME}")
        migrate(dsn)
        fleet = Fleet(plan, mq.port)
        register_units(dsn, fleet.units)
        ing = IngestorProc(procs, root, dsn, mq.url, shared=args.shared)
        ing.start()
        if ing.wait_log("connected to broker", timeout=60) is None:
            raise RuntimeError(f"the ingestor did not connect:\n{ing.tail()}")
        time.sleep(0.5)  # its SUBSCRIBE went out in on_connect
        log(f"servers up (postgres :{pg.port}, mosquitto :{mq.port}); ingestor connected; "
            f"connecting {len(fleet.clients)} publishers")
        fleet.start()

        chaos = Chaos(plan, pg, mq, ing, fleet)
        T0 = time.monotonic()
        stream_wall0 = time.time()
        log("stream starts")
        streamer = threading.Thread(target=fleet.stream, name="chaos-stream", daemon=True)
        streamer.start()
        progress = Progress(dsn, fleet, ing)
        progress.start()
        chaos.run(T0)
        streamer.join()
        if fleet.error is not None:
            raise RuntimeError(f"the publisher thread failed: {fleet.error!r}")
        stream_s = fleet.stream_ended - fleet.stream_started
        log(f"stream over: {fleet.published:,} messages in {stream_s:.1f} s "
            f"(pacer at worst {fleet.behind_s:.2f} s behind); waiting for PUBACKs")
        unacked = fleet.wait_acked(timeout=180)
        all_acked_at = time.monotonic()
        log(f"publishers done: {unacked} messages without PUBACK")
        target = fleet.published * plan.samples - unacked  # in samples, as the audit counts
        drain = wait_drained(dsn, target, args.stall or (20.0 if plan.quick else 60.0), timeout=600)
        drained_at = time.monotonic()
        log(f"drain: {'complete' if drain['complete'] else 'INCOMPLETE'} after {drain['waited_s']} s, "
            f"{drain['rows']:,} rows")
        progress.halt.set()
        rc = ing.stop()
        log(f"ingestor stopped with SIGTERM, exit {rc}")

        res = audit(dsn, fleet)
        last_commit = res.pop("last_commit_epoch")
        lost_all, rejected_all = res.pop("_lost_all"), res.pop("_rejected_all")
        # wall clock of the last PUBACK ~ now - (monotonic now - all_acked_at)
        acked_wall = time.time() - (time.monotonic() - all_acked_at)
        faults = chaos.done
        kinds = Counter(f.kind for f in faults)
        logs = ing.log_lines("connected to broker", "disconnected from broker", "batch not committed",
                             "database is back", "registry reload failed", "seq gap recorded", " ERROR ")
        result = {
            "started": started.isoformat(),
            "quick": plan.quick,
            "plan": asdict(plan),
            "versions": versions(pg),
            "broker_probe": broker_probe,
            "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]},
            "stream": {"messages": fleet.published, "units": plan.units, "connections": len(fleet.clients),
                       "seconds": round(stream_s, 2), "offered_msg_s": round(fleet.published / stream_s, 1),
                       "pacer_behind_max_s": round(fleet.behind_s, 2),
                       "publisher_connects": sum(c.connects for c in fleet.clients),
                       "publisher_sessions_resumed": sum(c.sessions_resumed for c in fleet.clients),
                       "publisher_disconnects": sum(c.disconnects for c in fleet.clients),
                       "unacked_at_end": unacked},
            "faults": [asdict(f) for f in faults],
            "faults_by_kind": {
                "ingestor_kill9": kinds["ingestor"] + kinds["overlap"],
                "broker_restart": kinds["broker"],
                "database_immediate_stop": kinds["database"] + kinds["overlap"],
                "overlapping (ingestor restarted while the database was down)": kinds["overlap"],
            },
            "ingestor": {"incarnations": len(ing.logs), "final_exit_code": rc, "log_lines": dict(logs),
                         "counters": ing.counters,
                         "totals": {k: sum(c.get(k, 0) for c in ing.counters)
                                    for k in ("messages", "acked", "duplicates", "rejected", "db_errors")}},
            "drain": {**drain,
                      "after_last_puback_s": round(drained_at - all_acked_at - SETTLE_S, 2)
                      if drain["complete"] else None,
                      "last_commit_after_last_puback_s": round(last_commit - acked_wall, 2) if last_commit else None,
                      "last_commit_after_stream_end_s": round(last_commit - (stream_wall0 + stream_s), 2)
                      if last_commit else None},
            **res,
        }
        result["lost_explained"] = explain_lost(lost_all, faults, stream_wall0,
                                                {(x["unit_id"], x["seq"]) for x in rejected_all})
        failures = {k: result[k] for k in ("lost", "duplicated", "not_published", "ts_mismatch", "rejected")
                    if result[k]}
        if not drain["complete"]:
            failures["drain_incomplete"] = True
        if unacked:
            failures["unacked_at_end"] = unacked
        if res["puback_failures"] or res["not_queued_by_paho"]:
            failures["publisher_side"] = len(res["puback_failures"]) + len(res["not_queued_by_paho"])
        result["failures"] = failures
        passed = not failures
        result["passed"] = passed
        print_report(result)
    finally:
        if progress is not None:
            progress.halt.set()
        if fleet is not None:
            fleet.close()
        procs.kill_all()
        mq.destroy()
        pg.destroy()
        keep = args.keep or not passed
        if keep:
            log(f"ingestor logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if result and not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"chaos-{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if plan.quick else ''}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"results written to {out.relative_to(REPO)}")
    return 0 if passed else 1


def print_report(r: dict) -> None:
    s, d, lag = r["stream"], r["drain"], r["lag_s"]
    fk = r["faults_by_kind"]
    print()
    print(f"Chaos run{' (quick)' if r['quick'] else ''}: {s['messages']:,} QoS1 messages from {s['units']} units "
          f"on {s['connections']} connections over {s['seconds']:.0f} s ({s['offered_msg_s']:,.0f} msg/s offered)")
    print()
    print("| t (s) | fault | what happened | away (s) | serving again (s) |")
    print("|---:|---|---|---:|---:|")
    for f in r["faults"]:
        print(f"| {f['at_s']:.1f} | {f['kind']} | {f['detail']} | {f['down_s'] if f['down_s'] is not None else '—'} "
              f"| {f['recovered_s'] if f['recovered_s'] is not None else '—'} |")
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
        ("drain: last commit after the stream ended", f"{d['last_commit_after_stream_end_s']} s"),
        ("publish→commit lag p50 / p99 / max", f"{lag['p50']} / {lag['p99']} / {lag['max']} s"),
        ("ingestor incarnations", r["ingestor"]["incarnations"]),
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


if __name__ == "__main__":
    sys.exit(main())
