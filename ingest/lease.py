"""The lease that lets exactly one of an active/standby pair of ingestors consume.

Both replicas of the pair run with the same MQTT client id: the broker keeps ONE persistent
session (a plain subscription and its queued QoS 1 backlog), and whoever holds the lease in
PostgreSQL (`ingest_leases`, keyed by that client id) is the one connected to it. The standby
has its pipeline warm (registry loaded, database connected) and polls for the lease.

Takeover:
* the holder is killed: its lease connection closes with it, so the standby sees the backend
  gone and takes the lease at its next poll (sub-second);
* the holder hangs or is cut off from the database: it stops renewing; the lease expires after
  its time-to-live (`LIFTWATCH_INGEST_LEASE_TTL_S`, 10 s) and the standby takes it. The holder
  itself stops consuming (disconnects from the broker) once it has not renewed for
  `FENCE_AT` of the time-to-live, before anyone else may take the lease;
* a database restart ends every connection, the holder's included; a connection that only went
  away with the restart does not count as a dead holder (its backend started before the current
  postmaster), so the holder, renewing as soon as the database is back, keeps the lease. A holder
  that has not renewed `RESTART_GRACE_S` after the restart is taken for dead (it was killed
  while the database was down: `make chaos` measured 10 s waiting for the time-to-live instead).

Two replicas never consume at once: the lease says who may connect, and the broker enforces it
in any case, since a second connection with the same client id takes the session over and
drops the first. Writes are idempotent, so a batch the old holder commits after a takeover
(its acks go nowhere; the broker redelivers) is stored once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg

log = logging.getLogger(__name__)

LEASE_TTL_S = 10.0  # default time-to-live: a hung holder is replaced after this long
RENEW_EVERY_S = 1.0  # the holder's renewal period: ten chances per time-to-live
STANDBY_POLL_S = 0.5  # the standby's poll: bounds the failover gap after a kill
FENCE_AT = 0.7  # of the time-to-live without a renewal: the holder stops consuming before it could be taken
DB_TIMEOUT_S = 3  # connect and statement timeout of the lease connection
RESTART_GRACE_S = 4.0  # after a database restart, a live holder renews within a few of its 1 s periods

# One statement: take the lease if it is free, expired, ours, or its holder's connection is gone
# for a reason other than a database restart. Returns a row iff we hold it afterwards.
ACQUIRE = """
INSERT INTO ingest_leases AS l (name, holder, backend_pid, backend_start, expires_at)
SELECT %(name)s, %(me)s, a.pid, a.backend_start, now() + %(ttl)s
  FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start,
       renewed_at = now(), expires_at = EXCLUDED.expires_at,
       acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
       handovers = l.handovers + (l.holder <> EXCLUDED.holder)::int
 WHERE l.holder = EXCLUDED.holder
    OR l.expires_at < now()
    OR (l.backend_start >= pg_postmaster_start_time()
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                         WHERE a.pid = l.backend_pid AND a.backend_start = l.backend_start))
    OR (l.renewed_at < pg_postmaster_start_time() AND now() > pg_postmaster_start_time() + %(grace)s)
RETURNING l.holder"""
HOLDER = "SELECT holder, expires_at > now() FROM ingest_leases WHERE name = %s"
RELEASE = "UPDATE ingest_leases SET expires_at = now() - interval '1 second' WHERE name = %s AND holder = %s"


def replica_identity() -> str:
    """host:pid:random, unique per process start (a restarted replica is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    """The database side: one dedicated connection (never the writer's, which may be busy in a
    long COPY), short timeouts, and keepalives so that a vanished peer is noticed."""

    def __init__(self, dsn: str, name: str, holder: str | None = None, ttl_s: float = LEASE_TTL_S) -> None:
        self.dsn = dsn
        self.name = name
        self.holder = holder or replica_identity()
        self.ttl_s = ttl_s
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=DB_TIMEOUT_S, application_name="liftwatch-ingest-lease",
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                options=f"-c statement_timeout={DB_TIMEOUT_S * 1000} -c tcp_keepalives_idle=5 "
                        "-c tcp_keepalives_interval=2 -c tcp_keepalives_count=3")
        return self._conn

    def acquire(self) -> bool:
        """Take or renew the lease; True if we hold it. Raises psycopg.Error if the database is away."""
        try:
            row = self._connection().execute(
                ACQUIRE, {"name": self.name, "me": self.holder, "ttl": timedelta(seconds=self.ttl_s),
                          "grace": timedelta(seconds=RESTART_GRACE_S)}).fetchone()
        except psycopg.Error:
            self.close()
            raise
        return row is not None

    def current_holder(self) -> str | None:
        """Who holds an unexpired lease (for the log line of a standby)."""
        try:
            row = self._connection().execute(HOLDER, (self.name,)).fetchone()
        except psycopg.Error:
            self.close()
            return None
        return row[0] if row and row[1] else None

    def release(self) -> None:
        """Let the standby take over at once (clean shutdown, after the broker connection is closed)."""
        try:
            self._connection().execute(RELEASE, (self.name, self.holder))
        except psycopg.Error as exc:
            log.warning("could not release the ingest lease; the standby takes over when it expires",
                        extra={"error": str(exc).strip()[:200]})
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class LeaseKeeper(threading.Thread):
    """Holds the lease and turns consuming on and off: `start_consuming` when the lease is
    gained, `stop_consuming` when it is lost or can no longer be renewed in time."""

    def __init__(self, lease: Lease, *, start_consuming: Callable[[], None], stop_consuming: Callable[[], None],
                 on_change: Callable[[bool], None] | None = None) -> None:
        super().__init__(name="liftwatch-lease", daemon=True)
        self.lease = lease
        self._start_consuming = start_consuming
        self._stop_consuming = stop_consuming
        self._on_change = on_change
        self.halt = threading.Event()
        self.held = threading.Event()
        self._last_renewed = 0.0  # monotonic time the last successful renewal was sent
        self._last_standby_log = 0.0

    def run(self) -> None:
        while not self.halt.is_set():
            sent = time.monotonic()
            try:
                holding = self.lease.acquire()
            except psycopg.Error as exc:
                self._unreachable(sent, exc)
            else:
                if holding:
                    self._last_renewed = sent
                    if not self.held.is_set():
                        self._gain()
                    else:
                        self._start_consuming()  # idempotent: reconnects if the broker took the session away
                elif self.held.is_set():
                    self._lose("the lease was taken over by another replica")
                else:
                    self._standby_note()
            self.halt.wait(RENEW_EVERY_S if self.held.is_set() else STANDBY_POLL_S)

    def _unreachable(self, sent: float, exc: psycopg.Error) -> None:
        if not self.held.is_set():
            return  # a standby simply keeps polling
        silent = time.monotonic() - self._last_renewed
        if silent >= self.lease.ttl_s * FENCE_AT:
            self._lose(f"the lease could not be renewed for {silent:.1f} s ({str(exc).strip()[:120]})")

    def _gain(self) -> None:
        log.info("ingest lease acquired; consuming", extra={"lease": self.lease.name, "holder": self.lease.holder})
        self.held.set()
        self._start_consuming()
        if self._on_change:
            self._on_change(True)

    def _lose(self, why: str) -> None:
        log.warning(f"stopped consuming: {why}; standing by", extra={"lease": self.lease.name})
        self.held.clear()
        self._stop_consuming()
        if self._on_change:
            self._on_change(False)

    def _standby_note(self) -> None:
        now = time.monotonic()
        if now - self._last_standby_log >= 60 or not self._last_standby_log:
            self._last_standby_log = now
            log.info("standing by: the ingest lease is held by another replica",
                     extra={"lease": self.lease.name, "holder": self.lease.current_holder()})

    def stop(self) -> None:
        """Stop polling (the caller disconnects from the broker, then calls `lease.release()`)."""
        self.halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=DB_TIMEOUT_S * 2 + RENEW_EVERY_S)
