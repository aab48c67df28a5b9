"""The write stage on the real TimescaleDB: direct COPY into the hypertable, and the ON CONFLICT
path it falls back to whenever a row may already be stored (ingest/writer.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import count, register_units

from ingest.inbox import Batch
from ingest.parser import Parsed, Parser, Registry
from ingest.ratelimit import UnitRateLimiter
from ingest.writer import BatchWriter
from liftwatch.contract import Telemetry, encode
from liftwatch.validate import Limits

UNIT = "EL-W"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def _msg(seqs: list[int], unit: str = UNIT) -> tuple[bytes, bytes]:
    """One message with these seqs (an array when more than one), 100 ms apart on the device clock."""
    samples = [Telemetry(START + timedelta(milliseconds=100 * s), unit, s, mode="normal", floor=s % 7,
                         vibration_mg=3.5, run_count=1000 + s) for s in seqs]
    return f"lift/{unit}/telemetry".encode(), encode(samples if len(samples) > 1 else samples[0])


OTHERS = [f"EL-W{i}" for i in range(5)]


class Stage:
    def __init__(self, db_url: str) -> None:
        register_units(db_url, [UNIT, *OTHERS])
        self.db_url = db_url
        self.registry = Registry(db_url, refresh_s=60)
        self.registry.load()
        self.parser = Parser(self.registry, Limits(), UnitRateLimiter(0, 0))
        self.writer = BatchWriter(db_url, gap_settle_s=3600)

    def batch(self, msgs: list[tuple[bytes, bytes]], dups: list[bool] | None = None) -> Parsed:
        n = len(msgs)
        return self.parser.parse(Batch.of([t for t, _ in msgs], [p for _, p in msgs], list(range(1, n + 1)),
                                          dups or [False] * n, 1, 0.0))

    def rows(self) -> int:
        return count(self.db_url, "SELECT count(*) FROM telemetry")

    def state(self) -> tuple:
        with psycopg.connect(self.db_url) as c:
            return c.execute("SELECT next_seq, ahead, last_time FROM unit_ingest_state WHERE unit_id = %s",
                             (UNIT,)).fetchone()

    def close(self) -> None:
        self.writer.close()
        self.registry.close()


@pytest.fixture()
def stage(db_url: str) -> Iterator[Stage]:
    s = Stage(db_url)
    yield s
    s.close()


def test_new_rows_go_straight_into_the_hypertable_and_their_seqs_are_tracked(stage: Stage) -> None:
    result = stage.writer.write(stage.batch([_msg(list(range(0, 10))), _msg([10]), _msg([14, 15])]))
    assert result.direct and result.copy_fallbacks == 0
    assert result.rows["telemetry"] == 13 and result.duplicates == 0 and stage.rows() == 13
    assert stage.state() == (11, [14, 15], START + timedelta(milliseconds=1500))
    with psycopg.connect(stage.db_url) as c:  # the row as the contract defines it, every column
        got = c.execute("SELECT time, unit_id, seq, mode, floor, vibration_mg, run_count, extra FROM telemetry "
                        "WHERE seq = 3").fetchone()
    assert got == (START + timedelta(milliseconds=300), UNIT, 3, "normal", 3, 3.5, 1003, None)


def test_a_batch_meeting_a_stored_row_is_written_through_on_conflict(stage: Stage) -> None:
    stage.writer.write(stage.batch([_msg([0, 1, 2]), _msg([3])]))
    # the device sent seq 3 again (no DUP: a fresh delivery to us), next to new samples
    result = stage.writer.write(stage.batch([_msg([3]), _msg([4, 5, 6])]))
    assert not result.direct and result.copy_fallbacks == 1
    assert result.rows["telemetry"] == 3 and result.duplicates == 1
    assert stage.rows() == 7 and stage.state()[:2] == (7, [])


def test_a_sample_twice_in_one_batch_is_stored_once(stage: Stage) -> None:
    result = stage.writer.write(stage.batch([_msg([0, 1]), _msg([2]), _msg([2])]))
    assert result.copy_fallbacks == 1 and result.duplicates == 1 and stage.rows() == 3


def test_a_broker_redelivery_takes_the_on_conflict_path_at_once(stage: Stage) -> None:
    stage.writer.write(stage.batch([_msg([0, 1])]))
    result = stage.writer.write(stage.batch([_msg([0, 1]), _msg([2])], dups=[True, False]))
    assert not result.direct and result.copy_fallbacks == 0  # no COPY attempt wasted on a known repeat
    assert result.duplicates == 2 and stage.rows() == 3
    fresh = stage.writer.write(stage.batch([_msg([3])], dups=[True]))  # DUP, but never stored: still stored
    assert not fresh.direct and fresh.rows["telemetry"] == 1 and stage.rows() == 4


def test_every_unit_of_a_batch_keeps_its_own_seq_state(stage: Stage) -> None:
    """One statement writes the state of all the batch's units: each must get its own values."""
    stage.writer.write(stage.batch([_msg([0, 1], u) for u in OTHERS]))
    later = [_msg([2, 3], OTHERS[0]), _msg([5], OTHERS[1]), _msg([4, 9, 7], OTHERS[2]), _msg([2], OTHERS[3])]
    stage.writer.write(stage.batch(later))
    with psycopg.connect(stage.db_url) as c:
        got = {r[0]: r[1:] for r in c.execute("SELECT unit_id, next_seq, ahead, hole_since IS NOT NULL "
                                              "FROM unit_ingest_state WHERE unit_id = ANY(%s)", (OTHERS,))}
    assert got == {OTHERS[0]: (4, [], False), OTHERS[1]: (2, [5], True), OTHERS[2]: (2, [4, 7, 9], True),
                   OTHERS[3]: (3, [], False), OTHERS[4]: (2, [], False)}
