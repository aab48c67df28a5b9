"""One paho client publishing for the whole fleet, paced to simulated time.

A connection per unit would not scale to 10,000 units, so one shared connection carries
every unit's messages (QoS 1). A last will belongs to a connection, not to a unit, so:
each unit's retained `lift/<unit>/status` is set to `online` at the start and `offline` at
a clean end, and the connection's own will (`offline`, retained) is on
`liftwatch/sim/<client id>/status`, outside the `lift/` tree so it is never mistaken for a
unit. If the process dies, units stay `online` until the next run: consumers should treat
telemetry silence (the analytics' `offline` alert) as the truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.errors import ConfigurationError
from liftwatch.settings import MqttEndpoint

MAX_INFLIGHT = 2000  # QoS 1 messages on the wire before paho waits for PUBACKs
MAX_UNACKED = 20_000  # our own bound on paho's queue: generation pauses beyond it (memory stays flat)
CONNECT_TIMEOUT_S = 15.0
SLEEP_MIN_S = 0.005  # pacing: closer than this to the due time, publish at once


class FleetPublisher:
    def __init__(self, endpoint: MqttEndpoint, client_id: str) -> None:
        self.client_id = client_id
        self.will_topic = f"liftwatch/sim/{client_id}/status"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if endpoint.username:
            c.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            c.tls_set()
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.will_set(self.will_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        self.client = c
        self.endpoint = endpoint
        self.sent = 0
        self.acked = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: str | None = None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acked += 1

    def connect(self) -> None:
        ep = self.endpoint
        try:
            self.client.connect(ep.host, ep.port, keepalive=30)
        except OSError as exc:
            raise ConfigurationError(f"cannot connect to the MQTT broker at {ep.host}:{ep.port}: {exc}; "
                                     "is it running and LIFTWATCH_MQTT_URL right?") from exc
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused:
            self.close()
            raise ConfigurationError(f"the broker at {ep.host}:{ep.port} refused or did not answer the connection"
                                     f" ({self._refused or 'timeout'})")
        self.publish(self.will_topic, b"online", retain=True)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        while self.sent - self.acked > MAX_UNACKED:
            time.sleep(0.001)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # cannot happen with an unbounded queue; be loud if it does
            raise RuntimeError("paho refused the message: queue full")
        self.sent += 1

    def statuses(self, unit_ids: Iterable[str], value: bytes) -> int:
        n = 0
        for u in unit_ids:
            self.publish(f"lift/{u}/status", value, retain=True)
            n += 1
        return n

    def wait_acked(self, timeout: float, tick: Callable[[], None] | None = None) -> bool:
        """Block until the broker has acknowledged every publish (or timeout)."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            if tick:
                tick()
            time.sleep(0.01)
        return self.acked >= self.sent

    def close(self, *, clean: bool = True) -> None:
        if clean and self._connected.is_set() and not self._refused:
            self.publish(self.will_topic, b"offline", retain=True)
            self.wait_acked(10.0)
        self.client.disconnect()
        self.client.loop_stop()


class Pacer:
    """Maps simulated time to the wall clock: simulated time runs `speedup` times faster."""

    def __init__(self, sim_start: float, speedup: float) -> None:
        self.sim_start = sim_start
        self.speedup = speedup
        self.wall0 = time.monotonic()

    def wait_for(self, sim_t: float, tick: Callable[[], None] | None = None) -> None:
        if self.speedup <= 0:
            return
        due = self.wall0 + (sim_t - self.sim_start) / self.speedup
        while True:
            delay = due - time.monotonic()
            if delay < SLEEP_MIN_S:
                return
            time.sleep(min(delay, 0.2))
            if tick:
                tick()

