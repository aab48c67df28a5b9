"""The parse stage: raw MQTT messages -> validated rows or rejects, per message.

Runs in its own thread, so that parsing batch N+1 overlaps the database writing batch N
(Python holds the GIL while parsing and releases it while waiting on PostgreSQL).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

import psycopg

from ingest.inbox import Batch
from ingest.ratelimit import UnitRateLimiter
from liftwatch.contract import RejectReason, Stream, Topic
from liftwatch.errors import ContractError
from liftwatch.validate import Limits, parse_rows

log = logging.getLogger(__name__)

MISS_REFRESH_MIN_S = 2.0  # an unknown unit triggers a registry reload at most this often
TOPIC_CACHE_MAX = 100_000  # parsed topics remembered (two per unit); cleared when full, rebuilt as they come
REJECT_PAYLOAD_KEEP = 64 * 1024  # bytes of a rejected payload kept for the operator to read
_time = itemgetter(0)


@dataclass(slots=True)
class Reject:
    topic: str
    unit_id: str | None
    reason: str
    detail: str
    payload: bytes
    redelivered: bool = False  # DUP from the broker: its first delivery may already be recorded

    def row(self) -> tuple:
        p = self.payload
        return (self.topic, self.unit_id, self.reason, self.detail, p[:REJECT_PAYLOAD_KEEP], len(p),
                hashlib.sha256(p).digest())


@dataclass(slots=True)
class Parsed:
    """A batch after validation: for each message either its rows (of `streams[i]`) or its Reject."""

    msgs: Batch
    items: list[list[tuple] | Reject] = field(default_factory=list)
    streams: list[Stream | None] = field(default_factory=list)
    published: list[float] = field(default_factory=list)  # device ts of accepted messages (lag metric)

    def halves(self) -> tuple[Parsed, Parsed]:
        m = len(self.msgs) // 2
        return (Parsed(self.msgs.slice(0, m), self.items[:m], self.streams[:m], []),
                Parsed(self.msgs.slice(m), self.items[m:], self.streams[m:], []))


class RegistryUnavailable(Exception):
    """The registry cannot say whether a unit exists (the database is away): retry, never reject."""


class Registry:
    """The set of registered unit ids, reloaded periodically and (rate-limited) on a miss.

    Has its own connection. A unit missing from a set loaded successfully within the last
    MISS_REFRESH_MIN_S is unknown; when the last load failed (or none ever succeeded) a miss
    raises RegistryUnavailable instead, so no message is rejected as `unknown_unit` because
    the database happened to be down.
    """

    def __init__(self, dsn: str, refresh_s: float) -> None:
        self.dsn = dsn
        self.refresh_s = refresh_s
        self.units: frozenset[str] = frozenset()
        self.loaded_at = 0.0
        self.healthy = False  # the last load succeeded
        self._conn: psycopg.Connection | None = None

    def load(self) -> bool:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.dsn, autocommit=True, application_name="liftwatch-ingest-registry")
            self.units = frozenset(r[0] for r in self._conn.execute("SELECT unit_id FROM units"))
            self.loaded_at = time.monotonic()
            self.healthy = True
            return True
        except psycopg.Error as exc:
            log.warning("registry reload failed; keeping the last known units", extra={"error": str(exc)[:200]})
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self.loaded_at = time.monotonic()  # do not retry on every message
            self.healthy = False
            return False

    def refresh_if_stale(self) -> None:
        if time.monotonic() - self.loaded_at >= self.refresh_s:
            self.load()

    def has(self, unit_id: str) -> bool:
        if unit_id in self.units:
            return True
        if not self.healthy or time.monotonic() - self.loaded_at >= MISS_REFRESH_MIN_S:
            self.load()
        if unit_id in self.units:
            return True
        if not self.healthy:
            raise RegistryUnavailable(f"cannot check unit {unit_id!r}: the registry did not load")
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class Parser:
    def __init__(self, registry: Registry, limits: Limits, limiter: UnitRateLimiter) -> None:
        self.registry = registry
        self.limits = limits
        self.limiter = limiter
        self.unknown_units: dict[str, int] = defaultdict(int)
        self._topics: dict[bytes, Topic] = {}

    def parse(self, batch: Batch) -> Parsed:
        """Validate a batch; raises RegistryUnavailable (the whole batch is to be retried)."""
        out = Parsed(batch)
        items, streams, published = out.items, out.streams, out.published
        window = self.limits.window(datetime.now(UTC))  # one ts range for the whole batch
        topics, registry = self._topics, self.registry
        limiter = self.limiter if self.limiter.enabled else None
        for raw_topic, payload, dup, received in zip(batch.topics, batch.payloads, batch.dups, batch.received,
                                                     strict=True):
            topic = topics.get(raw_topic)
            try:
                if topic is None:
                    topic = self._topic(raw_topic)
                if topic.unit_id not in registry.units and not registry.has(topic.unit_id):
                    raise ContractError(RejectReason.UNKNOWN_UNIT, f"unit {topic.unit_id!r} is not in the registry")
                rows = parse_rows(topic, payload, limits=self.limits, window=window)
                newest = (rows[0][0] if len(rows) == 1 else max(map(_time, rows))).timestamp()
                # a redelivery (DUP, set by the broker, never by the device) was charged when it
                # first came, or that delivery went to a process that is gone: never charge twice
                if limiter is not None and not dup and not limiter.allow(topic.unit_id, len(rows), newest, received):
                    raise ContractError(RejectReason.RATE_LIMITED,
                                        f"unit over {limiter.rate:g} samples/s (burst {limiter.burst:g})")
            except ContractError as exc:
                topic_text = raw_topic.decode("utf-8", "replace")
                unit_id = Topic.unit_from(topic_text)
                items.append(Reject(topic_text, unit_id, exc.reason, exc.detail, payload, dup))
                streams.append(None)
                if exc.reason == RejectReason.UNKNOWN_UNIT and unit_id:
                    self._count_unknown(unit_id)
                continue
            items.append(rows)
            streams.append(topic.stream)
            published.append(newest)
        return out

    def _topic(self, raw: bytes) -> Topic:
        """Parse a topic not seen yet (ContractError if it breaks the contract) and remember it."""
        topic = Topic.parse(raw.decode("utf-8", "replace"))
        if len(self._topics) >= TOPIC_CACHE_MAX:
            self._topics.clear()
        self._topics[raw] = topic
        return topic

    def _count_unknown(self, unit_id: str) -> None:
        n = self.unknown_units[unit_id] = self.unknown_units[unit_id] + 1
        if n == 1 or n % 1000 == 0:
            log.warning("messages from unregistered unit quarantined", extra={"unit_id": unit_id, "count": n})
