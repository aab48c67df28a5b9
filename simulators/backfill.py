"""History straight into the hypertables with binary COPY: days of data in seconds.

Rows are liftwatch.contract's Telemetry/Event.as_row(), the very tuples the ingestor
writes, so analytics cannot tell backfill from live data. Units are drained one after the
other (COPY does not care about order across units, and skipping the time-ordered merge
saves a tenth of the work); each unit's stream is handed back positioned at its first live
item. Afterwards unit_ingest_state is moved past each unit's last history seq, as the
ingestor would have done, so the live part (over MQTT, with later seqs) is no gap or replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain

import psycopg

from liftwatch.contract import Event, Telemetry
from simulators.records import to_row, when
from simulators.unit import Item

COMMIT_EVERY_ROWS = 200_000  # one transaction per chunk: bounded memory and visible progress
# column types of `telemetry` and `events` in COLUMNS order (liftwatch/migrations/0002_timeseries.sql);
# the ingestor keeps its own copy (ingest/writer.py): simulators must not import ingest
TEL_TYPES = ["timestamptz", "text", "int8", "text", "int2", "text", "bool", "text", "bool", "bool",
             "float4", "float4", "float4", "float4", "float4", "float4", "int8", "float8", "jsonb"]
EV_TYPES = ["timestamptz", "text", "int8", "text", "text", "text", "jsonb"]
COPY_TEL = f"COPY telemetry ({', '.join(Telemetry.COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_EV = f"COPY events ({', '.join(Event.COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_STATE = """
INSERT INTO unit_ingest_state (unit_id, next_seq, last_time) VALUES (%s, %s, %s)
ON CONFLICT (unit_id) DO UPDATE SET next_seq = GREATEST(unit_ingest_state.next_seq, EXCLUDED.next_seq),
    last_time = GREATEST(unit_ingest_state.last_time, EXCLUDED.last_time)
 WHERE unit_ingest_state.ahead = '{}'"""

Progress = Callable[[int, int], None]  # (units done, rows so far)


@dataclass
class BackfillCounts:
    telemetry_rows: int = 0
    event_rows: int = 0
    last: dict[str, tuple[int, float]] = field(default_factory=dict)  # unit -> (last seq, its time)

    @property
    def rows(self) -> int:
        return self.telemetry_rows + self.event_rows


class _Sink:
    """Buffers rows and COPYs them in chunks (or only counts them, for a dry run)."""

    def __init__(self, conn: psycopg.Connection | None, counts: BackfillCounts) -> None:
        self.conn = conn
        self.counts = counts
        self.tel: list[tuple] = []
        self.ev: list[tuple] = []

    def add(self, item: Item) -> None:
        if self.conn is None:
            if item[4] == "T":
                self.counts.telemetry_rows += 1
            else:
                self.counts.event_rows += 1
            return
        (self.tel if item[4] == "T" else self.ev).append(to_row(item))

    def full(self) -> bool:
        return len(self.tel) + len(self.ev) >= COMMIT_EVERY_ROWS

    def flush(self) -> None:
        if self.conn is None or not (self.tel or self.ev):
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            if self.tel:
                with cur.copy(COPY_TEL) as cp:
                    cp.set_types(TEL_TYPES)
                    for row in self.tel:
                        cp.write_row(row)
            if self.ev:
                with cur.copy(COPY_EV) as cp:
                    cp.set_types(EV_TYPES)
                    for row in self.ev:
                        cp.write_row(row)
        self.counts.telemetry_rows += len(self.tel)
        self.counts.event_rows += len(self.ev)
        self.tel.clear()
        self.ev.clear()


def backfill(conn: psycopg.Connection | None, streams: list[Iterator[Item]], *, until: float,
             progress: Progress | None = None) -> tuple[BackfillCounts, list[Iterator[Item]]]:
    """COPY every item before `until` (conn None: count only); return the streams from `until` on."""
    counts = BackfillCounts()
    sink = _Sink(conn, counts)
    rest: list[Iterator[Item]] = []
    for done, stream in enumerate(streams, 1):
        last: Item | None = None
        boundary: Item | None = None
        for item in stream:
            if item[0] >= until:
                boundary = item
                break
            sink.add(item)
            last = item
            if sink.full():
                sink.flush()
                if progress:
                    progress(done - 1, counts.rows)
        if last is not None:
            counts.last[last[3]] = (last[2], last[0])
        rest.append(chain([boundary], stream) if boundary is not None else stream)
        if progress:
            progress(done, counts.rows + len(sink.tel) + len(sink.ev))
    sink.flush()
    if conn is not None and counts.last:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_STATE, [(u, seq + 1, when(t)) for u, (seq, t) in sorted(counts.last.items())])
    return counts, rest
