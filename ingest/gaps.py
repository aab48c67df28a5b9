"""Per-unit seq bookkeeping: which seqs arrived, which holes stayed open long enough to be gaps.

Pure functions over a small state, so the rules are testable without a broker. The state
lives in `unit_ingest_state` and is updated inside each batch's transaction under a row
lock, so several ingestor replicas (which each see an arbitrary share of one unit's
messages) agree. A hole only becomes a gap after it has stayed open for the settle time:
replicas commit out of order, and a redelivery after a crash fills holes late.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MAX_AHEAD = 10_000  # seqs remembered beyond a hole; past this the hole is closed as a gap at once


@dataclass
class SeqState:
    unit_id: str
    next_seq: int  # lowest seq not yet seen contiguously
    ahead: list[int] = field(default_factory=list)  # sorted seqs seen beyond the hole
    hole_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    unit_id: str
    from_seq: int
    to_seq: int

    @property
    def missing(self) -> int:
        return self.to_seq - self.from_seq + 1


def _advance(state: SeqState) -> None:
    i = 0
    while i < len(state.ahead) and state.ahead[i] == state.next_seq:
        state.next_seq += 1
        i += 1
    if i:
        del state.ahead[:i]


def _close_hole(state: SeqState) -> Gap:
    gap = Gap(state.unit_id, state.next_seq, state.ahead[0] - 1)
    state.next_seq = state.ahead[0]
    _advance(state)
    return gap


def observe(state: SeqState | None, unit_id: str, seqs: list[int], now: datetime) -> tuple[SeqState, list[int], list[Gap]]:
    """Take newly stored seqs; return (new state, late seqs that may fill recorded gaps, forced gaps)."""
    seqs = sorted(set(seqs))
    if state is None:
        state = SeqState(unit_id, seqs[0])
    late: list[int] = []
    before = state.next_seq
    for s in seqs:
        if s < state.next_seq:
            late.append(s)
        elif s == state.next_seq:
            state.next_seq += 1
            _advance(state)
        else:
            i = bisect.bisect_left(state.ahead, s)
            if i == len(state.ahead) or state.ahead[i] != s:
                state.ahead.insert(i, s)
    gaps: list[Gap] = []
    while len(state.ahead) > MAX_AHEAD:
        gaps.append(_close_hole(state))
    if state.ahead and (state.hole_since is None or state.next_seq != before):
        state.hole_since = now  # a hole that moved is timed afresh: replicas fill holes late
    elif not state.ahead:
        state.hole_since = None
    return state, late, gaps


def settle(state: SeqState, now: datetime, settle_for: timedelta) -> list[Gap]:
    """Close every hole that has stayed open for `settle_for`; return them as gaps."""
    gaps: list[Gap] = []
    if state.ahead and state.hole_since is not None and now - state.hole_since >= settle_for:
        while state.ahead:
            gaps.append(_close_hole(state))
        state.hole_since = None
    return gaps
