"""The fast path (msgspec) and the reference validator agree on every payload.

`parse_rows` may only accept what `reference_rows` accepts, with the very same rows, and must
refuse with the reference's reason and detail; hypothesis draws payloads near the edges of
every field (types, ranges, enums, ts forms, extras, unit keys, arrays, duplicates).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftwatch.contract import (
    DIRECTIONS,
    DOOR_STATES,
    MAX_SEQ,
    MODES,
    Stream,
    Telemetry,
    Topic,
    encode,
)
from liftwatch.errors import ContractError
from liftwatch.validate import Limits, _fast_telemetry, parse_rows, reference_rows

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
T = Topic("EL-1", Stream.TELEMETRY)
LIMITS = Limits()

ints = st.one_of(st.integers(-40000, 40000), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 32767, 32768,
                 -32768, -32769, MAX_SEQ, MAX_SEQ + 1]))
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e9, -1e9, 1.0000001e9, -0.0]))
anything = st.one_of(st.none(), st.booleans(), ints, floats, st.text(max_size=8), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
ts_values = st.one_of(
    st.builds(lambda d: (NOW + timedelta(seconds=d)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              st.integers(-90 * 86400 - 10, 600)),
    st.builds(lambda d: (NOW + timedelta(seconds=d)).astimezone().isoformat(), st.integers(-3600, 3600)),
    st.sampled_from(["2026-11-29T12:00:00", "2026-11-29 12:00:00Z", "2026-11-29t12:00:00z", "2026-11-29T12:00:00+0800",
                     "2026-11-29T12:00:00.123456789Z", "2026-11-29T12:00:00.1234567890123456789012345Z", "",
                     "2026-13-29T12:00:00Z", "2026-11-29T12:00:00\x00Z"]),
    anything)
ENUMS = {"mode": MODES, "direction": DIRECTIONS, "door": DOOR_STATES}
FIELDS = Telemetry.COLUMNS[3:-1]


def _valid(field: str):
    if field in ENUMS:
        return st.one_of(st.sampled_from(sorted(ENUMS[field])), st.none())
    if field in ("moving", "door_zone", "passengers"):
        return st.one_of(st.booleans(), st.none())
    if field == "floor":
        return st.integers(-32768, 32767)
    if field == "run_count":
        return st.integers(0, MAX_SEQ)
    return st.one_of(st.floats(-1e9, 1e9), st.integers(-10**9, 10**9), st.none())


def _edge(field: str):
    """Values near or past the edge of what `field` takes (some still valid)."""
    if field in ENUMS:
        return st.one_of(st.text(max_size=12), anything, st.sampled_from([s.upper() for s in ENUMS[field]]))
    return st.one_of(ints, floats, anything)


@st.composite
def sample(draw) -> dict:
    """A valid sample, then (often) one or two changes that may break it."""
    doc: dict = {"v": 1, "seq": draw(st.integers(0, 10**9)),
                 "ts": (NOW - timedelta(seconds=draw(st.integers(0, 86400)))).isoformat()}
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=len(FIELDS), unique=True)):
        doc[f] = draw(_valid(f))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        how = draw(st.integers(0, 5))
        if how == 0:
            doc.pop(draw(st.sampled_from(["v", "seq", "ts"])), None)
        elif how == 1:
            doc["ts"] = draw(ts_values)
        elif how == 2:
            doc[draw(st.sampled_from(["firmware", "unit_id", "unit", "extra", "x\x00"]))] = draw(
                st.one_of(st.just("EL-1"), st.just("EL-2"), anything))
        elif how == 3:
            doc[draw(st.sampled_from(["v", "seq"]))] = draw(st.one_of(ints, anything))
        else:
            f = draw(st.sampled_from(FIELDS))
            doc[f] = draw(_edge(f))
    return doc


@st.composite
def payload(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        body = _dumps(draw(st.lists(sample(), max_size=4)))
    elif kind == 1:  # a key twice: JSON allows it, both parsers keep the last
        doc = draw(sample())
        raw = _dumps(doc)
        key = draw(st.sampled_from(["floor", "seq", "v", "mode"]))
        return raw[:-1] + (b"," if len(raw) > 2 else b"") + b'"' + key.encode() + b'":' + _dumps(draw(anything)) + b"}"
    elif kind == 2:  # a lone surrogate escape: orjson refuses it, msgspec might not
        doc = draw(sample())
        doc["ts"] = "@"
        body = _dumps(doc).replace(b'"@"', b'"\\ud800"')
    else:
        body = _dumps(draw(sample()))
    if not draw(st.integers(0, 15)):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.sampled_from([b"", b" ", b"x", b"\xff", b"NaN", b"1e999"])) + body[cut:]
    return body


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()  # big ints too, unlike orjson


def _outcome(fn, payload: bytes):
    try:
        return "rows", fn(T, payload, now=NOW, limits=LIMITS)
    except ContractError as exc:
        return "reject", exc.reason, exc.detail


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload())
def test_fast_path_agrees_with_the_reference(raw: bytes) -> None:
    expected = _outcome(reference_rows, raw)
    assert _outcome(parse_rows, raw) == expected
    fast = _fast_telemetry("EL-1", raw, NOW, LIMITS)
    if fast is not None:
        assert expected == ("rows", fast)


def test_plain_samples_take_the_fast_path() -> None:
    """The fast path must actually serve the common case, or the benchmark measures nothing."""
    one = Telemetry(NOW - timedelta(seconds=3), "EL-1", 5, "normal", 2, "up", True, "closed", False, True, 1.0, 40.0,
                    11.0, 40.0, 1.5, 3000.0, 17, 9.5)
    many = [Telemetry(NOW - timedelta(seconds=i), "EL-1", i, door_close_ms=float(i)) for i in range(10)]
    assert _fast_telemetry("EL-1", encode(one), NOW, LIMITS) == [one.as_row()]
    assert _fast_telemetry("EL-1", encode(many), NOW, LIMITS) == [m.as_row() for m in many]
    with_extra = Telemetry(NOW, "EL-1", 6, extra={"firmware": "2.1"})
    assert _fast_telemetry("EL-1", encode(with_extra), NOW, LIMITS) is None  # extras: the reference keeps them
    assert parse_rows(T, encode(with_extra), now=NOW) == [with_extra.as_row()]
