"""Seq bookkeeping rules, without a broker (the end-to-end cases are in test_ingest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.gaps import MAX_AHEAD, Gap, observe, settle

T0 = datetime(2026, 11, 29, tzinfo=UTC)
SETTLE = timedelta(seconds=30)


def test_contiguous_seqs_leave_no_hole() -> None:
    state, late, gaps = observe(None, "u", [5, 6, 7], T0)
    assert (state.next_seq, state.ahead, state.hole_since, late, gaps) == (8, [], None, [], [])


def test_hole_becomes_gap_only_after_settling() -> None:
    state, _, _ = observe(None, "u", [1, 2, 6], T0)
    assert (state.next_seq, state.ahead, state.hole_since) == (3, [6], T0)
    assert settle(state, T0 + SETTLE - timedelta(microseconds=1), SETTLE) == []
    assert settle(state, T0 + SETTLE, SETTLE) == [Gap("u", 3, 5)]
    assert (state.next_seq, state.ahead, state.hole_since) == (7, [], None)


def test_hole_filled_in_time_is_no_gap_and_late_seqs_are_reported() -> None:
    state, _, _ = observe(None, "u", [10, 12], T0)
    state, late, _ = observe(state, "u", [11, 9], T0 + timedelta(seconds=1))
    assert (state.next_seq, state.ahead, state.hole_since, late) == (13, [], None, [9])


def test_a_moving_hole_is_timed_afresh() -> None:
    state, _, _ = observe(None, "u", [1, 3, 5], T0)
    state, _, _ = observe(state, "u", [2], T0 + timedelta(seconds=20))
    assert state.hole_since == T0 + timedelta(seconds=20)
    assert settle(state, T0 + timedelta(seconds=40), SETTLE) == []


def test_too_much_ahead_forces_the_gap() -> None:
    state, _, gaps = observe(None, "u", [0] + list(range(10, 10 + MAX_AHEAD + 1)), T0)
    assert gaps == [Gap("u", 1, 9)]
    assert state.next_seq == 10 + MAX_AHEAD + 1 and state.ahead == []
