"""Items into what leaves the simulator: contract objects for COPY rows, dicts for payloads.

Backfill goes through liftwatch.contract's Telemetry/Event and their as_row(), so its rows
are the ingestor's rows by construction. The MQTT payload is built straight from the
item's fields (the hot path of a live run); tests/test_simulator_core.py checks it equals
`Telemetry.to_payload()` for every item of a run, so the two cannot drift apart.
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
