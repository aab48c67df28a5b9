"""Malformed and hostile messages, one builder per reject reason the ingestor knows.

Each is built from a real good payload of the moment (so it looks like a confused or
malicious device, not like noise) and must be refused for exactly its reason given the
order in which liftwatch.contract (and, for rate_limited, the ingestor's per-unit token
bucket) checks things. None consumes a seq of the unit's good
stream: a bad message reuses the last good seq, which the ingestor never stores because
it rejects the whole message, so no seq gap appears.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import orjson

from liftwatch.contract import MAX_PAYLOAD_BYTES, RejectReason, format_ts
from simulators.clock import Window, to_dt

REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
FUTURE_BY = timedelta(days=100)  # past the window's end: in the future while the window is acceptable at all
STALE_BY = timedelta(days=100)  # before the history's start: always older than the 90-day limit

Builder = Callable[[random.Random, str, dict, Window, list[str]], tuple[str, bytes]]


def _dump(obj: object) -> bytes:
    return orjson.dumps(obj)


def _invalid_json(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    text = _dump(good)
    variant = r.randrange(3)
    if variant == 0:
        return f"lift/{unit}/telemetry", text[: max(1, len(text) // 2)]  # truncated on the wire
    if variant == 1:
        return f"lift/{unit}/telemetry", text.replace(b'"v":1', b'"v":NaN', 1)
    return f"lift/{unit}/telemetry", b"\xff\xfe" + text  # not UTF-8


def _schema(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    bad = dict(good)
    variant = r.randrange(4)
    if variant == 0:
        bad["seq"] = str(bad["seq"])
    elif variant == 1:
        del bad["ts"]
    elif variant == 2:
        bad["floor"] = "3rd"
    else:
        bad["ts"] = bad["ts"].replace("Z", "")  # no offset
    return f"lift/{unit}/telemetry", _dump(bad)


def _unknown_version(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    return f"lift/{unit}/telemetry", _dump({**good, "v": r.choice((0, 2, 99))})


def _unknown_code(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    ev = {"v": 1, "ts": good["ts"], "seq": good["seq"], "code": r.choice(("meteor_strike", "E99", "door_jam")),
          "state": "raised"}
    return f"lift/{unit}/event", _dump(ev)


def _future_ts(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    return f"lift/{unit}/telemetry", _dump({**good, "ts": format_ts(to_dt(w.end) + FUTURE_BY)})


def _stale_ts(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    return f"lift/{unit}/telemetry", _dump({**good, "ts": format_ts(to_dt(w.history_start) - STALE_BY)})


def _unknown_unit(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    ghost = f"{unit.rsplit('-', 1)[0]}-GHOST-{r.randrange(100):02d}"
    return f"lift/{ghost}/telemetry", _dump(good)


def _topic_mismatch(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    other = r.choice([u for u in others if u != unit] or [unit + "X"])
    return f"lift/{unit}/telemetry", _dump({**good, "unit_id": other})


def _too_large(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    pad = "A" * (MAX_PAYLOAD_BYTES + r.randrange(1, 4096))
    return f"lift/{unit}/telemetry", _dump({**good, "firmware_dump": pad})


def _rate_limited(r: random.Random, unit: str, good: dict, w: Window, others: list[str]) -> tuple[str, bytes]:
    """A flood: as many samples as fit in 64 KiB (> 900), all stamped at one instant.

    More than the ingestor's per-unit burst (600 by default) in one message, so it is refused
    whatever the bucket holds. Every sample repeats the (ts, seq) of the good sample just sent,
    so even an ingestor configured with a huge burst would store nothing new."""
    one = _dump({"v": 1, "ts": good["ts"], "seq": good["seq"]})
    n = (MAX_PAYLOAD_BYTES - 2) // (len(one) + 1)
    return f"lift/{unit}/telemetry", b"[" + b",".join([one] * n) + b"]"


BUILDERS: dict[RejectReason, Builder] = {
    RejectReason.INVALID_JSON: _invalid_json, RejectReason.SCHEMA: _schema,
    RejectReason.UNKNOWN_VERSION: _unknown_version, RejectReason.UNKNOWN_CODE: _unknown_code,
    RejectReason.FUTURE_TS: _future_ts, RejectReason.STALE_TS: _stale_ts,
    RejectReason.UNKNOWN_UNIT: _unknown_unit, RejectReason.TOPIC_MISMATCH: _topic_mismatch,
    RejectReason.TOO_LARGE: _too_large, RejectReason.RATE_LIMITED: _rate_limited,
}


class BadMaker:
    """Deals reasons so that a unit's j-th bad message gets reason (unit number + j) mod 10:
    the first bad message of any ten consecutive units already covers every reason, and the
    choice does not depend on how units are split across worker processes."""

    def __init__(self, window: Window, unit_ids: list[str]) -> None:
        self.window = window
        self.others = unit_ids
        self.dealt: dict[str, int] = {}

    def make(self, r: random.Random, unit: str, good: dict) -> tuple[RejectReason, str, bytes]:
        j = self.dealt.get(unit, 0)
        self.dealt[unit] = j + 1
        digits = "".join(ch for ch in unit[-6:] if ch.isdigit())
        reason = REASONS[(int(digits or 0) + j) % len(REASONS)]
        topic, payload = BUILDERS[reason](r, unit, good, self.window, self.others)
        return reason, topic, payload
