"""Ingest through the real Mosquitto into the real TimescaleDB."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from helpers import (
    Publisher,
    count,
    ingest_subprocess,
    publish,
    register_units,
    telemetry_messages,
    wait_stable,
    wait_until,
)
from paho.mqtt.enums import CallbackAPIVersion

from ingest.service import IngestOptions, Ingestor
from liftwatch.contract import MAX_PAYLOAD_BYTES, Event, Telemetry, encode
from liftwatch.settings import Settings

MakeIngestor = Callable[..., Ingestor]


@pytest.fixture()
def make_ingestor(db_url: str, mqtt_url: str) -> Iterator[MakeIngestor]:
    made: list[Ingestor] = []
    group = f"g{uuid.uuid4().hex[:8]}"  # a group of this test's own: other tests' sessions stay out

    def make(client_id: str | None = None, **overrides) -> Ingestor:
        settings = Settings(database_url=db_url, mqtt_url=overrides.pop("mqtt_url", mqtt_url), metrics_port=0,
                            gap_settle_s=overrides.pop("gap_settle_s", 0.5), **overrides)
        ing = Ingestor(settings, IngestOptions(group, client_id or f"t-{uuid.uuid4().hex[:10]}",
                                               allow_volatile_group=True))
        ing.start()
        assert ing.wait_ready(10), "ingestor did not connect and subscribe"
        made.append(ing)
        return ing

    yield make
    for ing in made:
        ing.stop()


def _rows(db_url: str, unit: str | None = None) -> int:
    if unit:
        return count(db_url, "SELECT count(*) FROM telemetry WHERE unit_id = %s", (unit,))
    return count(db_url, "SELECT count(*) FROM telemetry")


def test_samples_and_arrays_are_written(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-A"])
    make_ingestor()
    now = datetime.now(UTC) - timedelta(seconds=30)
    single = telemetry_messages("EL-A", range(0, 5), start=now)
    batch = [Telemetry(time=now + timedelta(seconds=10 + i), unit_id="EL-A", seq=5 + i, mode="inspection",
                       extra={"firmware": "2.1"}) for i in range(10)]
    ev = Event(time=now, unit_id="EL-A", seq=15, code="door_close_fault", state="raised", source_code="E30",
               detail={"floor": 3})
    publish(mqtt_url, [*single, ("lift/EL-A/telemetry", encode(batch)), ("lift/EL-A/event", encode(ev))])
    wait_until(lambda: _rows(db_url) == 15 and count(db_url, "SELECT count(*) FROM events") == 1, 20)
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT mode, extra FROM telemetry WHERE seq = 7").fetchone()
        assert row == ("inspection", {"firmware": "2.1"})
        assert c.execute("SELECT code, state, source_code, detail FROM events").fetchone() == (
            "door_close_fault", "raised", "E30", {"floor": 3})
        assert c.execute("SELECT next_seq, ahead FROM unit_ingest_state").fetchone() == (16, [])
        assert count(db_url, "SELECT count(*) FROM rejected_messages") == 0


def _bad_messages() -> dict[str, tuple[str, bytes]]:
    ts = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {
        "invalid_json": ("lift/EL-B/telemetry", b"{oops"),
        "schema": ("lift/EL-B/telemetry", orjson.dumps({"v": 1, "ts": ts, "seq": "seven"})),
        "unknown_version": ("lift/EL-B/telemetry", orjson.dumps({"v": 9, "ts": ts, "seq": 1})),
        "unknown_code": ("lift/EL-B/event", orjson.dumps({"v": 1, "ts": ts, "seq": 2, "code": "meteor", "state": "raised"})),
        "future_ts": ("lift/EL-B/telemetry", orjson.dumps({"v": 1, "ts": future, "seq": 3})),
        "unknown_unit": ("lift/NOT-REGISTERED/telemetry", orjson.dumps({"v": 1, "ts": ts, "seq": 4})),
        "topic_mismatch": ("lift/EL-B/telemetry", orjson.dumps({"v": 1, "ts": ts, "seq": 5, "unit_id": "EL-C"})),
        "too_large": ("lift/EL-B/telemetry", b'{"v":1,"pad":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}'),
    }


@pytest.mark.parametrize("reason", list(_bad_messages()))
def test_each_reject_reason_is_recorded_and_ingest_goes_on(
    db_url: str, mqtt_url: str, make_ingestor: MakeIngestor, reason: str
) -> None:
    register_units(db_url, ["EL-B"])
    ing = make_ingestor()
    topic, payload = _bad_messages()[reason]
    publish(mqtt_url, [(topic, payload)])
    wait_until(lambda: count(db_url, "SELECT count(*) FROM rejected_messages") == 1, 20)
    with psycopg.connect(db_url) as c:
        got = c.execute("SELECT reason, topic, payload_size, length(payload), detail FROM rejected_messages").fetchone()
    assert got[0] == reason, got
    assert got[1] == topic and got[2] == len(payload) and got[3] == min(len(payload), MAX_PAYLOAD_BYTES)
    assert _rows(db_url) == 0
    # the ingestor is still alive and writes the next good message
    publish(mqtt_url, telemetry_messages("EL-B", [100]))
    wait_until(lambda: _rows(db_url) == 1, 20)
    assert ing.totals.rejected == 1


def test_duplicate_publish_is_stored_once(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-D"])
    ing = make_ingestor()
    msgs = telemetry_messages("EL-D", range(50))
    publish(mqtt_url, msgs + msgs[:1])
    publish(mqtt_url, msgs)
    wait_until(lambda: ing.totals.messages == 101, 20, what="101 messages taken")
    assert _rows(db_url) == 50
    assert ing.totals.duplicates == 51


def test_seq_gap_is_recorded_once(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-G"])
    make_ingestor(gap_settle_s=0.5)
    publish(mqtt_url, telemetry_messages("EL-G", list(range(1, 11)) + list(range(16, 21))))
    wait_until(lambda: count(db_url, "SELECT count(*) FROM ingest_gaps") >= 1, 20)
    wait_stable(lambda: count(db_url, "SELECT count(*) FROM ingest_gaps"), 1, settle=1.5)
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT unit_id, from_seq, to_seq, missing FROM ingest_gaps").fetchall() == [
            ("EL-G", 11, 15, 5)]
    # a late arrival of one missing seq is counted as filled, not as a new gap
    publish(mqtt_url, telemetry_messages("EL-G", [13]))
    wait_until(lambda: count(db_url, "SELECT filled FROM ingest_gaps") == 1, 20)
    assert count(db_url, "SELECT count(*) FROM ingest_gaps") == 1


def test_out_of_order_within_settle_time_is_not_a_gap(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-O"])
    make_ingestor(gap_settle_s=30)
    publish(mqtt_url, telemetry_messages("EL-O", [1, 2, 5, 6]))
    wait_until(lambda: _rows(db_url) == 4, 20)
    publish(mqtt_url, telemetry_messages("EL-O", [3, 4]))
    wait_until(lambda: _rows(db_url) == 6, 20)
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT next_seq, ahead, hole_since FROM unit_ingest_state").fetchone() == (7, [], None)
    assert count(db_url, "SELECT count(*) FROM ingest_gaps") == 0


def test_entrapment_raises_alert_row_and_mqtt_alert(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-E"])
    make_ingestor()
    got: list[dict] = []
    arrived = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client, userdata, msg):
        got.append({"topic": msg.topic, **orjson.loads(msg.payload)})
        arrived.set()

    sub.on_message = on_message
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    sub.connect(host, int(port))
    sub.subscribe("alerts/#", qos=1)
    sub.loop_start()
    try:
        t = datetime.now(UTC) - timedelta(seconds=1)
        ev = Event(time=t, unit_id="EL-E", seq=1, code="entrapment", state="raised", source_code="E35")
        publish(mqtt_url, [("lift/EL-E/event", encode(ev))])
        assert arrived.wait(10), "no alert published on alerts/EL-E"
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got[0]["topic"] == "alerts/EL-E" and got[0]["kind"] == "entrapment"
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT kind, severity, status, source, event_time FROM alerts").fetchone()
    assert row[:4] == ("entrapment", "critical", "open", "ingest")
    assert abs((row[4] - t).total_seconds()) < 0.002


def test_two_replicas_share_the_load_exactly(db_url: str, mqtt_url: str, make_ingestor: MakeIngestor) -> None:
    units = [f"EL-R{i}" for i in range(4)]
    register_units(db_url, units)
    a, b = make_ingestor(gap_settle_s=15), make_ingestor(gap_settle_s=15)  # replicas commit out of order
    msgs = [m for u in units for m in telemetry_messages(u, range(1500))]
    publish(mqtt_url, msgs)
    assert wait_stable(lambda: _rows(db_url), 6000, timeout=60) == 6000
    assert a.totals.messages > 0 and b.totals.messages > 0
    assert a.totals.messages + b.totals.messages == 6000
    assert count(db_url, "SELECT count(*) FROM ingest_gaps") == 0  # replicas' interleaving is not loss


def test_sigterm_flushes_and_exits_cleanly(db_url: str, mqtt_url: str) -> None:
    register_units(db_url, ["EL-T"])
    proc = ingest_subprocess(db_url, mqtt_url, f"t-{uuid.uuid4().hex[:8]}", group=f"g{uuid.uuid4().hex[:8]}")
    try:
        wait_until(lambda: count(db_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'liftwatch-ingest'") == 1, 20)
        publish(mqtt_url, telemetry_messages("EL-T", range(3000)))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"ingestor stopped" in out
    # whatever it took before stopping is committed; the rest waits in the session (checked below)
    assert _rows(db_url) <= 3000


def test_kill_9_mid_stream_loses_nothing(db_url: str, mqtt_url: str) -> None:
    """kill -9 in the middle of 20,000 messages, restart with the same client id: exactly 20,000 rows."""
    register_units(db_url, [f"EL-K{i}" for i in range(10)])
    client_id, group = f"t-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    proc = ingest_subprocess(db_url, mqtt_url, client_id, group=group)
    pub = Publisher(mqtt_url)
    try:
        wait_until(lambda: count(db_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'liftwatch-ingest'") == 1, 20)
        for i in range(10):
            pub.publish(telemetry_messages(f"EL-K{i}", range(2000)))
        wait_until(lambda: _rows(db_url) >= 4000, 60, interval=0.02, what="some rows before the kill")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = _rows(db_url)
        pub.wait()
        proc = ingest_subprocess(db_url, mqtt_url, client_id, group=group)
        total = wait_stable(lambda: _rows(db_url), 20_000, timeout=120, settle=2.0)
    finally:
        proc.kill()
        pub.close()
    assert killed_at < 20_000, "the kill came too late to test anything"
    assert total == 20_000
    assert count(db_url, "SELECT count(DISTINCT (unit_id, seq)) FROM telemetry") == 20_000
    assert count(db_url, "SELECT count(*) FROM ingest_gaps") == 0


def test_flooding_unit_is_rate_limited_and_others_are_not(db_url: str, mqtt_url: str,
                                                         make_ingestor: MakeIngestor) -> None:
    register_units(db_url, ["EL-FLOOD", "EL-CALM"])
    make_ingestor(ingest_unit_rate=10, ingest_unit_burst=100)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    flood = telemetry_messages("EL-FLOOD", range(400), start=t0, step=timedelta(milliseconds=1))  # 0.4 s of device time
    calm = telemetry_messages("EL-CALM", range(50), start=t0, step=timedelta(seconds=1))  # 1 sample/s
    publish(mqtt_url, flood + calm)
    wait_until(lambda: _rows(db_url) + count(db_url, "SELECT count(*) FROM rejected_messages") == 450, 30)
    assert _rows(db_url, "EL-CALM") == 50
    # burst of 100 plus 0.4 s x 10/s refill
    assert 100 <= _rows(db_url, "EL-FLOOD") <= 105
    assert count(db_url, "SELECT count(*) FROM rejected_messages WHERE reason = 'rate_limited' AND unit_id = 'EL-FLOOD'") \
        == 400 - _rows(db_url, "EL-FLOOD")
