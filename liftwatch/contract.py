"""The MQTT contract (v1) in one place: topics, payload classes, validation, reject reasons.

Shared by the ingestor (which validates) and the simulators (which format). A payload is one
JSON object or a JSON array of objects from one unit; the whole message is accepted or the
whole message is rejected with exactly one reason, so a reject is never half-applied.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import orjson

from liftwatch.errors import ContractError

SCHEMA_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 64 * 1024  # the contract's limit; larger payloads are refused unread
UNIT_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TOPIC_PREFIX: Final = "lift"
MAX_SEQ: Final = 2**63 - 1
MAX_ABS_MEASURE: Final = 1e9  # keeps float fields inside PostgreSQL `real` and out of absurdity


class Stream(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


class RejectReason(StrEnum):
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON at all
    SCHEMA = "schema"  # JSON, but a field is missing, of the wrong type or out of range
    UNKNOWN_VERSION = "unknown_version"  # `v` is not a version this ingestor knows
    UNKNOWN_CODE = "unknown_code"  # event code outside the vocabulary
    FUTURE_TS = "future_ts"  # ts further in the future than the tolerance
    STALE_TS = "stale_ts"  # ts older than the accepted backfill window
    UNKNOWN_UNIT = "unknown_unit"  # topic names a unit the registry does not have
    TOPIC_MISMATCH = "topic_mismatch"  # topic outside the contract, or payload names another unit
    TOO_LARGE = "too_large"  # payload over MAX_PAYLOAD_BYTES
    RATE_LIMITED = "rate_limited"  # unit exceeded its message budget


MODES: Final = frozenset(
    {"normal", "inspection", "fire_return", "firefighter", "emergency_power", "earthquake",
     "out_of_service", "stopped", "unknown"}
)
DIRECTIONS: Final = frozenset({"up", "down", "none"})
DOOR_STATES: Final = frozenset({"open", "closed", "opening", "closing"})
EVENT_STATES: Final = frozenset({"raised", "cleared"})
EVENT_CODES: Final = frozenset(
    {"safety_circuit_break", "door_close_fault", "door_open_fault", "stop_outside_door_zone",
     "unintended_movement", "motor_runtime_limiter", "floor_position_lost", "prevent_restart",
     "overtravel_top", "overtravel_bottom", "entrapment", "overspeed", "door_open_while_moving",
     "moving_with_door_open", "power_failure", "brake_fault", "door_lock_fault", "alarm_button",
     "abnormal_vibration"}
)
STATUS_VALUES: Final = frozenset({"online", "offline"})


@dataclass(frozen=True, slots=True)
class Topic:
    """`lift/<unit>/<stream>`."""

    unit_id: str
    stream: Stream

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != TOPIC_PREFIX:
            raise ContractError(RejectReason.TOPIC_MISMATCH, f"topic {topic[:200]!r} is not lift/<unit>/<stream>")
        if not UNIT_ID_RE.match(parts[1]):
            raise ContractError(RejectReason.TOPIC_MISMATCH, f"unit id {parts[1][:80]!r} breaks {UNIT_ID_RE.pattern}")
        try:
            stream = Stream(parts[2])
        except ValueError:
            raise ContractError(RejectReason.TOPIC_MISMATCH, f"unknown stream {parts[2][:40]!r}") from None
        return cls(parts[1], stream)

    def format(self) -> str:
        return f"{TOPIC_PREFIX}/{self.unit_id}/{self.stream}"

    @staticmethod
    def unit_from(topic: str) -> str | None:
        """The unit id in a topic, if it has a valid one (for labelling rejects)."""
        parts = topic.split("/")
        return parts[1] if len(parts) == 3 and UNIT_ID_RE.match(parts[1]) else None


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One status sample. Field order is the `telemetry` table's column order (see COLUMNS)."""

    time: datetime
    unit_id: str
    seq: int
    mode: str | None = None
    floor: int | None = None
    direction: str | None = None
    moving: bool | None = None
    door: str | None = None
    door_zone: bool | None = None
    passengers: bool | None = None
    speed_mps: float | None = None
    load_pct: float | None = None
    vibration_mg: float | None = None
    motor_temp_c: float | None = None
    leveling_mm: float | None = None
    door_close_ms: float | None = None
    run_count: int | None = None
    run_hours: float | None = None
    extra: dict[str, Any] | None = None

    COLUMNS = ("time", "unit_id", "seq", "mode", "floor", "direction", "moving", "door", "door_zone",
               "passengers", "speed_mps", "load_pct", "vibration_mg", "motor_temp_c", "leveling_mm",
               "door_close_ms", "run_count", "run_hours", "extra")

    def as_row(self) -> tuple:
        """The `telemetry` row (COLUMNS order) the ingestor writes for this sample."""
        return (self.time, self.unit_id, self.seq, self.mode, self.floor, self.direction, self.moving, self.door,
                self.door_zone, self.passengers, self.speed_mps, self.load_pct, self.vibration_mg,
                self.motor_temp_c, self.leveling_mm, self.door_close_ms, self.run_count, self.run_hours, self.extra)

    def to_payload(self) -> dict[str, Any]:
        """The JSON object a device publishes for this sample."""
        out: dict[str, Any] = {"v": SCHEMA_VERSION, "ts": format_ts(self.time), "seq": self.seq}
        for name in self.COLUMNS[3:-1]:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.extra:
            out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Event:
    """One fault/event transition."""

    time: datetime
    unit_id: str
    seq: int
    code: str
    state: str
    source_code: str | None = None
    detail: dict[str, Any] | None = field(default=None)

    COLUMNS = ("time", "unit_id", "seq", "code", "state", "source_code", "detail")

    def as_row(self) -> tuple:
        """The `events` row (COLUMNS order) the ingestor writes for this event."""
        return (self.time, self.unit_id, self.seq, self.code, self.state, self.source_code, self.detail)

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": SCHEMA_VERSION, "ts": format_ts(self.time), "seq": self.seq,
                               "code": self.code, "state": self.state}
        if self.source_code is not None:
            out["source_code"] = self.source_code
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def format_ts(t: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a Z."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(samples: list[Telemetry] | list[Event] | Telemetry | Event) -> bytes:
    """The MQTT payload for one sample (an object) or several (an array)."""
    if isinstance(samples, list):
        return orjson.dumps([s.to_payload() for s in samples])
    return orjson.dumps(samples.to_payload())


# --- validation -------------------------------------------------------------------------------

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
    if type(value) is not str or len(value) < 20 or len(value) > 40 or value[10] not in "Tt ":
        raise _bad("ts", f"expected an RFC 3339 date-time with offset, got {_show(value)}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _bad("ts", f"not an RFC 3339 date-time: {_show(value)}") from None
    if t.tzinfo is None:
        raise _bad("ts", f"has no UTC offset: {_show(value)}")
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


def parse_rows(topic: Topic, payload: bytes, *, now: datetime | None = None, limits: Limits = Limits()) -> list[tuple]:
    """Validate one MQTT message; return its rows in the column order of `telemetry` or `events`
    (per topic.stream), or raise ContractError with the reason. The ingestor's hot path."""
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
