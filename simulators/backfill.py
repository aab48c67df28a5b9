"""History straight into the hypertables with binary COPY: days of data in seconds.

Rows are liftwatch.contract's Telemetry/Event.as_row(), the very tuples the ingestor
writes, so analytics cannot tell backfill from live data. Afterwards unit_ingest_state is
moved past the history's last seq, as the ingestor would have done, so the live part that
follows (over MQTT, with later seqs) does not look like a seq gap or a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

from liftwatch.contract import Event, Telemetry
from simulators.records import to_contract, when
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


@dataclass
class BackfillCounts:
    telemetry_rows: int = 0
    event_rows: int = 0


def backfill(conn: psycopg.Connection, items: Iterator[Item], *, until: float,
             progress: Callable[[float, int], None] | None = None) -> tuple[BackfillCounts, Item | None]:
    """COPY the items before `until`; return the counts and the first item at or after `until`."""
    counts = BackfillCounts()
    last: dict[str, tuple[int, float]] = {}
    boundary: Item | None = None
    tel: list[tuple] = []
    ev: list[tuple] = []
    t = until
    for item in items:
        t = item[0]
        if t >= until:
            boundary = item
            break
        row = to_contract(item).as_row()
        (tel if item[4] == "T" else ev).append(row)
        last[item[3]] = (item[2], t)
        if len(tel) + len(ev) >= COMMIT_EVERY_ROWS:
            _flush(conn, tel, ev, counts)
            if progress:
                progress(t, counts.telemetry_rows + counts.event_rows)
    _flush(conn, tel, ev, counts)
    if last:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_STATE, [(u, seq + 1, when(lt)) for u, (seq, lt) in sorted(last.items())])
    if progress:
        progress(t, counts.telemetry_rows + counts.event_rows)
    return counts, boundary


def _flush(conn: psycopg.Connection, tel: list[tuple], ev: list[tuple], counts: BackfillCounts) -> None:
    with conn.transaction(), conn.cursor() as cur:
        if tel:
            with cur.copy(COPY_TEL) as cp:
                cp.set_types(TEL_TYPES)
                for row in tel:
                    cp.write_row(row)
        if ev:
            with cur.copy(COPY_EV) as cp:
                cp.set_types(EV_TYPES)
                for row in ev:
                    cp.write_row(row)
    counts.telemetry_rows += len(tel)
    counts.event_rows += len(ev)
    tel.clear()
    ev.clear()
