"""The fast path (msgspec) and the reference validator agree on every payload.

`parse_rows` may only accept what `reference_rows` accepts, with the very same rows, and must
refuse with the reference's reason and detail; hypothesis draws payloads near the edges of
every field (types, ranges, enums, ts forms, extras, unit keys, arrays, duplicates).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
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


@st.composite
def ts_forms(draw) -> str:
    """A ts near the edge of strict RFC 3339: right or wrong in one or two places."""
    t = NOW - timedelta(seconds=draw(st.integers(-600, 90 * 86400 + 600)), microseconds=draw(st.integers(0, 999_999)))
    date = draw(st.sampled_from([t.strftime("%Y-%m-%d"), t.strftime("%Y%m%d"), t.strftime("%G-W%V-%u"),
                                 t.strftime("%Y-%j"), "2026-02-30", "2026-13-01", "0000-01-01", "2026-11-2\uff19"]))
    sep = draw(st.sampled_from(["T", "T", "T", " ", "t", "_", ""]))
    clock = draw(st.sampled_from([t.strftime("%H:%M:%S"), t.strftime("%H%M%S"), t.strftime("%H:%M"), "24:00:00",
                                  "23:59:60", "12:60:00", "1:02:03"]))
    digits = f"{t.microsecond:06d}{draw(st.integers(0, 999)):03d}"
    frac = draw(st.sampled_from(["", "", "." + digits[:draw(st.integers(1, 9))], ".", ",123",
                                 "." + digits + "12345", ".12345678901234567890"]))
    off = draw(st.sampled_from(["Z", "Z", "+00:00", "-00:00", "+08:00", "-05:30", "+23:59", "+24:00", "+05:60",
                                "z", "+0800", "+08", "+08:00:00", "+08:00:00.5", "", "Z\n", " Z"]))
    return date + sep + clock + frac + off


ts_values = st.one_of(
    st.builds(lambda d: (NOW + timedelta(seconds=d)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              st.integers(-90 * 86400 - 10, 600)),
    st.builds(lambda d: (NOW + timedelta(seconds=d)).astimezone().isoformat(), st.integers(-3600, 3600)),
    ts_forms(),
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
        how = draw(st.integers(0, 6))
        if how == 0:
            doc.pop(draw(st.sampled_from(["v", "seq", "ts"])), None)
        elif how in (1, 5):
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
        key = draw(st.sampled_from(["floor", "seq", "v", "mode", "ts"]))
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
    assert _outcome(lambda t, p, now, limits: parse_rows(t, p, window=limits.window(now)), raw) == expected
    fast = _fast_telemetry("EL-1", raw, LIMITS.window(NOW))
    if fast is not None:
        assert expected == ("rows", fast)


def test_plain_samples_take_the_fast_path() -> None:
    """The fast path must actually serve the common case, or the benchmark measures nothing."""
    one = Telemetry(NOW - timedelta(seconds=3), "EL-1", 5, "normal", 2, "up", True, "closed", False, True, 1.0, 40.0,
                    11.0, 40.0, 1.5, 3000.0, 17, 9.5)
    many = [Telemetry(NOW - timedelta(seconds=i), "EL-1", i, door_close_ms=float(i)) for i in range(10)]
    assert _fast_telemetry("EL-1", encode(one), LIMITS.window(NOW)) == [one.as_row()]
    assert _fast_telemetry("EL-1", encode(many), LIMITS.window(NOW)) == [m.as_row() for m in many]
    with_extra = Telemetry(NOW, "EL-1", 6, extra={"firmware": "2.1"})
    assert _fast_telemetry("EL-1", encode(with_extra), LIMITS.window(NOW)) is None  # extras: the reference keeps them
    assert parse_rows(T, encode(with_extra), now=NOW) == [with_extra.as_row()]


# the refusals issue #20 names, and their neighbours; each must say `schema` and name the field
NOT_RFC3339 = [
    "2026-W48-7T12:00:00Z",  # ISO week date
    "2026-333T12:00:00Z",  # ordinal date
    "20261129T120000Z",  # basic format
    "2026-11-29T120000.123Z",  # basic time
    "2026-11-29T12:00:00,123Z",  # comma fraction
    "2026-11-29T12:00:00+08:00:00",  # seconds in the offset
    "2026-11-29T12:00:00+08:00:00.5",
    "2026-11-29T12:00:00+0800",  # offset without a colon
    "2026-11-29T12:00:00+08",  # hour-only offset
    "2026-11-29T12:00+08:00",  # no seconds
    "2026-11-29T12:00:00.Z",  # empty fraction
    "2026-11-29t12:00:00z",  # lower case
    "2026-11-29T12:00:00",  # no offset
    "2026-11-29T23:59:60Z",  # leap second
    "2026-11-29T24:00:00Z",
    "2026-02-30T12:00:00Z",  # no such day
    "2026-11-29T12:00:00+24:00",  # no such offset
    "2026-11-29T12:00:00Z\n",
    "２026-11-29T12:00:00Z",  # a digit, but not ASCII
    "2026-11-29T12:00:00." + "1" * 30 + "Z",  # over 40 characters
]


@pytest.mark.parametrize("ts", NOT_RFC3339)
@pytest.mark.parametrize("array", [False, True])
def test_ts_must_be_strict_rfc3339(ts: str, array: bool) -> None:
    doc = {"v": 1, "ts": ts, "seq": 1}
    raw = json.dumps([{"v": 1, "ts": "2026-11-29T11:59:00Z", "seq": 0}, doc] if array else doc).encode()
    for fn in (reference_rows, parse_rows):
        outcome = _outcome(fn, raw)
        assert outcome[:2] == ("reject", "schema"), (fn.__name__, outcome)
        assert outcome[2].startswith("ts: "), outcome


@pytest.mark.parametrize(("ts", "expected"), [
    ("2026-11-29T11:59:00Z", datetime(2026, 11, 29, 11, 59, tzinfo=UTC)),
    ("2026-11-29 11:59:00Z", datetime(2026, 11, 29, 11, 59, tzinfo=UTC)),  # RFC 3339 5.6 allows the space
    ("2026-11-29T19:59:00.5+08:00", datetime(2026, 11, 29, 11, 59, 0, 500_000, tzinfo=UTC)),
    ("2026-11-29T06:29:00.123456789-05:30", datetime(2026, 11, 29, 11, 59, 0, 123_456, tzinfo=UTC)),  # truncated
    ("2026-11-29T11:59:00-00:00", datetime(2026, 11, 29, 11, 59, tzinfo=UTC)),
])
def test_rfc3339_forms_are_accepted_by_both_paths(ts: str, expected: datetime) -> None:
    raw = json.dumps({"v": 1, "ts": ts, "seq": 1}).encode()
    assert _fast_telemetry("EL-1", raw, LIMITS.window(NOW)) is not None  # the fast path serves it
    for fn in (reference_rows, parse_rows):
        rows = fn(T, raw, now=NOW, limits=LIMITS)
        assert rows[0][0] == expected
