"""The broker probe: does a persistent session's subscription survive a broker restart
before its client is back? (Mosquitto 2.0.11 keeps a plain one and drops a shared one.)"""

from __future__ import annotations

import signal
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from liftwatch.throwaway import Mosquitto


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
