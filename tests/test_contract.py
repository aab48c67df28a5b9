"""The MQTT contract: every reject reason, and round trips of what the simulators publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from liftwatch.contract import (
    MAX_PAYLOAD_BYTES,
    Event,
    RejectReason,
    Stream,
    Telemetry,
    Topic,
    encode,
)
from liftwatch.errors import ContractError
from liftwatch.validate import parse_message

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
T = Topic("EL-1", Stream.TELEMETRY)
E = Topic("EL-1", Stream.EVENT)


def _reason(topic: Topic, payload: bytes) -> str:
    with pytest.raises(ContractError) as err:
        parse_message(topic, payload, now=NOW)
    return err.value.reason


def _ts(delta: timedelta = timedelta()) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def test_topic_parse_and_format() -> None:
    t = Topic.parse("lift/31101234567890123456/telemetry")
    assert t == Topic("31101234567890123456", Stream.TELEMETRY)
    assert t.format() == "lift/31101234567890123456/telemetry"
    for bad in ("lift/EL-1", "lift/EL-1/telemetry/x", "elevator/EL-1/telemetry", "lift/-x/telemetry",
                "lift/EL-1/other", "lift/" + "a" * 65 + "/event"):
        with pytest.raises(ContractError) as err:
            Topic.parse(bad)
        assert err.value.reason == RejectReason.TOPIC_MISMATCH


def test_telemetry_round_trip_keeps_extras() -> None:
    sample = Telemetry(time=NOW, unit_id="EL-1", seq=7, mode="inspection", floor=-2, direction="up", moving=True,
                       door="closed", door_zone=False, passengers=True, speed_mps=1.5, load_pct=40.0,
                       vibration_mg=12.5, motor_temp_c=55.0, leveling_mm=-3.0, door_close_ms=2900.0,
                       run_count=123456, run_hours=7890.5, extra={"firmware": "1.2.3", "nested": {"a": [1]}})
    assert parse_message(T, encode(sample), now=NOW) == [sample]


def test_array_payload_is_several_samples() -> None:
    batch = [Telemetry(time=NOW - timedelta(seconds=i), unit_id="EL-1", seq=i) for i in range(10)]
    assert parse_message(T, encode(batch), now=NOW) == batch


def test_event_round_trip_and_integer_source_code() -> None:
    ev = Event(time=NOW, unit_id="EL-1", seq=3, code="entrapment", state="raised", source_code="E35",
               detail={"floor": 3})
    assert parse_message(E, encode(ev), now=NOW) == [ev]
    raw = {"v": 1, "ts": _ts(), "seq": 4, "code": "overspeed", "state": "cleared", "source_code": 41}
    assert parse_message(E, orjson.dumps(raw), now=NOW)[0].source_code == "41"


def test_offsets_are_understood() -> None:
    raw = {"v": 1, "ts": "2026-11-29T20:00:00.250+08:00", "seq": 1}
    assert parse_message(T, orjson.dumps(raw), now=NOW)[0].time == NOW + timedelta(milliseconds=250)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (T, b"{not json", "invalid_json"),
        (T, b"\xff\xfe{}", "invalid_json"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":NaN}', "invalid_json"),
        (T, b"[" * 5000, "invalid_json"),
        (T, b'"a string"', "schema"),
        (T, b"[]", "schema"),
        (T, b'{"ts":"2026-11-29T12:00:00Z","seq":1}', "schema"),
        (T, b'{"v":1,"seq":1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z"}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":-1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":null}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1.5}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":99999999999999999999}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00","seq":1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29","seq":1}', "schema"),
        (T, b'{"v":1,"ts":1764417600,"seq":1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"mode":"flying"}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"floor":"3"}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"floor":70000}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"moving":1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"speed_mps":1e300}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"note":"a\\u0000b"}', "schema"),
        (T, b'[{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1},{"v":1,"ts":"2026-11-29T12:00:00Z"}]', "schema"),
        (T, b'{"v":2,"ts":"2026-11-29T12:00:00Z","seq":1}', "unknown_version"),
        (T, b'{"v":"1","ts":"2026-11-29T12:00:00Z","seq":1}', "unknown_version"),
        (T, b'{"v":true,"ts":"2026-11-29T12:00:00Z","seq":1}', "unknown_version"),
        (E, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"code":"elevator_on_fire","state":"raised"}', "unknown_code"),
        (E, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"code":"entrapment","state":"maybe"}', "schema"),
        (E, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"code":"entrapment","state":"raised","x":1}', "schema"),
        (T, b'{"v":1,"ts":"2026-11-29T12:06:00Z","seq":1}', "future_ts"),
        (T, b'{"v":1,"ts":"2025-01-01T00:00:00Z","seq":1}', "stale_ts"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"unit_id":"EL-2"}', "topic_mismatch"),
        (T, b'{"v":1,"ts":"2026-11-29T12:00:00Z","seq":1,"pad":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "too_large"),
    ],
)
def test_each_reject_reason(topic: Topic, payload: bytes, reason: str) -> None:
    assert _reason(topic, payload) == reason


def test_future_tolerance_boundary() -> None:
    ok = orjson.dumps({"v": 1, "ts": _ts(timedelta(minutes=5)), "seq": 1})
    assert parse_message(T, ok, now=NOW)
    late = orjson.dumps({"v": 1, "ts": _ts(timedelta(minutes=5, milliseconds=1)), "seq": 1})
    assert _reason(T, late) == "future_ts"
