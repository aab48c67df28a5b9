"""Publish a short demo stream for the demo units: a minute of telemetry, a fault, an
entrapment and one malformed message, then wait until the ingestor has stored it.
Replaced by `liftwatch simulate fleet` once the simulator lands (issue #4)."""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.contract import Event, Telemetry, encode
from liftwatch.settings import get_settings

UNITS = ["DEMO-001", "DEMO-002", "DEMO-003", "DEMO-004", "DEMO-005"]


def main() -> int:
    s = get_settings()
    ep = s.mqtt
    rnd = random.Random(7)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if ep.username:
        client.username_pw_set(ep.username, ep.password)
    client.connect(ep.host, ep.port)
    client.loop_start()
    now = datetime.now(UTC)
    seq0 = int(now.timestamp() * 10)  # never goes backwards across demo runs
    infos = []
    for u in UNITS:
        for i in range(60):
            t = now - timedelta(seconds=60 - i)
            sample = Telemetry(time=t, unit_id=u, seq=seq0 + i, mode="normal", floor=rnd.randint(1, 18),
                               moving=i % 3 != 0, door="closed" if i % 3 else "open",
                               door_close_ms=round(rnd.gauss(3100, 120)), vibration_mg=round(rnd.gauss(12, 2), 1),
                               motor_temp_c=round(rnd.gauss(48, 1.5), 1), speed_mps=1.6 if i % 3 else 0.0)
            infos.append(client.publish(f"lift/{u}/telemetry", encode(sample), qos=1))
    t = now - timedelta(seconds=5)
    infos.append(client.publish("lift/DEMO-003/event", encode(Event(time=t, unit_id="DEMO-003", seq=seq0 + 60,
                                code="door_close_fault", state="raised", source_code="E30")), qos=1))
    infos.append(client.publish("lift/DEMO-001/event", encode(Event(time=t, unit_id="DEMO-001", seq=seq0 + 61,
                                code="entrapment", state="raised", source_code="E35")), qos=1))
    infos.append(client.publish("lift/DEMO-002/telemetry", b'{"v":1,"ts":"yesterday","seq":1}', qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    print(f"published {len(infos)} messages for {len(UNITS)} units (one malformed, one entrapment)")
    deadline = time.monotonic() + 30
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM telemetry WHERE time >= %s", (now - timedelta(seconds=61),)).fetchone()[0]
            if n >= 300:
                print(f"ingestor stored {n} telemetry rows from this run")
                return 0
            time.sleep(0.5)
    print("the ingestor has not stored the demo stream within 30 s; see .demo/ingest.log", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
