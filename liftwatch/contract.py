"""The MQTT contract (v1): topics, payload classes, vocabularies, reject reasons.

Shared by the ingestor (which validates, in liftwatch.validate) and the simulators (which
format). A payload is one JSON object or a JSON array of objects from one unit; the whole
message is accepted or the whole message is rejected with exactly one reason, so a reject is
never half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
