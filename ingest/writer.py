"""The batch writer: validate, COPY into staging, one INSERT ... ON CONFLICT DO NOTHING, commit.

Rows, rejects, seq gaps and entrapment alerts of one batch are committed in one transaction;
the caller acknowledges the batch's MQTT messages only after `write()` returns. A batch the
database refuses for its data (not for being down) is split until the offending message is
found; that message is recorded as rejected and the rest is written, so one poison message
never blocks the stream.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from ingest.gaps import Gap, SeqState, observe, settle
from ingest.inbox import Inbound
from ingest.metrics import IngestMetrics
from ingest.ratelimit import UnitRateLimiter
from liftwatch.contract import Event, Limits, RejectReason, Telemetry, Topic, parse_message
from liftwatch.errors import ContractError

log = logging.getLogger(__name__)

REJECT_PAYLOAD_KEEP = 64 * 1024  # bytes of a rejected payload kept for the operator to read
MISS_REFRESH_MIN_S = 2.0  # an unknown unit triggers a registry reload at most this often

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
COPY_EV = f"COPY stage_events ({_EV_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_REJ = f"COPY rejected_messages ({', '.join(_REJ_COLS)}) FROM STDIN (FORMAT BINARY)"
# column lists are module constants, never input
INSERT_TEL = (f"INSERT INTO telemetry ({_TEL_COLS}) SELECT {_TEL_COLS} FROM stage_telemetry "  # noqa: S608
              "ON CONFLICT DO NOTHING RETURNING unit_id, seq")
INSERT_EV = (f"INSERT INTO events ({_EV_COLS}) SELECT {_EV_COLS} FROM stage_events "  # noqa: S608
             "ON CONFLICT DO NOTHING RETURNING unit_id, seq, time, code, state, source_code")
LOCK_STATE = ("SELECT unit_id, next_seq, ahead, hole_since FROM unit_ingest_state "
              "WHERE unit_id = ANY(%s) ORDER BY unit_id FOR UPDATE")
UPSERT_STATE = """
INSERT INTO unit_ingest_state (unit_id, next_seq, ahead, hole_since, last_time, last_received_at)
VALUES (%s, %s, %s, %s, %s, now())
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
class Reject:
    msg: Inbound
    unit_id: str | None
    reason: str
    detail: str

    def row(self) -> tuple:
        p = self.msg.payload
        return (self.msg.topic, self.unit_id, self.reason, self.detail, p[:REJECT_PAYLOAD_KEEP], len(p),
                hashlib.sha256(p).digest())


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


class Registry:
    """The set of registered unit ids, reloaded periodically and (rate-limited) on a miss."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.units: frozenset[str] = frozenset()
        self.loaded_at = 0.0

    def load(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            self.units = frozenset(r[0] for r in conn.execute("SELECT unit_id FROM units"))
        self.loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at >= self.refresh_s


class BatchWriter:
    """Owns one database connection; `write(batch)` commits a batch or raises OperationalError."""

    def __init__(self, dsn: str, metrics: IngestMetrics, *, registry_refresh_s: float, gap_settle_s: float,
                 limits: Limits, rate_limiter: UnitRateLimiter | None = None) -> None:
        self.dsn = dsn
        self.metrics = metrics
        self.registry = Registry(registry_refresh_s)
        self.settle_for = timedelta(seconds=gap_settle_s)
        self.limits = limits
        self.conn: psycopg.Connection | None = None
        self.unknown_units: dict[str, int] = defaultdict(int)
        self.limiter = rate_limiter or UnitRateLimiter(0, 0)

    # --- connection ---------------------------------------------------------------------------

    def connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="liftwatch-ingest")
            self.conn.execute(SETUP_SQL)
            self.registry.load(self.conn)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def maintain(self) -> list[Gap]:
        """Between batches: reload the registry when due and record settled seq holes as gaps."""
        conn = self.connection()
        if self.registry.stale():
            self.registry.load(conn)
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

    # --- validation ---------------------------------------------------------------------------

    def _parse(self, batch: list[Inbound]) -> tuple[list[tuple], list[tuple], list[Reject], list[float]]:
        tel: list[tuple] = []
        ev: list[tuple] = []
        rejects: list[Reject] = []
        published: list[float] = []  # device ts of each accepted message's newest sample (lag metric)
        now = datetime.now(UTC)
        units = self.registry.units
        for msg in batch:
            unit_id = Topic.unit_from(msg.topic)
            try:
                topic = Topic.parse(msg.topic)
                if topic.unit_id not in units:
                    if time.monotonic() - self.registry.loaded_at >= MISS_REFRESH_MIN_S:
                        self.registry.load(self.connection())
                        units = self.registry.units
                    if topic.unit_id not in units:
                        raise ContractError(RejectReason.UNKNOWN_UNIT, f"unit {topic.unit_id!r} is not in the registry")
                samples = parse_message(topic, msg.payload, now=now, limits=self.limits)
                if self.limiter.enabled and not self.limiter.allow(
                        topic.unit_id, len(samples), max(s.time for s in samples).timestamp(), msg.received):
                    raise ContractError(RejectReason.RATE_LIMITED,
                                        f"unit over {self.limiter.rate:g} samples/s (burst {self.limiter.burst:g})")
            except ContractError as exc:
                rejects.append(Reject(msg, unit_id, exc.reason, exc.detail))
                if exc.reason == RejectReason.UNKNOWN_UNIT and unit_id:
                    self._count_unknown(unit_id)
                continue
            published.append(samples[-1].time.timestamp())
            if isinstance(samples[0], Telemetry):
                tel.extend(s.as_row() for s in samples)
            else:
                ev.extend(s.as_row() for s in samples)
        return tel, ev, rejects, published

    def _count_unknown(self, unit_id: str) -> None:
        n = self.unknown_units[unit_id] = self.unknown_units[unit_id] + 1
        if n == 1 or n % 1000 == 0:
            log.warning("messages from unregistered unit quarantined", extra={"unit_id": unit_id, "count": n})

    # --- writing ------------------------------------------------------------------------------

    def write(self, batch: list[Inbound]) -> BatchResult:
        """Write a batch in one transaction (splitting around poison messages); commit; return."""
        tel, ev, rejects, published = self._parse(batch)
        try:
            result = self._commit(batch, tel, ev, rejects)
            result.published = published
            return result
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if len(batch) == 1:
                detail = f"database refused it: {exc.diag.message_primary or exc}"[:500]
                unit_id = Topic.unit_from(batch[0].topic)
                log.warning("message refused by the database", extra={"unit_id": unit_id, "error": detail})
                return self._commit(batch, [], [], [Reject(batch[0], unit_id, RejectReason.SCHEMA, detail)])
            mid = len(batch) // 2
            left, right = self.write(batch[:mid]), self.write(batch[mid:])
            return _merge(left, right)

    def _commit(self, batch: list[Inbound], tel: list[tuple], ev: list[tuple], rejects: list[Reject]) -> BatchResult:
        result = BatchResult(messages=len(batch), rejects=rejects)
        conn = self.connection()
        inserted: dict[str, list[int]] = defaultdict(list)
        last_time: dict[str, datetime] = {}
        with conn.transaction(), conn.cursor() as cur:
            if tel:
                with cur.copy(COPY_TEL) as cp:
                    cp.set_types(_TEL_TYPES)
                    for row in tel:
                        cp.write_row(row)
                for unit_id, seq in cur.execute(INSERT_TEL).fetchall():
                    inserted[unit_id].append(seq)
                result.rows["telemetry"] = cur.rowcount
                for row in tel:
                    if row[0] > last_time.get(row[1], row[0]) or row[1] not in last_time:
                        last_time[row[1]] = row[0]
            if ev:
                with cur.copy(COPY_EV) as cp:
                    cp.set_types(_EV_TYPES)
                    for row in ev:
                        cp.write_row(row)
                new_events = cur.execute(INSERT_EV).fetchall()
                result.rows["events"] = len(new_events)
                for unit_id, seq, t, code, state, source_code in new_events:
                    inserted[unit_id].append(seq)
                    if t > last_time.get(unit_id, t) or unit_id not in last_time:
                        last_time[unit_id] = t
                    if code == "entrapment" and state == "raised":
                        result.entrapments.append(Entrapment(unit_id, seq, t, source_code))
            result.duplicates = len(tel) + len(ev) - result.rows["telemetry"] - result.rows["events"]
            if rejects:
                with cur.copy(COPY_REJ) as cp:
                    cp.set_types(_REJ_TYPES)
                    for r in rejects:
                        cp.write_row(r.row())
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
        updates, fills, gaps = [], [], []
        for unit_id in sorted(inserted):
            state, late, forced = observe(states.get(unit_id), unit_id, inserted[unit_id], now)
            updates.append((unit_id, state.next_seq, state.ahead, state.hole_since, last_time.get(unit_id)))
            fills.extend((unit_id, s) for s in late)
            gaps.extend(forced)
        cur.executemany(UPSERT_STATE, updates)
        if fills:
            cur.executemany(FILL_GAP, fills)
        self._record_gaps(cur, gaps)
        return gaps

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
    )
