"""Entrapment alerts through the real broker and ingestor, under the fleet's live load.

The fleet keeps publishing (the simulator at a speed-up, its own entrapments included) while
probe units raise `entrapment` with their ts set to the moment of publishing, as a car's
controller would. Measured per probe: the delay from the event's own time to the alert row
(`opened_at`, the ingestor's transaction) and to the `alerts/<unit>` message a subscriber
receives. A few "breach" probes report an entrapment that began 40 minutes ago (a late
report) so the pass must resolve them with `rescue_time_breach`. Afterwards one analytics
pass must resolve every probe alert with the measured duration.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.rows import dict_row

from analytics.run import PassOptions, run_pass
from bench.common import log
from liftwatch.contract import Event, Telemetry, encode
from liftwatch.throwaway import Mosquitto

PROBE_PREFIX = "PROBE"
BREACH_AGO = timedelta(minutes=40)


@dataclass
class Probe:
    unit_id: str
    at_s: float  # offset into the run when it raises
    hold_s: float  # how long until it clears
    breach: bool = False
    raised: datetime | None = None
    cleared: datetime | None = None
    received: float | None = None  # wall time the alerts/<unit> message arrived


@dataclass
class LiveConfig:
    probes: int = 200
    breach_probes: int = 5
    seconds: float = 240.0
    speedup: float = 60.0
    seed: int = 7
    prefix: str = "EV"
    units: int = 2000


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _client(url: str, client_id: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(host, int(port))
    c.loop_start()
    return c


@dataclass
class _Publisher:
    client: mqtt.Client
    seqs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, unit_id: str, make: Any) -> None:
        with self.lock:
            seq = self.seqs.get(unit_id, 0)
            self.seqs[unit_id] = seq + 1
            obj = make(seq)
            stream = "event" if isinstance(obj, Event) else "telemetry"
            self.client.publish(f"lift/{unit_id}/{stream}", encode(obj), qos=1).wait_for_publish(30)


def run_live(dsn: str, cfg: LiveConfig, workdir: Path) -> dict[str, Any]:
    rnd = random.Random(cfg.seed)
    broker = Mosquitto().start()
    procs: list[subprocess.Popen] = []
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": dsn, "LIFTWATCH_MQTT_URL": broker.url,
           "LIFTWATCH_METRICS_PORT": "0", "LIFTWATCH_LOG_LEVEL": "WARNING"}
    try:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            probes = _register_probes(conn, cfg, rnd)
            ingest = subprocess.Popen([sys.executable, "-m", "liftwatch", "ingest", "--client-id", "eval-ingest"],
                                      env=env, stdout=(workdir / "ingest.log").open("wb"), stderr=subprocess.STDOUT)
            procs.append(ingest)
            pub = _Publisher(_client(broker.url, "eval-probes"))
            _wait_ready(conn, pub, probes[0].unit_id)
            sub = _client(broker.url, "eval-alerts")
            by_unit = {p.unit_id: p for p in probes}

            def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
                p = by_unit.get(orjson.loads(msg.payload).get("unit_id"))
                if p is not None and p.received is None:
                    p.received = time.time()

            sub.on_message = on_message
            sub.subscribe("alerts/#", qos=1)
            truth = workdir / "live-truth.json"
            fleet = subprocess.Popen(
                [sys.executable, "-m", "liftwatch", "simulate", "fleet", "--units", str(cfg.units), "--prefix", cfg.prefix,
                 "--seed", str(cfg.seed), "--duration", f"{cfg.seconds * cfg.speedup:.0f}s", "--speedup", str(cfg.speedup),
                 "--faulty", "0.1", "--client-id", "eval-fleet", "--quiet", "--truth", str(truth)],
                env=env, stdout=(workdir / "fleet.log").open("wb"), stderr=subprocess.STDOUT)
            procs.append(fleet)
            log(f"live: fleet of {cfg.units} at {cfg.speedup:g}x for {cfg.seconds:.0f} s, {len(probes)} entrapment probes")
            _drive_probes(pub, probes)
            if fleet.wait(cfg.seconds + 600) != 0:
                raise RuntimeError(f"the fleet simulator failed: see {workdir / 'fleet.log'}")
            _wait_events(conn, probes)
            time.sleep(2)  # the last alerts/<unit> messages
            ingest.terminate()
            ingest.wait(60)
            sub.loop_stop()
            pub.client.loop_stop()
            t0 = time.perf_counter()
            run_pass(dsn, PassOptions(anomaly=False), now=datetime.now(UTC))
            pass_s = time.perf_counter() - t0
            return _measure(conn, probes, orjson.loads(truth.read_bytes()), pass_s, cfg)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        broker.destroy()


def _register_probes(conn: psycopg.Connection, cfg: LiveConfig, rnd: random.Random) -> list[Probe]:
    site = conn.execute("SELECT site_id, maintenance_company_id, user_unit_id FROM units WHERE kind = 'traction' "
                        "ORDER BY unit_id LIMIT 1").fetchone()
    probes = [Probe(f"{cfg.prefix}-{PROBE_PREFIX}-{i:04d}", rnd.uniform(20, cfg.seconds - 60), rnd.uniform(5, 45))
              for i in range(cfg.probes)]
    probes += [Probe(f"{cfg.prefix}-{PROBE_PREFIX}-B{i:02d}", rnd.uniform(20, cfg.seconds - 60), 0, breach=True)
               for i in range(cfg.breach_probes)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO units (unit_id, site_id, kind, maintenance_company_id, user_unit_id) "
                        "VALUES (%s, %s, 'traction', %s, %s)",
                        [(p.unit_id, site["site_id"], site["maintenance_company_id"], site["user_unit_id"]) for p in probes])
    return probes


def _wait_ready(conn: psycopg.Connection, pub: _Publisher, unit_id: str, timeout: float = 60) -> None:
    """The ingestor is ready when a sample published now is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send(unit_id, lambda seq: Telemetry(datetime.now(UTC), unit_id, seq, mode="normal"))
        time.sleep(1)
        if conn.execute("SELECT 1 FROM telemetry WHERE unit_id = %s LIMIT 1", (unit_id,)).fetchone():
            return
    raise RuntimeError("the ingestor stored nothing within a minute: see ingest.log")


def _drive_probes(pub: _Publisher, probes: list[Probe]) -> None:
    """Raise and clear on schedule: ts is the moment of publishing (breach probes: 40 minutes ago)."""
    start = time.monotonic()
    todo = sorted([(p.at_s, 0, p) for p in probes] + [(p.at_s + p.hold_s, 1, p) for p in probes if not p.breach],
                  key=lambda x: (x[0], x[1]))
    for at, step, p in todo:
        time.sleep(max(0.0, start + at - time.monotonic()))
        now = datetime.now(UTC)
        if step == 0:
            p.raised = now - BREACH_AGO if p.breach else now
            pub.send(p.unit_id, lambda seq, p=p: Telemetry(p.raised, p.unit_id, seq, mode="stopped", moving=False))
            pub.send(p.unit_id, lambda seq, p=p: Event(p.raised, p.unit_id, seq, "entrapment", "raised", "E35"))
            if p.breach:
                p.cleared = now - timedelta(minutes=1)
                pub.send(p.unit_id, lambda seq, p=p: Event(p.cleared, p.unit_id, seq, "entrapment", "cleared", "E35"))
        else:
            p.cleared = now
            pub.send(p.unit_id, lambda seq, p=p: Event(p.cleared, p.unit_id, seq, "entrapment", "cleared", "E35"))


def _wait_events(conn: psycopg.Connection, probes: list[Probe], timeout: float = 120) -> None:
    want = 2 * len(probes)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = conn.execute("SELECT count(*) AS n FROM events WHERE unit_id = ANY(%s) AND code = 'entrapment'",
                         ([p.unit_id for p in probes],)).fetchone()["n"]
        if n >= want:
            return
        time.sleep(1)
    raise RuntimeError(f"only {n} of {want} probe events were stored within {timeout:.0f} s")


def _measure(conn: psycopg.Connection, probes: list[Probe], truth: dict[str, Any], pass_s: float,
             cfg: LiveConfig) -> dict[str, Any]:
    rows: dict[str, list[dict]] = {}
    for r in conn.execute("SELECT unit_id, event_time, opened_at, status, details FROM alerts WHERE kind = 'entrapment'"):
        rows.setdefault(r["unit_id"], []).append(r)
    db_delay, mqtt_delay, problems = [], [], []
    resolved_ok = breach_ok = 0
    for p in probes:
        alerts = rows.get(p.unit_id, [])
        if len(alerts) != 1:
            problems.append(f"{p.unit_id}: {len(alerts)} entrapment alerts")
            continue
        a = alerts[0]
        if not p.breach:
            db_delay.append((a["opened_at"] - p.raised).total_seconds())
            if p.received is not None:
                mqtt_delay.append(p.received - p.raised.timestamp())
            else:
                problems.append(f"{p.unit_id}: no alerts/<unit> message")
        want = round((p.cleared - p.raised).total_seconds(), 3)
        got = a["details"].get("duration_s")
        if a["status"] == "resolved" and got is not None and abs(got - want) <= 1:
            resolved_ok += 1
        else:
            problems.append(f"{p.unit_id}: status {a['status']}, duration {got} s, expected {want} s")
        if a["details"].get("rescue_time_breach") == p.breach:
            breach_ok += p.breach
        else:
            problems.append(f"{p.unit_id}: rescue_time_breach {a['details'].get('rescue_time_breach')}")
    natural = [f for f in truth["faults"] if f["code"] == "entrapment"]
    natural_alerted = sum(
        1 for f in natural if any(abs((a["event_time"] - datetime.fromisoformat(f["raised_at"])).total_seconds()) < 0.01
                                  for a in rows.get(f["unit_id"], [])))

    def stats(v: list[float]) -> dict[str, Any]:
        return {"n": len(v), "p50": _pct(v, 0.5), "p99": _pct(v, 0.99), "max": max(v) if v else None,
                "mean": statistics.fmean(v) if v else None}

    live = truth["counts"]["live"]
    return {
        "probes": len(probes), "breach_probes": sum(p.breach for p in probes),
        "fleet": {"units": cfg.units, "speedup": cfg.speedup, "seconds": live["seconds"],
                  "messages": live["telemetry_messages"] + live["event_messages"],
                  "msg_per_s": round((live["telemetry_messages"] + live["event_messages"]) / max(live["seconds"], 1e-9))},
        "delay_to_alert_row_s": stats(db_delay), "delay_to_mqtt_alert_s": stats(mqtt_delay),
        "resolved_with_duration": resolved_ok, "breaches_flagged": breach_ok,
        "natural_entrapments": len(natural), "natural_alerted": natural_alerted,
        "resolving_pass_s": round(pass_s, 2), "problems": problems[:20],
    }
