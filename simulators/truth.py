"""Ground truth: what the simulator injected, so analytics can be scored against it.

Filled in while the stream is generated (faults, mode episodes, bad messages) and written
as one JSON document at the end. Times are RFC 3339 UTC; seqs let a reader join with the
`events` table exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from simulators.clock import iso


@dataclass(slots=True)
class FaultRecord:
    unit_id: str
    code: str
    cause: str  # 'random' or the degradation mechanism that produced it
    raised_at: float
    raised_seq: int
    cleared_at: float | None = None
    cleared_seq: int | None = None
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "unit_id": self.unit_id, "code": self.code, "cause": self.cause,
            "raised_at": iso(self.raised_at), "raised_seq": self.raised_seq,
            "cleared_at": iso(self.cleared_at), "cleared_seq": self.cleared_seq,
            "duration_s": None if self.cleared_at is None else round(self.cleared_at - self.raised_at, 3),
            **({"detail": self.detail} if self.detail else {}),
        }


@dataclass(slots=True)
class Episode:
    """A stretch in a mode other than normal (inspection, fire_return, out_of_service...)."""

    unit_id: str
    mode: str
    reason: str
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "mode": self.mode, "reason": self.reason,
                "start": iso(self.start), "end": iso(self.end)}


@dataclass(slots=True)
class BadRecord:
    topic: str
    reason: str
    payload_sha256: str
    size: int
    published_at: float  # simulated time it was published beside

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "reason": self.reason, "payload_sha256": self.payload_sha256,
                "size": self.size, "published_at": iso(self.published_at)}


@dataclass(slots=True)
class CommLoss:
    """A stretch in which the unit's terminal lost its connection: everything it produced then
    was lost upstream of the broker (the unit kept running; its seq counter kept counting)."""

    unit_id: str
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "start": iso(self.start), "end": iso(self.end),
                "duration_s": round(self.end - self.start, 3)}


@dataclass
class Truth:
    faults: list[FaultRecord] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    comm_losses: list[CommLoss] = field(default_factory=list)

    def raise_fault(self, unit_id: str, code: str, cause: str, t: float, seq: int,
                    detail: dict[str, Any] | None = None) -> FaultRecord:
        rec = FaultRecord(unit_id, code, cause, t, seq, detail=detail)
        self.faults.append(rec)
        return rec

    def episode(self, unit_id: str, mode: str, reason: str, start: float, end: float) -> None:
        self.episodes.append(Episode(unit_id, mode, reason, start, end))


def write_truth(path: Path, doc: dict[str, Any]) -> None:
    """Write the document (built by the runner) in one go."""
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
