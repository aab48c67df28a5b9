"""The ingestor's stages on their own: the MQTT fast decoder, the inbox, the parse stage."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from helpers import count, register_units, telemetry_messages
from paho.mqtt.enums import CallbackAPIVersion

from ingest.inbox import Batch, Inbox
from ingest.mqttclient import IngestClient
from ingest.parser import Parser, Registry, Reject
from ingest.ratelimit import UnitRateLimiter
from ingest.writer import BatchWriter
from liftwatch.validate import Limits


def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: bytes, payload: bytes, mid: int = 0, *, qos: int = 1, dup: bool = False,
             props: bytes = b"") -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + _vbi(len(props)) + props
    body += payload
    return bytes([0x30 | (qos << 1) | (0x08 if dup else 0)]) + _vbi(len(body)) + body


class _Capture:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, topics, payloads, mids, dups, received) -> None:
        self.calls.append((list(topics), list(payloads), list(mids), list(dups)))


def _client(buf: bytes) -> tuple[IngestClient, _Capture]:
    c = IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    c.sink = cap = _Capture()
    c._rbuf, c._rpos = buf, 0
    return c, cap


def test_fast_decoder_takes_publishes_and_stops_at_anything_else() -> None:
    big = b"x" * 200  # remaining length needs two bytes
    packets = [_publish(b"lift/A/telemetry", b'{"a":1}', 7), _publish(b"lift/B/event", big, 8, dup=True),
               _publish(b"lift/C/telemetry", b"q0", qos=0), _publish(b"lift/D/telemetry", b"p", 9, props=b"\x01\x01")]
    pingresp = b"\xd0\x00"
    tail = _publish(b"lift/E/telemetry", b"after", 10)
    buf = b"".join(packets) + pingresp + tail
    c, cap = _client(buf)
    assert c._drain_publishes()
    assert cap.calls == [([b"lift/A/telemetry", b"lift/B/event", b"lift/C/telemetry", b"lift/D/telemetry"],
                          [b'{"a":1}', big, b"q0", b"p"], [7, 8, 0, 9], [False, True, False, False])]
    assert c._rpos == len(b"".join(packets))  # the PINGRESP is left for paho's own state machine
    c._rpos += len(pingresp)
    assert c._drain_publishes() and cap.calls[-1][0] == [b"lift/E/telemetry"] and c._rpos == len(buf)


def test_fast_decoder_leaves_a_split_packet_and_refuses_a_malformed_one() -> None:
    whole = _publish(b"lift/A/telemetry", b"1", 1)
    split = _publish(b"lift/A/telemetry", b"2" * 50, 2)
    c, cap = _client(whole + split[:30])
    assert c._drain_publishes()
    assert c._rpos == len(whole) and cap.calls[0][2] == [1]  # the rest waits for the next read
    bad = bytes([0x32, 4, 0, 9, 0, 1])  # topic length 9 in a 4-byte packet
    c, cap = _client(whole + bad)
    assert not c._drain_publishes()
    assert cap.calls[0][2] == [1]
    c, cap = _client(bytes([0x32, 5, 0, 1, ord("t"), 0, 0]))  # QoS 1 with packet id 0
    assert not c._drain_publishes() and not cap.calls


def _run(n: int, tag: bytes, received: float = 0.0, size: int = 10) -> Batch:
    return Batch.of([tag] * n, [tag * size] * n, list(range(1, n + 1)), [False] * n, 1, received)


def test_inbox_splits_runs_at_the_batch_size_and_keeps_order() -> None:
    inbox = Inbox(max_items=1000, max_bytes=1 << 20)
    inbox.put(_run(5, b"a"))
    inbox.put(_run(7, b"b"))
    assert len(inbox) == 12 and inbox.nbytes == 120
    first = inbox.take(8, max_wait=0.0, idle_timeout=0.1)
    assert first.topics == [b"a"] * 5 + [b"b"] * 3 and first.mids == [1, 2, 3, 4, 5, 1, 2, 3]
    assert len(inbox) == 4 and inbox.nbytes == 40
    rest = inbox.take(8, max_wait=0.0, idle_timeout=0.1)
    assert rest.mids == [4, 5, 6, 7] and len(inbox) == 0 and inbox.nbytes == 0
    assert len(inbox.take(8, max_wait=0.0, idle_timeout=0.05)) == 0


def test_redeliveries_are_not_charged_to_the_rate_limit(db_url: str) -> None:
    """A broker restart redelivers thousands of messages with DUP set: charging them again
    rejected real messages as rate_limited (found by the broker-restart test)."""
    register_units(db_url, ["EL-R"])
    registry = Registry(db_url, refresh_s=60)
    registry.load()
    parser = Parser(registry, Limits(), UnitRateLimiter(rate_per_s=1, burst=3))
    start = datetime.now(UTC) - timedelta(minutes=1)
    msgs = telemetry_messages("EL-R", range(3), start=start, step=timedelta(0))  # all at one device instant
    topics = [t.encode() for t, _ in msgs]
    payloads = [p for _, p in msgs]
    try:
        assert not any(isinstance(i, Reject) for i in parser.parse(Batch.of(topics, payloads, [1, 2, 3],
                                                                             [False] * 3, 1, 0.0)).items)
        again = parser.parse(Batch.of(topics, payloads, [4, 5, 6], [True] * 3, 2, 0.0))
        assert not any(isinstance(i, Reject) for i in again.items)  # the broker's redeliveries: free
        flood = parser.parse(Batch.of(topics, payloads, [7, 8, 9], [False] * 3, 2, 0.0))
        assert [i.reason for i in flood.items if isinstance(i, Reject)] == ["rate_limited"] * 3  # the device's repeats
    finally:
        registry.close()


def test_a_redelivered_reject_is_recorded_once(db_url: str) -> None:
    """Committed, then the process died before the PUBACK: the broker sends it again with DUP."""
    register_units(db_url, ["EL-J"])
    registry = Registry(db_url, refresh_s=60)
    registry.load()
    parser = Parser(registry, Limits(), UnitRateLimiter(0, 0))
    writer = BatchWriter(db_url, gap_settle_s=30)
    bad = [b"lift/EL-J/telemetry"], [b"{not json"]
    try:
        for dup in (False, True, True):  # first delivery, then two redeliveries
            writer.write(parser.parse(Batch.of(*bad, [1], [dup], 1, 0.0)))
        assert count(db_url, "SELECT count(*) FROM rejected_messages") == 1
        writer.write(parser.parse(Batch.of(*bad, [2], [False], 1, 0.0)))  # the device sent it again itself
        assert count(db_url, "SELECT count(*) FROM rejected_messages") == 2
        other = [b"lift/EL-J/event"], [b"{not json"]  # same payload, other topic: its own record
        writer.write(parser.parse(Batch.of(*other, [3], [True], 1, 0.0)))
        assert count(db_url, "SELECT count(*) FROM rejected_messages WHERE reason = 'invalid_json'") == 3
    finally:
        writer.close()
        registry.close()


def test_inbox_batches_are_bounded_in_payload_bytes_too() -> None:
    """Messages of many samples: the batch ends by bytes (a proxy for rows) before its count."""
    inbox = Inbox(max_items=1000, max_bytes=1 << 20)
    for _ in range(6):
        inbox.put(_run(10, b"t", time.time(), size=1000))  # runs of 10 messages of 1 kB, as socket reads bring them
    t0 = time.monotonic()
    first = inbox.take(100, max_wait=5.0, idle_timeout=0.1, batch_bytes=25_000)
    assert time.monotonic() - t0 < 1.0  # woken by the bytes, not by the 5 s window
    assert len(first) == 30 and len(inbox) == 30  # 25 kB reached inside the third run, which is not split
    assert len(inbox.take(100, max_wait=0.0, idle_timeout=0.1, batch_bytes=25_000)) == 30
