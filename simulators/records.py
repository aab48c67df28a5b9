"""Items into what leaves the simulator: contract objects for COPY rows, dicts for payloads.

liftwatch.contract's Telemetry/Event define both what a device publishes and the row the
ingestor writes. For speed, the payload (live) and the row (backfill) are built straight
from the item's fields; tests/test_simulator_core.py checks, for every item of a run, that
they equal `to_payload()` and `as_row()` of the contract object and that the payload parses
back into that very row, so the simulator cannot drift from the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from liftwatch.contract import SCHEMA_VERSION, Event, Telemetry
from simulators.unit import Item

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def when(t: float) -> datetime:
    """Milliseconds, exactly as the JSON payload carries them, so backfill and live rows agree."""
    return _EPOCH + timedelta(milliseconds=round(t * 1000))


def to_contract(item: Item) -> Telemetry | Event:
    t, _, seq, uid, kind, data = item
    if kind == "T":
        return Telemetry(when(t), uid, seq, **data)
    code, state, source_code, detail = data
    return Event(when(t), uid, seq, code, state, source_code, detail)


_TEL_FIELDS: Final = Telemetry.COLUMNS[3:]  # mode ... extra, after (time, unit_id, seq)


def to_row(item: Item) -> tuple:
    """The row COPY writes: exactly `to_contract(item).as_row()` (a test holds them equal for
    every item of a run), built without the dataclass because backfill makes millions."""
    t, _, seq, uid, kind, data = item
    if kind == "T":
        get = data.get
        return (when(t), uid, seq, *[get(name) for name in _TEL_FIELDS])
    code, state, source_code, detail = data
    return (when(t), uid, seq, code, state, source_code, detail)


class TsFormatter:
    """RFC 3339 text of a ms-rounded epoch time; the date-and-second prefix is cached because
    a time-ordered stream asks for the same second many times in a row."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, t: float) -> str:
        sec, ms = divmod(round(t * 1000), 1000)
        if sec != self._sec:
            self._prefix = (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
            self._sec = sec
        return f"{self._prefix}.{ms:03d}Z"


def to_payload(item: Item, ts: str) -> dict[str, Any]:
    """The JSON object a device publishes for this item (same content as the contract's to_payload)."""
    _, _, seq, _, kind, data = item
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "ts": ts, "seq": seq}
    if kind == "T":
        extra = None
        for k, v in data.items():
            if v is not None:
                if k == "extra":
                    extra = v
                else:
                    out[k] = v
        if extra:
            out.update(extra)
        return out
    code, state, source_code, detail = data
    out["code"] = code
    out["state"] = state
    if source_code is not None:
        out["source_code"] = source_code
    if detail is not None:
        out["detail"] = detail
    return out
