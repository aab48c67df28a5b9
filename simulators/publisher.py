"""One paho client publishing for the whole fleet, paced to simulated time.

A connection per unit would not scale to 10,000 units, so one shared connection carries
every unit's messages (QoS 1). A last will belongs to a connection, not to a unit, so:
each unit's retained `lift/<unit>/status` is set to `online` at the start and `offline` at
a clean end, and the connection's own will (`offline`, retained) is on
`liftwatch/sim/<client id>/status`, outside the `lift/` tree so it is never mistaken for a
unit. If the process dies, units stay `online` until the next run: consumers should treat
telemetry silence (the analytics' `offline` alert) as the truth.

The client's network loop runs in the publishing thread (no `loop_start()`): with a
separate network thread every publish wakes that thread and the two fight over the GIL,
which measured ~40 % slower. Waiting for acknowledgements and pacing both call `service()`,
which keeps the connection alive and reconnects when it drops; paho resends what was not
acknowledged (the session survives: clean_start only on the first connect).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.errors import ConfigurationError
from liftwatch.settings import MqttEndpoint

log = logging.getLogger(__name__)

# QoS 1 messages on the wire awaiting PUBACK. We enforce it ourselves and tell paho "unlimited":
# paho's own limit rescans its whole outgoing queue on every PUBACK, which made publishing
# quadratic (2,000 msg/s instead of >10,000). A broker's smaller Receive Maximum wins.
MAX_INFLIGHT = 1000
SERVICE_EVERY = 100  # publishes between reads of PUBACKs from the socket
CONNECT_TIMEOUT_S = 15.0
RECONNECT_GIVE_UP_S = 120.0
KEEPALIVE_S = 30
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
        c.max_inflight_messages_set(0)  # see MAX_INFLIGHT
        c.max_queued_messages_set(0)
        c.will_set(self.will_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        self.endpoint = endpoint
        self.sent = 0
        self.acked = 0
        self.window = MAX_INFLIGHT
        self.connected = False
        self._refused: str | None = None
        self._since_service = 0
        self._lost_at: float | None = None

    # --- callbacks (run inside service()/loop(), in this thread) -----------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        if receive_max:
            self.window = min(MAX_INFLIGHT, int(receive_max))
        self.connected = True
        self._lost_at = None

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acked += 1

    # --- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        ep = self.endpoint
        try:
            self.client.connect(ep.host, ep.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            raise ConfigurationError(f"cannot connect to the MQTT broker at {ep.host}:{ep.port}: {exc}; "
                                     "is it running and LIFTWATCH_MQTT_URL right?") from exc
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self.connected and not self._refused and time.monotonic() < deadline:
            self.client.loop(0.1)
        if not self.connected:
            self.client.disconnect()
            raise ConfigurationError(f"the broker at {ep.host}:{ep.port} refused or did not answer the connection"
                                     f" ({self._refused or 'timeout'})")
        self.publish(self.will_topic, b"online", retain=True)

    def service(self, timeout: float = 0.0) -> None:
        """Read acknowledgements, send keepalives; reconnect if the connection was lost."""
        rc = self.client.loop(timeout)
        if rc == mqtt.MQTT_ERR_SUCCESS or self.connected:
            return
        now = time.monotonic()
        if self._lost_at is None:
            self._lost_at = now
            log.warning("lost the broker connection; reconnecting", extra={"rc": str(rc)})
        if now - self._lost_at > RECONNECT_GIVE_UP_S:
            raise ConfigurationError(f"no broker connection for {RECONNECT_GIVE_UP_S:.0f} s; giving up "
                                     f"({self.sent - self.acked} messages unacknowledged)")
        time.sleep(min(1.0, max(timeout, 0.2)))
        try:
            self.client.reconnect()
        except OSError:
            pass

    # --- publishing ---------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        while self.sent - self.acked >= self.window:
            self.service(0.05)
        self.client.publish(topic, payload, qos=1, retain=retain)  # queued by paho if disconnected
        self.sent += 1
        self._since_service += 1
        if self._since_service >= SERVICE_EVERY:
            self._since_service = 0
            self.service(0.0)

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
            self.service(0.05)
            if tick:
                tick()
        return self.acked >= self.sent

    def close(self, *, clean: bool = True) -> None:
        if clean and self.connected:
            self.publish(self.will_topic, b"offline", retain=True)
            self.wait_acked(10.0)
        self.client.disconnect()
        self.client.loop(0.1)


class Pacer:
    """Maps simulated time to the wall clock: simulated time runs `speedup` times faster."""

    def __init__(self, sim_start: float, speedup: float, idle: Callable[[float], None] = time.sleep) -> None:
        self.sim_start = sim_start
        self.speedup = speedup
        self.idle = idle  # how to spend waiting time (the publisher services its connection)
        self.wall0 = time.monotonic()

    def wait_for(self, sim_t: float, tick: Callable[[], None] | None = None) -> None:
        if self.speedup <= 0:
            return
        due = self.wall0 + (sim_t - self.sim_start) / self.speedup
        while True:
            delay = due - time.monotonic()
            if delay < SLEEP_MIN_S:
                return
            self.idle(min(delay, 0.2))
            if tick:
                tick()
