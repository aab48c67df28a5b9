"""The side stream: a few extra units whose messages take the paths that a topology with two
writers could double, while the main stream (telemetry only) measures loss.

Each side unit sends, spread over the first two thirds of the stream:
  seq 0  event `entrapment` raised   -> 1 event row, 1 open alert row, 1 alert on alerts/<unit>
  (bad)  telemetry with a wrong type -> 1 rejected_messages row (reason `schema`)
  seq 2  event `entrapment` cleared  -> 1 event row; seq 1 never comes: 1 ingest_gaps row
         once the hole has been open for the gap settle time
A persistent subscriber on alerts/# counts the alerts the ingestors publish.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.chaoskit.clock import log
from bench.chaoskit.fleet import PUB_SESSION_EXPIRY_S, DeviceClient, puback_received
from liftwatch.contract import Event, encode

SPACING_S = 0.3  # between the three messages of one side unit


class AlertListener:
    """A dispatcher's view: a persistent QoS 1 subscription to alerts/# (kept across broker restarts)."""

    def __init__(self, port: int) -> None:
        self.got: Counter = Counter()  # unit -> alerts received
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-alerts", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("alerts/#", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=1, max_delay=4)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = PUB_SESSION_EXPIRY_S
        c.connect_async("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        unit = orjson.loads(msg.payload).get("unit_id")
        with self._lock:
            self.got[unit] += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SideStream:
    def __init__(self, n_units: int, port: int) -> None:
        self.units = [f"CHAOS-X-{i:03d}" for i in range(n_units)]
        self.client = DeviceClient(port, "chaos-side")
        self.alerts = AlertListener(port)
        self.kinds: dict[tuple[str, int], str] = {}  # (unit, key) -> raised | bad | cleared
        self.last_publish = 0.0  # monotonic
        self.error: BaseException | None = None

    def start(self) -> None:
        self.client.start()

    def run(self, started: float, duration: float) -> None:
        """Publish each unit's three messages at its time in 5 %..65 % of the stream."""
        try:
            n = len(self.units)
            for i, unit in enumerate(self.units):
                at = started + (0.05 + 0.6 * i / max(1, n - 1)) * duration
                if (wait := at - time.monotonic()) > 0:
                    time.sleep(wait)
                self._send(unit, 0, "raised")
                time.sleep(SPACING_S)
                now = datetime.now(UTC)
                bad = orjson.dumps({"v": 1, "ts": now.isoformat(), "seq": 1_000_000 + i, "floor": "high"})
                self.client.publish(unit, [(-1, int(now.timestamp() * 1000))], bad)
                self.kinds[(unit, -1)] = "bad"
                time.sleep(SPACING_S)
                self._send(unit, 2, "cleared")
                self.last_publish = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def _send(self, unit: str, seq: int, state: str) -> None:
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        ev = Event(time=now, unit_id=unit, seq=seq, code="entrapment", state=state, source_code="E35")
        self.client.publish(unit, [(seq, int(now.timestamp() * 1000))], encode(ev), stream="event")
        self.kinds[(unit, seq)] = state

    def acked(self) -> Counter:
        """Acknowledged side messages by kind (raised, bad, cleared)."""
        out: Counter = Counter()
        for s in self.client.sent:
            if puback_received(s.info):
                out[self.kinds[(s.unit, s.seq)]] += 1
        return out

    def audit(self, conn) -> dict:
        """What the database and the alert subscriber hold for the side units, against what was acked."""
        acked = self.acked()
        q = lambda sql: conn.execute(sql, (self.units,)).fetchone()[0]  # noqa: E731
        got = {
            "event_rows": q("SELECT count(*) FROM events WHERE unit_id = ANY(%s)"),
            "alert_rows": q("SELECT count(*) FROM alerts WHERE kind = 'entrapment' AND unit_id = ANY(%s)"),
            "rejected_rows": q("SELECT count(*) FROM rejected_messages WHERE unit_id = ANY(%s)"),
            "gap_rows": q("SELECT count(*) FROM ingest_gaps WHERE unit_id = ANY(%s)"),
            "gaps_missing": int(q("SELECT coalesce(sum(missing - filled), 0) FROM ingest_gaps WHERE unit_id = ANY(%s)")),
            "alerts_published": sum(self.alerts.got[u] for u in self.units),
            "units_alerted_more_than_once": sum(self.alerts.got[u] > 1 for u in self.units),
        }
        want = {"event_rows": acked["raised"] + acked["cleared"], "alert_rows": acked["raised"],
                "rejected_rows": acked["bad"], "gap_rows": len(self.units), "gaps_missing": len(self.units),
                "alerts_published": acked["raised"], "units_alerted_more_than_once": 0}
        return {"units": len(self.units), "acked": dict(acked), "got": got, "want": want,
                "mismatch": {k: [got[k], want[k]] for k in want if got[k] != want[k]}}

    def gaps_settled(self, conn) -> bool:
        return conn.execute("SELECT count(*) FROM ingest_gaps WHERE unit_id = ANY(%s)",
                            (self.units,)).fetchone()[0] >= len(self.units)

    def close(self) -> None:
        for closer in (self.client.close, self.alerts.close):
            try:
                closer()
            except Exception:  # noqa: BLE001, S110 - best effort at teardown
                pass


def wait_settled(side: SideStream, dsn: str, settle_s: float, timeout: float) -> float:
    """After the drain: until the side units' holes have been recorded as gaps (they must stay open
    for the settle time first). Returns the seconds waited."""
    import psycopg

    t0 = time.monotonic()
    earliest = side.last_publish + settle_s
    while time.monotonic() - t0 < timeout:
        if time.monotonic() >= earliest:
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
                    if side.gaps_settled(c):
                        time.sleep(2.0)  # a doubled gap would show up now
                        return round(time.monotonic() - t0, 2)
            except psycopg.Error:
                pass
        time.sleep(0.5)
    log("side units: gaps not recorded in time")
    return round(time.monotonic() - t0, 2)
