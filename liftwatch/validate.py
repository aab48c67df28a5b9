"""Validation of MQTT payloads against the v1 contract: rows to store, or one reject reason.

Two implementations with one meaning. `reference_rows` (orjson, then field-by-field checks)
defines what is accepted and why anything is refused. `parse_rows`, the ingestor's hot path,
first tries a msgspec decoder that validates a plain telemetry sample (only contract fields,
no extras) in C while parsing; whatever that decoder or the checks after it do not accept
goes to `reference_rows`, which then accepts it (extras, unit_id keys) or names the reason.
So the fast path can only ever accept what the reference accepts, with the same rows; a
property test (tests/test_validate.py) holds the two to that.

`ts` is strict RFC 3339 on both paths (liftwatch.timestamps): the fast path checks the same
grammar inside msgspec and parses with the same `datetime.fromisoformat`, and checks the
accepted time window once per message against bounds computed once per batch (`Window`).
The profile of 10-sample messages (docs/performance.md) had the old per-sample `parse_ts`
call at 27 % of the ingestor's GIL time; per sample, one comprehension step now calls C
functions (fromisoformat, astuple) and no Python function. The strict grammar spends in the
regular expression engine what that call cost: callgrind counts 19.2 k instructions per row
of a 10-sample message before and after (most of it msgspec's JSON decoding), so this path is
now strict at the old price; the per-row saving was in the writer (ingest/writer.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from liftwatch.contract import (
    DIRECTIONS,
    DOOR_STATES,
    EVENT_CODES,
    EVENT_STATES,
    MAX_ABS_MEASURE,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    MODES,
    SCHEMA_VERSION,
    Event,
    RejectReason,
    Stream,
    Telemetry,
    Topic,
)
from liftwatch.errors import ContractError
from liftwatch.timestamps import MAX_LENGTH, RFC3339_PATTERN, parse_rfc3339


def _bad(field_name: str, why: str) -> ContractError:
    return ContractError(RejectReason.SCHEMA, f"{field_name}: {why}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _has_nul(v: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold U+0000; such a payload would poison the batch."""
    if type(v) is str:
        return "\x00" in v
    if type(v) is dict:
        return any("\x00" in k or _has_nul(x) for k, x in v.items())
    if type(v) is list:
        return any(_has_nul(x) for x in v)
    return False


def parse_ts(value: Any, *, now: datetime, future_tolerance: timedelta, max_age: timedelta) -> datetime:
    """A sample's ts: strict RFC 3339 (liftwatch.timestamps), inside [now - max_age, now + future_tolerance]."""
    if type(value) is not str:
        raise _bad("ts", f"expected an RFC 3339 date-time string, got {_show(value)}")
    try:
        t = parse_rfc3339(value)
    except ValueError:
        raise _bad("ts", f"not an RFC 3339 date-time with Z or a ±hh:mm offset: {_show(value)}") from None
    if t > now + future_tolerance:
        raise ContractError(RejectReason.FUTURE_TS, f"ts {value} is {(t - now).total_seconds():.0f} s in the future")
    if t < now - max_age:
        raise ContractError(RejectReason.STALE_TS, f"ts {value} is older than {max_age.days} days")
    return t


_TELEMETRY_KNOWN: Final = frozenset(Telemetry.COLUMNS[3:-1]) | {"v", "ts", "seq"}
_EVENT_KNOWN: Final = frozenset({"v", "ts", "seq", "code", "state", "source_code", "detail"})
_UNIT_KEYS: Final = ("unit_id", "unit")


@dataclass(frozen=True, slots=True)
class Limits:
    """The time window a sample's ts must fall in."""

    future_tolerance: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=90)

    def window(self, now: datetime) -> Window:
        return Window(now, now - self.max_age, now + self.future_tolerance)


@dataclass(frozen=True, slots=True)
class Window:
    """The ts range accepted at one moment (`Limits.window`): computed once per batch, not per sample."""

    now: datetime
    oldest: datetime
    newest: datetime


def _common(obj: Any, unit_id: str, now: datetime, limits: Limits) -> tuple[datetime, int]:
    if type(obj) is not dict:
        raise _bad("payload", f"expected a JSON object, got {type(obj).__name__}")
    if "v" not in obj:
        raise _bad("v", "missing")
    if obj["v"] != SCHEMA_VERSION or type(obj["v"]) is not int:
        raise ContractError(RejectReason.UNKNOWN_VERSION, f"v={_show(obj['v'])}, this ingestor knows v={SCHEMA_VERSION}")
    for key in _UNIT_KEYS:
        if key in obj and obj[key] != unit_id:
            raise ContractError(RejectReason.TOPIC_MISMATCH, f"payload {key}={_show(obj[key])} but topic unit is {unit_id!r}")
    if "seq" not in obj:
        raise _bad("seq", "missing")
    seq = _SEQ("seq", obj["seq"])
    if "ts" not in obj:
        raise _bad("ts", "missing")
    t = parse_ts(obj["ts"], now=now, future_tolerance=limits.future_tolerance, max_age=limits.max_age)
    return t, seq  # type: ignore[return-value]


def _chk_int(lo: int, hi: int):
    def check(name: str, v: Any) -> int:
        if type(v) is not int or not lo <= v <= hi:
            raise _bad(name, f"expected an integer in [{lo}, {hi}], got {_show(v)}")
        return v
    return check


def _chk_num(name: str, v: Any) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > MAX_ABS_MEASURE:
        raise _bad(name, f"expected a finite number, got {_show(v)}")
    return float(v)


def _chk_bool(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise _bad(name, f"expected true or false, got {_show(v)}")
    return v


def _chk_enum(allowed: frozenset[str]):
    def check(name: str, v: Any) -> str:
        if type(v) is not str or v not in allowed:
            raise _bad(name, f"expected one of {sorted(allowed)}, got {_show(v)}")
        return v
    return check


# telemetry field -> (column index, checker); only the fields a sample carries are visited
_TEL_FIELDS: Final = {
    "mode": (3, _chk_enum(MODES)), "floor": (4, _chk_int(-32768, 32767)), "direction": (5, _chk_enum(DIRECTIONS)),
    "moving": (6, _chk_bool), "door": (7, _chk_enum(DOOR_STATES)), "door_zone": (8, _chk_bool),
    "passengers": (9, _chk_bool), "speed_mps": (10, _chk_num), "load_pct": (11, _chk_num),
    "vibration_mg": (12, _chk_num), "motor_temp_c": (13, _chk_num), "leveling_mm": (14, _chk_num),
    "door_close_ms": (15, _chk_num), "run_count": (16, _chk_int(0, MAX_SEQ)), "run_hours": (17, _chk_num),
}
_SEQ: Final = _chk_int(0, MAX_SEQ)
_TEL_SKIP: Final = frozenset({"v", "ts", "seq", *_UNIT_KEYS})
assert tuple(k for k, _ in sorted(_TEL_FIELDS.items(), key=lambda kv: kv[1][0])) == Telemetry.COLUMNS[3:-1]


def _telemetry_row(obj: Any, unit_id: str, now: datetime, limits: Limits) -> tuple:
    t, seq = _common(obj, unit_id, now, limits)
    row: list[Any] = [t, unit_id, seq, None, None, None, None, None, None, None, None, None, None, None, None,
                      None, None, None, None]
    extra = None
    for k, v in obj.items():
        spec = _TEL_FIELDS.get(k)
        if spec is not None:
            if v is not None:
                row[spec[0]] = spec[1](k, v)
        elif k not in _TEL_SKIP:
            if extra is None:
                extra = {}
            extra[k] = v
    if extra is not None:
        if _has_nul(extra):
            raise _bad("extra", "contains U+0000, which cannot be stored")
        row[18] = extra
    return tuple(row)


def _event_row(obj: Any, unit_id: str, now: datetime, limits: Limits) -> tuple:
    t, seq = _common(obj, unit_id, now, limits)
    code = obj.get("code")
    if type(code) is not str:
        raise _bad("code", f"expected a string, got {_show(code)}")
    if code not in EVENT_CODES:
        raise ContractError(RejectReason.UNKNOWN_CODE, f"code {_show(code)} is not in the v1 vocabulary")
    state = obj.get("state")
    if type(state) is not str or state not in EVENT_STATES:
        raise _bad("state", f"expected 'raised' or 'cleared', got {_show(state)}")
    source_code = obj.get("source_code")
    if source_code is not None:
        if type(source_code) is int:
            source_code = str(source_code)
        if type(source_code) is not str or len(source_code) > 64 or "\x00" in source_code:
            raise _bad("source_code", f"expected a short string or integer, got {_show(obj.get('source_code'))}")
    detail = obj.get("detail")
    if detail is not None and (type(detail) is not dict or _has_nul(detail)):
        raise _bad("detail", "expected a JSON object without U+0000")
    unknown = set(obj) - _EVENT_KNOWN - set(_UNIT_KEYS)
    if unknown:
        raise _bad("payload", f"unknown event fields {sorted(unknown)[:5]} (put extras in detail)")
    return (t, unit_id, seq, code, state, source_code, detail)


def reference_rows(topic: Topic, payload: bytes, *, now: datetime | None = None,
                   limits: Limits = Limits()) -> list[tuple]:
    """Validate one MQTT message; return its rows in the column order of `telemetry` or `events`
    (per topic.stream), or raise ContractError with the reason. The definition of what the
    contract accepts, and of every reject reason; `parse_rows` only adds a fast path."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(RejectReason.INVALID_JSON, str(exc)[:200]) from None
    now = now or datetime.now(UTC)
    if topic.stream is Stream.TELEMETRY:
        build = _telemetry_row
    elif topic.stream is Stream.EVENT:
        build = _event_row
    else:
        raise ContractError(RejectReason.TOPIC_MISMATCH, "status messages are not stored as samples")
    if type(doc) is list:
        if not doc:
            raise _bad("payload", "empty array")
        return [build(item, topic.unit_id, now, limits) for item in doc]
    return [build(doc, topic.unit_id, now, limits)]


def parse_message(
    topic: Topic, payload: bytes, *, now: datetime | None = None, limits: Limits = Limits()
) -> list[Telemetry] | list[Event]:
    """Validate one MQTT message; return its samples as contract objects (see parse_rows)."""
    cls = Telemetry if topic.stream is Stream.TELEMETRY else Event
    return [cls(*row) for row in parse_rows(topic, payload, now=now, limits=limits)]


# --- the fast path ------------------------------------------------------------------------------

_Num = Annotated[float, msgspec.Meta(ge=-MAX_ABS_MEASURE, le=MAX_ABS_MEASURE)]  # ints arrive as float
# ts: the strict RFC 3339 grammar, checked by msgspec in C while decoding; the calendar by fromisoformat
_Ts = Annotated[str, msgspec.Meta(pattern=RFC3339_PATTERN, max_length=MAX_LENGTH)]


class _PlainSample(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A telemetry sample with contract fields only; fields in `telemetry` column order from seq
    on, so `astuple(...)[:16]` is the row from seq to run_hours. Any other key: not this path."""

    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    mode: Literal[tuple(sorted(MODES))] | None = None  # type: ignore[valid-type]
    floor: Annotated[int, msgspec.Meta(ge=-32768, le=32767)] | None = None
    direction: Literal[tuple(sorted(DIRECTIONS))] | None = None  # type: ignore[valid-type]
    moving: bool | None = None
    door: Literal[tuple(sorted(DOOR_STATES))] | None = None  # type: ignore[valid-type]
    door_zone: bool | None = None
    passengers: bool | None = None
    speed_mps: _Num | None = None
    load_pct: _Num | None = None
    vibration_mg: _Num | None = None
    motor_temp_c: _Num | None = None
    leveling_mm: _Num | None = None
    door_close_ms: _Num | None = None
    run_count: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    run_hours: _Num | None = None
    v: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    ts: _Ts


assert _PlainSample.__struct_fields__[:16] == Telemetry.COLUMNS[2:18]
_FAST_DECODER: Final = msgspec.json.Decoder(_PlainSample | list[_PlainSample])
_astuple = msgspec.structs.astuple
_fromiso = datetime.fromisoformat
_time = itemgetter(0)


def _fast_telemetry(unit_id: str, payload: bytes, window: Window) -> list[tuple] | None:
    """The rows of a plain telemetry payload, or None when the reference must decide.

    msgspec decodes and checks every field in C (ts against the RFC 3339 grammar); per sample
    one comprehension step calls fromisoformat and astuple and builds the row, calling no
    Python function. The window is checked on the message's oldest and newest ts."""
    try:
        doc = _FAST_DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        if type(doc) is list:
            if not doc:
                return None
            rows = [(_fromiso(s.ts), unit_id, *_astuple(s)[:16], None) for s in doc]
            if min(map(_time, rows)) < window.oldest or max(map(_time, rows)) > window.newest:
                return None
            return rows
        t = _fromiso(doc.ts)
    except ValueError:  # a day or offset that does not exist: the reference names it
        return None
    if t < window.oldest or t > window.newest:
        return None
    return [(t, unit_id, *_astuple(doc)[:16], None)]


def parse_rows(topic: Topic, payload: bytes, *, now: datetime | None = None, limits: Limits = Limits(),
               window: Window | None = None) -> list[tuple]:
    """Validate one MQTT message (see `reference_rows`): the ingestor's hot path. `window`, when
    given, must be `limits.window(now)` (the parse stage computes it once per batch)."""
    if window is not None:
        now = window.now
    if topic.stream is Stream.TELEMETRY and len(payload) <= MAX_PAYLOAD_BYTES:
        if window is None:
            now = now or datetime.now(UTC)
            window = limits.window(now)
        rows = _fast_telemetry(topic.unit_id, payload, window)
        if rows is not None:
            return rows
        now = window.now
    return reference_rows(topic, payload, now=now, limits=limits)
