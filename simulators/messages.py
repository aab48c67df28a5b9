"""From samples to MQTT messages: batching, topics, payload bytes, and the bad messages.

A unit's telemetry samples are batched `samples_per_message` at a time into one JSON array;
an event is sent on its own and first flushes the unit's pending samples, so each unit's
messages leave in seq order and the ingestor never sees a hole that outlives its settle
time. Bad messages are added beside good ones (never instead of them), so the good stream
stays complete.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from simulators import seeds
from simulators.bad import BadMaker
from simulators.clock import Window
from simulators.records import TsFormatter, to_payload
from simulators.truth import BadRecord, Truth
from simulators.unit import Item

MAX_SAMPLES_PER_MESSAGE = 100  # ~30 KB of JSON: well inside the 64 KiB contract limit


@dataclass(slots=True)
class Message:
    t: float  # simulated time it is published at (its newest sample's time)
    topic: str
    payload: bytes
    kind: str  # 'telemetry' | 'event' | 'bad'
    rows: int  # rows it will become (0 for a bad message)
    reason: str | None = None  # the reject reason a bad message must get


@dataclass
class MessageCounts:
    telemetry_messages: int = 0
    telemetry_rows: int = 0
    event_messages: int = 0
    event_rows: int = 0
    bad_messages: int = 0
    bad_by_reason: Counter = field(default_factory=Counter)

    def add(self, m: Message) -> None:
        if m.kind == "telemetry":
            self.telemetry_messages += 1
            self.telemetry_rows += m.rows
        elif m.kind == "event":
            self.event_messages += 1
            self.event_rows += m.rows
        else:
            self.bad_messages += 1
            self.bad_by_reason[m.reason] += 1


class MessageMaker:
    def __init__(self, *, seed: int, window: Window, unit_ids: list[str], truth: Truth,
                 samples_per_message: int = 1, bad_fraction: float = 0.0) -> None:
        if not 1 <= samples_per_message <= MAX_SAMPLES_PER_MESSAGE:
            raise ValueError(f"samples per message must be 1..{MAX_SAMPLES_PER_MESSAGE}")
        if not 0.0 <= bad_fraction < 1.0:
            raise ValueError("bad fraction must be in [0, 1)")
        self.m = samples_per_message
        self.bad_fraction = bad_fraction
        self.seed = seed
        self.bad = BadMaker(window, unit_ids)
        self.truth = truth
        self.pending: dict[str, list[dict]] = {}
        self.pending_t: dict[str, float] = {}
        self.ts = TsFormatter()

    def _telemetry(self, unit: str) -> Message:
        batch = self.pending.pop(unit)
        t = self.pending_t.pop(unit)
        payload = orjson.dumps(batch[0] if len(batch) == 1 else batch)
        return Message(t, f"lift/{unit}/telemetry", payload, "telemetry", len(batch))

    def _maybe_bad(self, t: float, unit: str, good: dict) -> Iterator[Message]:
        # decided by a hash of (seed, unit, seq), not by a shared stream, so a unit's bad messages are
        # the same however the fleet is split across worker processes
        if self.bad_fraction and seeds.derive(self.seed, "bad", unit, good["seq"]) < self.bad_fraction * 2.0**64:
            reason, topic, payload = self.bad.make(seeds.rng(self.seed, "bad", unit, good["seq"]), unit, good)
            self.truth.bad.append(BadRecord(topic, reason.value, hashlib.sha256(payload).hexdigest(),
                                            len(payload), t))
            yield Message(t, topic, payload, "bad", 0, reason.value)

    def messages(self, items: Iterable[Item]) -> Iterator[Message]:
        """Messages in publish order; call `flush()` after the items run out."""
        m, ts = self.m, self.ts
        for item in items:
            t, unit, kind = item[0], item[3], item[4]
            payload = to_payload(item, ts(t))
            if kind == "T":
                if m == 1:
                    yield Message(t, f"lift/{unit}/telemetry", orjson.dumps(payload), "telemetry", 1)
                else:
                    batch = self.pending.setdefault(unit, [])
                    batch.append(payload)
                    self.pending_t[unit] = t
                    if len(batch) >= m:
                        yield self._telemetry(unit)
            else:
                if unit in self.pending:
                    yield self._telemetry(unit)
                yield Message(t, f"lift/{unit}/event", orjson.dumps(payload), "event", 1)
            yield from self._maybe_bad(t, unit, payload)

    def flush(self) -> Iterator[Message]:
        """The samples still waiting for a full batch, unit by unit."""
        for unit in sorted(self.pending):
            yield self._telemetry(unit)
