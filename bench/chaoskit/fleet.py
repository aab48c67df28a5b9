"""The simulated devices: one paho MQTT v5 client per unit, QoS 1, persistent session.

A message published while the broker is away, or in flight when it went away, is kept by
paho and (re)sent on reconnect with the same bytes, so a resend can only produce a
redelivery, never a different row. Every MQTTMessageInfo is kept: the run knows exactly
which (unit, seq) the broker acknowledged.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.chaoskit.clock import log
from bench.chaoskit.plan import Plan
from bench.common import UnitSim
from liftwatch.contract import encode

PUB_SESSION_EXPIRY_S = 3600
PROGRESS_EVERY_S = 5.0


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

    def publish(self, unit: str, samples: list[tuple[int, int]], payload: bytes, stream: str = "telemetry") -> None:
        """One message carrying `samples` ((seq, ts_ms) each); every sample is audited on its own."""
        info = self.client.publish(f"lift/{unit}/{stream}", payload, qos=1)
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
