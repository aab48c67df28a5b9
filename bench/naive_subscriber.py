"""The naive baseline for bench/ingest.py: a paho subscriber doing one INSERT + commit per message.

What a first version of an ingestor usually looks like: json.loads, one INSERT per sample,
commit, and paho's automatic PUBACK when the callback returns. Persistent session (MQTT v5,
clean_start=False, session expiry) so that it can drain a backlog published while it was away.

    naive_subscriber.py --port P --client-id ID --dsn DSN --subscribe-only   # create the session
    naive_subscriber.py --port P --client-id ID --dsn DSN --count N          # drain N messages
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

COLUMNS = ("time", "unit_id", "seq", "mode", "floor", "direction", "moving", "door", "door_zone", "passengers",
           "speed_mps", "load_pct", "vibration_mg", "motor_temp_c", "leveling_mm", "door_close_ms",
           "run_count", "run_hours")
INSERT = (f"INSERT INTO telemetry ({', '.join(COLUMNS)}) "  # noqa: S608 - constant column list
          f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--count", type=int, default=0, help="exit after this many messages")
    ap.add_argument("--subscribe-only", action="store_true", help="subscribe, then disconnect (session kept)")
    args = ap.parse_args()

    conn = psycopg.connect(args.dsn)
    done = {"n": 0}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv5)

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe("lift/+/telemetry", qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        if args.subscribe_only:
            c.disconnect()

    def on_message(c, userdata, msg):
        unit_id = msg.topic.split("/")[1]
        doc = json.loads(msg.payload)
        for s in doc if isinstance(doc, list) else [doc]:
            conn.execute(INSERT, (
                datetime.fromisoformat(s["ts"]), unit_id, s["seq"], s.get("mode"), s.get("floor"),
                s.get("direction"), s.get("moving"), s.get("door"), s.get("door_zone"), s.get("passengers"),
                s.get("speed_mps"), s.get("load_pct"), s.get("vibration_mg"), s.get("motor_temp_c"),
                s.get("leveling_mm"), s.get("door_close_ms"), s.get("run_count"), s.get("run_hours"),
            ))
        conn.commit()
        done["n"] += 1
        if args.count and done["n"] >= args.count:
            c.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect(args.host, args.port, clean_start=False, properties=props)
    client.loop_forever()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
