"""The write stage: COPY a parsed batch straight into `telemetry` (or, when a row may already be
stored, into staging and one INSERT ... ON CONFLICT DO NOTHING), commit.

Telemetry goes first by binary COPY straight into the hypertable: 2.8-4.9 us of PostgreSQL
CPU a row against 6-8 us for COPY into staging plus INSERT ... SELECT ... ON CONFLICT (the
speculative insertion probes the unique index twice per row), and the seqs to track are the
batch's own. COPY cannot skip a row that is already stored, so a batch that may hold one (a
broker redelivery, DUP set) takes the staging path at once, and any other batch falls back to
it, in a fresh transaction, when the COPY meets the unique key (a device that sent a sample
twice). Either way a row is stored once.

Rows, rejects, seq gaps and entrapment alerts of one batch are committed in one transaction;
the caller acknowledges the batch's MQTT messages only after `write()` returns. A batch the
database refuses for its data (not for being down) is split until the offending message is
found; that message is recorded as rejected and the rest is written, so one poison message
never blocks the stream.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import orjson
import psycopg

from ingest.gaps import Gap, SeqState, observe, settle
from ingest.parser import Parsed, Reject
from liftwatch.contract import Event, RejectReason, Stream, Telemetry, Topic

log = logging.getLogger(__name__)
_time, _seq = itemgetter(0), itemgetter(2)


_TEL_TYPES = ["timestamptz", "text", "int8", "text", "int2", "text", "bool", "text", "bool", "bool",
              "float4", "float4", "float4", "float4", "float4", "float4", "int8", "float8", "jsonb"]
_EV_TYPES = ["timestamptz", "text", "int8", "text", "text", "text", "jsonb"]
_REJ_COLS = ("topic", "unit_id", "reason", "detail", "payload", "payload_size", "payload_sha256")
_REJ_TYPES = ["text", "text", "text", "text", "bytea", "int4", "bytea"]

_TEL_COLS = ", ".join(Telemetry.COLUMNS)
_EV_COLS = ", ".join(Event.COLUMNS)
SETUP_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_telemetry (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_events (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
)
COPY_TEL = f"COPY stage_telemetry ({_TEL_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_TEL_DIRECT = f"COPY telemetry ({_TEL_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_EV = f"COPY stage_events ({_EV_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_REJ = f"COPY rejected_messages ({', '.join(_REJ_COLS)}) FROM STDIN (FORMAT BINARY)"
INSERT_REJ_ONCE = (f"INSERT INTO rejected_messages ({', '.join(_REJ_COLS)}) "  # noqa: S608 (constants)
                   "SELECT %s, %s, %s, %s, %s, %s, %s WHERE NOT EXISTS "
                   "(SELECT 1 FROM rejected_messages WHERE payload_sha256 = %s AND topic = %s)")
# column lists are module constants, never input
# per unit, not per row: the seqs stored (for gap tracking), the newest ts and how many
INSERT_TEL = (f"WITH ins AS (INSERT INTO telemetry ({_TEL_COLS}) SELECT {_TEL_COLS} FROM stage_telemetry "  # noqa: S608
              "ON CONFLICT DO NOTHING RETURNING unit_id, seq, time) "
              "SELECT unit_id, array_agg(seq), max(time), count(*) FROM ins GROUP BY unit_id")
INSERT_EV = (f"INSERT INTO events ({_EV_COLS}) SELECT {_EV_COLS} FROM stage_events "  # noqa: S608
             "ON CONFLICT DO NOTHING RETURNING unit_id, seq, time, code, state, source_code")
LOCK_STATE = ("SELECT unit_id, next_seq, ahead, hole_since FROM unit_ingest_state "
              "WHERE unit_id = ANY(%s) ORDER BY unit_id FOR UPDATE")
# every unit of a batch in one statement: one executemany row per unit was one server statement per
# unit, which a fleet's batch (one message from each of hundreds of units) pays per message;
# `ahead` travels as an array literal, since units' arrays differ in length
UPSERT_STATES = """
INSERT INTO unit_ingest_state (unit_id, next_seq, ahead, hole_since, last_time, last_received_at)
SELECT u, n, a::int8[], h, t, now()
FROM unnest(%s::text[], %s::int8[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS s(u, n, a, h, t)
ON CONFLICT (unit_id) DO UPDATE SET next_seq = EXCLUDED.next_seq, ahead = EXCLUDED.ahead,
    hole_since = EXCLUDED.hole_since, last_received_at = now(),
    last_time = GREATEST(unit_ingest_state.last_time, EXCLUDED.last_time)"""
SETTLE_CANDIDATES = ("SELECT unit_id, next_seq, ahead, hole_since FROM unit_ingest_state "
                     "WHERE hole_since <= now() - %s ORDER BY unit_id FOR UPDATE SKIP LOCKED")
SAVE_STATE = "UPDATE unit_ingest_state SET next_seq = %s, ahead = %s, hole_since = %s WHERE unit_id = %s"
INSERT_GAP = "INSERT INTO ingest_gaps (unit_id, from_seq, to_seq) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
FILL_GAP = ("UPDATE ingest_gaps SET filled = filled + 1 "
            "WHERE unit_id = %s AND %s BETWEEN from_seq AND to_seq AND filled < missing")
OPEN_ENTRAPMENT = """
INSERT INTO alerts (unit_id, kind, severity, reason, details, source, event_time)
VALUES (%s, 'entrapment', 'critical', %s, %s, 'ingest', %s)
ON CONFLICT (unit_id, kind) WHERE status = 'open'
DO UPDATE SET last_seen_at = now()
RETURNING alert_id, (xmax = 0) AS opened"""


@dataclass(slots=True)
class Entrapment:
    unit_id: str
    seq: int
    time: datetime
    source_code: str | None
    alert_id: int | None = None


@dataclass
class BatchResult:
    messages: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {"telemetry": 0, "events": 0})
    duplicates: int = 0
    rejects: list[Reject] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    entrapments: list[Entrapment] = field(default_factory=list)
    published: list[float] = field(default_factory=list)  # device ts per accepted message
    copy_fallbacks: int = 0  # direct COPYs that met a stored row and were redone through ON CONFLICT
    direct: bool = False  # the telemetry went in by direct COPY (every row new)


class BatchWriter:
    """Owns one database connection; `write(parsed)` commits a batch or raises OperationalError."""

    def __init__(self, dsn: str, *, gap_settle_s: float) -> None:
        self.dsn = dsn
        self.settle_for = timedelta(seconds=gap_settle_s)
        self.conn: psycopg.Connection | None = None

    # --- connection ---------------------------------------------------------------------------

    def connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="liftwatch-ingest")
            self.conn.execute(SETUP_SQL)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def maintain(self) -> list[Gap]:
        """Between batches: record seq holes that stayed open past the settle time as gaps."""
        conn = self.connection()
        now = datetime.now(UTC)
        gaps: list[Gap] = []
        with conn.transaction(), conn.cursor() as cur:
            rows = cur.execute(SETTLE_CANDIDATES, (self.settle_for,)).fetchall()
            for unit_id, next_seq, ahead, hole_since in rows:
                state = SeqState(unit_id, next_seq, list(ahead), hole_since)
                found = settle(state, now, self.settle_for)
                cur.execute(SAVE_STATE, (state.next_seq, state.ahead, state.hole_since, unit_id))
                gaps.extend(found)
            self._record_gaps(cur, gaps)
        return gaps

    # --- writing ------------------------------------------------------------------------------

    def write(self, parsed: Parsed) -> BatchResult:
        """Write a parsed batch in one transaction (splitting around poison messages); commit; return."""
        try:
            result = self._commit_once(parsed)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if len(parsed.msgs) > 1:
                left, right = parsed.halves()
                result = _merge(self.write(left), self.write(right))
            else:
                topic = parsed.msgs.topics[0].decode("utf-8", "replace")
                detail = f"database refused it: {exc.diag.message_primary or exc}"[:500]
                log.warning("message refused by the database", extra={"topic": topic, "error": detail})
                reject = Reject(topic, Topic.unit_from(topic), RejectReason.SCHEMA, detail, parsed.msgs.payloads[0],
                                parsed.msgs.dups[0])
                result = self._commit(Parsed(parsed.msgs, [reject], [None]), direct=False)
        result.published = parsed.published
        return result

    def _commit_once(self, parsed: Parsed) -> BatchResult:
        """Direct COPY unless a redelivery is in the batch; ON CONFLICT if the COPY met a stored row."""
        if not any(parsed.msgs.dups):
            try:
                return self._commit(parsed, direct=True)
            except psycopg.errors.UniqueViolation:
                result = self._commit(parsed, direct=False)
                result.copy_fallbacks += 1
                return result
        return self._commit(parsed, direct=False)

    def _commit(self, parsed: Parsed, *, direct: bool) -> BatchResult:
        tel: list[list[tuple]] = []  # per message
        ev: list[tuple] = []
        rejects: list[Reject] = []
        for item, stream in zip(parsed.items, parsed.streams, strict=True):
            if stream is Stream.TELEMETRY:
                tel.append(item)
            elif stream is Stream.EVENT:
                ev.extend(item)
            else:
                rejects.append(item)
        result = BatchResult(messages=len(parsed.msgs), rejects=rejects)
        conn = self.connection()
        inserted: dict[str, list[int]] = defaultdict(list)
        last_time: dict[str, datetime] = {}
        n_tel = sum(map(len, tel))
        with conn.transaction(), conn.cursor() as cur:
            if tel:
                with cur.copy(COPY_TEL_DIRECT if direct else COPY_TEL) as cp:
                    cp.set_types(_TEL_TYPES)
                    write_row = cp.write_row
                    for rows in tel:
                        for row in rows:
                            write_row(row)
                if direct:  # every row was inserted: the seqs to track are the batch's own
                    for rows in tel:
                        unit_id = rows[0][1]
                        inserted[unit_id].extend(map(_seq, rows))
                        newest = rows[0][0] if len(rows) == 1 else max(map(_time, rows))
                        if unit_id not in last_time or newest > last_time[unit_id]:
                            last_time[unit_id] = newest
                    result.rows["telemetry"] = n_tel
                    result.direct = True
                else:
                    for unit_id, seqs, newest, n in cur.execute(INSERT_TEL).fetchall():
                        inserted[unit_id].extend(seqs)
                        last_time[unit_id] = newest
                        result.rows["telemetry"] += n
            if ev:
                with cur.copy(COPY_EV) as cp:
                    cp.set_types(_EV_TYPES)
                    for row in ev:
                        cp.write_row(row)
                new_events = cur.execute(INSERT_EV).fetchall()
                result.rows["events"] = len(new_events)
                for unit_id, seq, t, code, state, source_code in new_events:
                    inserted[unit_id].append(seq)
                    if unit_id not in last_time or t > last_time[unit_id]:
                        last_time[unit_id] = t
                    if code == "entrapment" and state == "raised":
                        result.entrapments.append(Entrapment(unit_id, seq, t, source_code))
            result.duplicates = n_tel + len(ev) - result.rows["telemetry"] - result.rows["events"]
            if rejects:
                self._record_rejects(cur, rejects)
            if inserted:
                result.gaps = self._track_seqs(cur, inserted, last_time)
            for e in result.entrapments:
                self._open_entrapment(cur, e)
        return result

    def _track_seqs(self, cur: psycopg.Cursor, inserted: dict[str, list[int]],
                    last_time: dict[str, datetime]) -> list[Gap]:
        now = datetime.now(UTC)
        states = {r[0]: SeqState(r[0], r[1], list(r[2]), r[3])
                  for r in cur.execute(LOCK_STATE, (sorted(inserted),)).fetchall()}
        units = sorted(inserted)
        next_seqs, aheads, holes, newest = [], [], [], []
        fills, gaps = [], []
        for unit_id in units:
            state, late, forced = observe(states.get(unit_id), unit_id, inserted[unit_id], now)
            next_seqs.append(state.next_seq)
            aheads.append("{" + ",".join(map(str, state.ahead)) + "}")
            holes.append(state.hole_since)
            newest.append(last_time.get(unit_id))
            fills.extend((unit_id, s) for s in late)
            gaps.extend(forced)
        cur.execute(UPSERT_STATES, (units, next_seqs, aheads, holes, newest))
        if fills:
            cur.executemany(FILL_GAP, fills)
        self._record_gaps(cur, gaps)
        return gaps

    @staticmethod
    def _record_rejects(cur: psycopg.Cursor, rejects: list[Reject]) -> None:
        """COPY the rejects; a redelivered one only if its first delivery was not recorded."""
        fresh = [r.row() for r in rejects if not r.redelivered]
        if fresh:
            with cur.copy(COPY_REJ) as cp:
                cp.set_types(_REJ_TYPES)
                for row in fresh:
                    cp.write_row(row)
        again = [r.row() for r in rejects if r.redelivered]
        if again:
            cur.executemany(INSERT_REJ_ONCE, [(*row, row[6], row[0]) for row in again])

    @staticmethod
    def _record_gaps(cur: psycopg.Cursor, gaps: list[Gap]) -> None:
        if gaps:
            cur.executemany(INSERT_GAP, [(g.unit_id, g.from_seq, g.to_seq) for g in gaps])
            for g in gaps:
                log.warning("seq gap recorded", extra={"unit_id": g.unit_id, "from_seq": g.from_seq,
                                                       "to_seq": g.to_seq, "missing": g.missing})

    @staticmethod
    def _open_entrapment(cur: psycopg.Cursor, e: Entrapment) -> None:
        reason = f"passenger entrapment reported by the unit at {e.time.isoformat(timespec='seconds')}"
        details = orjson.dumps({"seq": e.seq, "source_code": e.source_code, "event_time": e.time.isoformat()}).decode()
        row = cur.execute(OPEN_ENTRAPMENT, (e.unit_id, reason, details, e.time)).fetchone()
        e.alert_id = row[0] if row else None


def _merge(a: BatchResult, b: BatchResult) -> BatchResult:
    return BatchResult(
        messages=a.messages + b.messages,
        rows={k: a.rows[k] + b.rows[k] for k in a.rows},
        duplicates=a.duplicates + b.duplicates,
        rejects=a.rejects + b.rejects,
        gaps=a.gaps + b.gaps,
        entrapments=a.entrapments + b.entrapments,
        published=a.published + b.published,
        copy_fallbacks=a.copy_fallbacks + b.copy_fallbacks,
        direct=a.direct and b.direct,
    )
