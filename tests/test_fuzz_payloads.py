"""Hostile payloads: hypothesis generates 10,000 broken messages (deep nesting, huge numbers,
NaN, wrong types, invalid UTF-8, oversize, missing fields...). In process, the contract must
refuse each with a ContractError and nothing else; through the real broker and ingestor,
every one must land in rejected_messages, none as a row, and the ingestor must survive."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from helpers import Publisher, count, register_units, telemetry_messages, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.service import IngestOptions, Ingestor
from liftwatch.contract import (
    DIRECTIONS,
    DOOR_STATES,
    MAX_PAYLOAD_BYTES,
    MODES,
    Stream,
    Topic,
)
from liftwatch.errors import ContractError
from liftwatch.settings import Settings
from liftwatch.validate import parse_message

CASES = 10_000
NOW = datetime.now(UTC)
TS = (NOW - timedelta(seconds=30)).isoformat()

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
wrong_for_number = st.one_of(st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=2),
                             st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _dumps(doc: object) -> bytes:
    """stdlib json: unlike orjson it writes integers of any size (hostile ones included)."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _base(seq: int) -> dict:
    return {"v": 1, "ts": TS, "seq": seq, "mode": "normal", "floor": 3}


@st.composite
def hostile(draw) -> tuple[str, bytes]:
    """A telemetry or event payload that breaks the contract in exactly one drawn way."""
    seq = draw(st.integers(0, 10**6))
    how = draw(st.sampled_from(["deep", "huge_int", "nan", "wrong_type", "bad_utf8", "oversize", "missing",
                                "not_object", "bad_ts", "bad_enum", "nul", "garbage", "bad_version",
                                "bad_event", "truncated"]))
    doc = _base(seq)
    if how == "deep":
        depth = draw(st.integers(1030, 3000))
        return "telemetry", b'{"v":1,"x":' + b"[" * depth + b"]" * depth + b"}"
    if how == "huge_int":
        field = draw(st.sampled_from(["seq", "floor", "run_count"]))
        low = 2**15 if field == "floor" else 2**63
        n = draw(st.one_of(st.integers(low, 2**200), st.integers(-(2**200), -(2**15) - 1 if field == "floor" else -1)))
        rest = _dumps({k: v for k, v in doc.items() if k != field})
        return "telemetry", rest[:-1] + f',"{field}":{n}}}'.encode()
    if how == "nan":
        lit = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        return "telemetry", _dumps(doc)[:-1] + b',"speed_mps":' + lit + b"}"
    if how == "wrong_type":
        field = draw(st.sampled_from(["seq", "floor", "speed_mps", "moving", "door_close_ms", "v", "ts"]))
        doc[field] = draw(wrong_for_number if field != "moving" else st.one_of(st.integers(), st.text(max_size=5)))
        if field == "v" and doc["v"] == 1:
            doc["v"] = "1"
        return "telemetry", _dumps(doc)
    if how == "bad_utf8":
        raw = _dumps(doc)
        i = draw(st.integers(1, len(raw) - 2))
        return "telemetry", raw[:i] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"])) + raw[i:]
    if how == "oversize":
        n = draw(st.integers(MAX_PAYLOAD_BYTES + 1 - 60, MAX_PAYLOAD_BYTES + 4096))
        return "telemetry", _dumps({**doc, "pad": "x" * n})
    if how == "missing":
        field = draw(st.sampled_from(["v", "ts", "seq"]))
        del doc[field]
        return "telemetry", _dumps(doc)
    if how == "not_object":
        return "telemetry", _dumps(draw(st.one_of(st.integers(), st.text(max_size=10), st.just([]),
                                                        st.lists(st.integers(), min_size=1, max_size=3))))
    if how == "bad_ts":
        doc["ts"] = draw(st.one_of(st.text(max_size=30).filter(lambda s: not _is_ts(s)),
                                   st.just("2026-11-29T12:00:00"), st.just((NOW + timedelta(hours=1)).isoformat()),
                                   st.just("1999-01-01T00:00:00Z")))
        return "telemetry", _dumps(doc)
    if how == "bad_enum":
        field = draw(st.sampled_from(["mode", "direction", "door"]))
        doc[field] = draw(st.text(min_size=1, max_size=12).filter(lambda s: s not in MODES | DIRECTIONS | DOOR_STATES))
        return "telemetry", _dumps(doc)
    if how == "nul":
        doc[draw(st.sampled_from(["note", "firmware"]))] = "a\x00" + draw(st.text(max_size=5))
        return "telemetry", _dumps(doc)
    if how == "garbage":
        return "telemetry", draw(st.binary(min_size=0, max_size=200).filter(lambda b: not _is_json(b)))
    if how == "bad_version":
        doc["v"] = draw(st.one_of(st.integers().filter(lambda v: v != 1), st.floats(allow_nan=False), st.text(max_size=3)))
        return "telemetry", _dumps(doc)
    if how == "bad_event":
        ev = {"v": 1, "ts": TS, "seq": seq, "code": "entrapment", "state": "raised"}
        field = draw(st.sampled_from(["code", "state", "detail", "source_code", "extra"]))
        if field == "extra":
            ev["surprise"] = draw(json_values)
        else:
            ev[field] = draw(st.one_of(st.integers(), st.text(max_size=10).filter(
                lambda s: s not in ("raised", "cleared") and s not in _codes()), st.lists(st.integers(), max_size=2)))
            if field == "source_code":
                ev[field] = draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(min_size=65, max_size=80)))
            if field == "detail":
                ev[field] = draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
        return "event", _dumps(ev)
    raw = _dumps(doc)  # truncated
    return "telemetry", raw[: draw(st.integers(0, len(raw) - 1))]


def _codes() -> frozenset[str]:
    from liftwatch.contract import EVENT_CODES

    return EVENT_CODES


def _is_json(b: bytes) -> bool:
    try:
        orjson.loads(b)
        return True
    except orjson.JSONDecodeError:
        return False


def _is_ts(s: str) -> bool:
    try:
        t = datetime.fromisoformat(s)
        return t.tzinfo is not None and len(s) >= 20
    except ValueError:
        return False


def _collect() -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hostile())
    def gen(case: tuple[str, bytes]) -> None:
        stream, payload = case
        try:
            parse_message(Topic("FZ-1", Stream(stream)), payload, now=NOW)
        except ContractError:
            found.append(case)
            return
        raise AssertionError(f"hostile payload accepted: {payload[:200]!r}")

    gen()
    return found


def test_hostile_payloads_are_all_rejected_in_process_and_through_the_broker(db_url: str, mqtt_url: str) -> None:
    cases = _collect()
    assert len(cases) >= CASES
    register_units(db_url, ["FZ-1"])
    settings_ = Settings(database_url=db_url, mqtt_url=mqtt_url, metrics_port=0, ingest_unit_rate=0)
    ing = Ingestor(settings_, IngestOptions(f"g{uuid.uuid4().hex[:8]}", f"fz-{uuid.uuid4().hex[:8]}",
                                                 allow_volatile_group=True))
    ing.start()
    assert ing.wait_ready(10)
    pub = Publisher(mqtt_url)
    try:
        pub.publish((f"lift/FZ-1/{stream}", payload) for stream, payload in cases)
        pub.wait(120)
        wait_until(lambda: ing.totals.messages >= len(cases), 180, interval=0.5, what="all fuzz cases taken")
        # the ingestor is alive and still writes good rows
        pub.publish(telemetry_messages("FZ-1", [2_000_000], start=datetime.now(UTC) - timedelta(days=2),
                                       step=timedelta(milliseconds=1)))
        pub.wait()
        wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") == 1, 30)
    finally:
        pub.close()
        ing.stop()
    assert count(db_url, "SELECT count(*) FROM rejected_messages") == len(cases)
    assert count(db_url, "SELECT count(*) FROM events") == 0
