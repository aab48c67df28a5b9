"""The ingestor process: paho network thread -> Inbox -> writer thread -> TimescaleDB -> PUBACK.

Delivery: MQTT v5, QoS 1, a stable client id, a persistent session (clean_start=False and a
session expiry) and manual acks. A message is acknowledged only after the transaction that
holds it (or its reject record) has committed, so a crash anywhere loses nothing: the broker
redelivers what was not acked, and the unique key (unit_id, time, seq) stores it once.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import start_http_server

from ingest.brokercheck import check_group_broker
from ingest.inbox import Batch, Inbox
from ingest.lease import Lease, LeaseKeeper
from ingest.metrics import IngestMetrics
from ingest.mqttclient import IngestClient
from ingest.parser import Parsed, Parser, Registry, RegistryUnavailable
from ingest.ratelimit import UnitRateLimiter
from ingest.writer import BatchResult, BatchWriter
from liftwatch.errors import ConfigurationError
from liftwatch.settings import Settings
from liftwatch.validate import Limits

log = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 2000  # one COPY + INSERT + commit per ~2k messages amortises the round trips
BATCH_MAX_BYTES = 8 * 1024 * 1024  # ~28 k full samples: bounds a batch's rows and memory when messages carry many
FLUSH_INTERVAL_S = 0.05  # bounds publish-to-commit latency when traffic is light (p99 target 250 ms)
RECEIVE_MAXIMUM = 3 * BATCH_MAX_MESSAGES  # unacked messages the broker may send: one batch in the
#   database, the next filling, one in flight; paho's default of 20 would stall every batch
INBOX_MAX_BYTES = 64 * 1024 * 1024  # memory bound on queued payloads, whatever their size
IDLE_TICK_S = 1.0  # how often the writer does housekeeping (gap settling, registry) when idle
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)  # database retry delays; the last one repeats (short: lag after an outage)
KEEPALIVE_S = 30
STATS_EVERY_S = 10.0  # period of the INFO progress line
PIPELINE_DEPTH = 2  # parsed batches waiting for the writer: parsing overlaps one database write
SESSION_TAKEN_OVER = 142  # MQTT v5 DISCONNECT reason: another connection took our client id
TAKEOVER_BACKOFF_S = 5.0  # with --lease, wait this long before reclaiming a session taken from us


@dataclass
class Totals:
    """Running counts for the progress log line and the tests."""

    messages: int = 0
    telemetry_rows: int = 0
    event_rows: int = 0
    duplicates: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class IngestOptions:
    group: str | None  # None: plain subscription (single replica)
    client_id: str
    lease: bool = False  # active/standby: consume only while holding the client id's lease
    allow_volatile_group: bool = False  # --group without checking the broker keeps the group (brokercheck.py)


def default_client_id() -> str:
    return f"liftwatch-ingest-{socket.gethostname()}"[:64]


class Ingestor:
    """One ingestor replica. `run()` blocks until `stop()` (or SIGTERM via `install_signals`)."""

    def __init__(self, settings: Settings, options: IngestOptions) -> None:
        if options.lease and options.group:
            raise ConfigurationError("--lease (one consumer at a time) and --group (several sharing the load) "
                                     "exclude each other")
        self.settings = settings
        self.options = options
        self.metrics = IngestMetrics()
        self.inbox = Inbox(max_items=RECEIVE_MAXIMUM + BATCH_MAX_MESSAGES, max_bytes=INBOX_MAX_BYTES)
        self.metrics.queue_depth.set_function(lambda: len(self.inbox))
        self.registry = Registry(settings.database_url, settings.registry_refresh_s)
        self.parser = Parser(self.registry, Limits(future_tolerance=timedelta(seconds=settings.future_tolerance_s)),
                             UnitRateLimiter(settings.ingest_unit_rate, settings.ingest_unit_burst))
        self.writer = BatchWriter(settings.database_url, gap_settle_s=settings.gap_settle_s)
        # parse stage -> write stage; two slots let parsing run one batch ahead of the database
        self.handoff: queue.Queue[Parsed | None] = queue.Queue(maxsize=PIPELINE_DEPTH)
        self._stop = threading.Event()
        self._accepting = True
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._connected = threading.Event()
        self.client = self._make_client()
        self._mqtt_lock = threading.Lock()
        self._taken_over_at = 0.0
        self.keeper: LeaseKeeper | None = None
        self._metrics_server = None
        self.totals = Totals()

    # --- MQTT -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        ep = self.settings.mqtt
        # with a lease, paho never reconnects on its own: the lease keeper reconnects after each
        # renewal, so a replica that lost the lease (or was frozen) cannot fight for the session
        client = IngestClient(CallbackAPIVersion.VERSION2, client_id=self.options.client_id,
                              protocol=mqtt.MQTTv5, manual_ack=True, reconnect_on_failure=not self.options.lease)
        client.sink = self._on_publish
        if ep.username:
            client.username_pw_set(ep.username, ep.password)
        if ep.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.ingest_session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason_code)})
            return
        with self._gen_lock:
            self._generation += 1
        group = self.options.group
        prefix = f"$share/{group}/" if group else ""
        client.subscribe([(f"{prefix}lift/+/telemetry", 1), (f"{prefix}lift/+/event", 1)])
        self.metrics.connected.set(1)
        log.info("connected to broker", extra={"session_present": flags.session_present,
                                               "client_id": self.options.client_id, "group": group})

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("broker refused the subscription (check the ACL)", extra={"reasons": bad})
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._gen_lock:
            self._generation += 1  # acks for messages of the lost connection are no longer sent
        self._connected.clear()
        self.metrics.connected.set(0)
        if self.keeper is not None and not self._stop.is_set():
            if reason_code == SESSION_TAKEN_OVER:  # another connection on our client id: do not fight it
                self._taken_over_at = time.monotonic()
            log.warning("disconnected from broker; reconnecting once the lease is renewed",
                        extra={"reason": str(reason_code)})
        elif not self._stop.is_set():
            log.warning("disconnected from broker; reconnecting", extra={"reason": str(reason_code)})

    def _on_publish(self, topics: list[bytes], payloads: list[bytes], mids: list[int], dups: list[bool],
                    received: float) -> None:
        """A read's worth of QoS 0/1 PUBLISH, on paho's network thread: hand over, nothing else."""
        if self._accepting:  # when stopping, not acked: the broker keeps it for our session
            self.inbox.put(Batch.of(topics, payloads, mids, dups, self._generation, received))

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        """Only QoS 2 arrives here (paho's own path): acknowledged by paho after this returns."""
        if self._accepting:
            self.inbox.put(Batch.of([message._topic], [message.payload], [0], [message.dup], self._generation,
                                    time.time()))

    def _ack(self, batch: Batch) -> int:
        with self._gen_lock:
            gen = self._generation
        mids = [m for m, g in zip(batch.mids, batch.generations, strict=True) if m and g == gen]  # arrival order
        self.client.ack_many(mids)
        return len(mids)

    # --- writer -----------------------------------------------------------------------------

    def _write_with_retry(self, batch: Parsed) -> BatchResult | None:
        """Commit the batch, retrying while the database is unavailable; None if stopping first."""
        attempt = 0
        while True:
            try:
                t0 = time.perf_counter()
                result = self.writer.write(batch)
                self.metrics.commit_seconds.observe(time.perf_counter() - t0)
                if attempt:
                    log.info("database is back; batch committed", extra={"attempts": attempt + 1})
                return result
            except (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.UndefinedTable) as exc:
                self.metrics.db_errors.inc()
                self.writer.close()
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.warning("batch not committed; retrying (nothing acked)",
                            extra={"error": str(exc).strip()[:200], "retry_in_s": delay, "messages": len(batch.msgs)})
                attempt += 1
                if self._stop.wait(delay) and attempt > 3:
                    return None  # stopping and the database stays away: leave it unacked for redelivery

    def _account(self, batch: Batch, result: BatchResult) -> None:
        m = self.metrics
        m.received.inc(len(batch))
        m.batch_size.observe(len(batch))
        m.rows.labels("telemetry").inc(result.rows["telemetry"])
        m.rows.labels("events").inc(result.rows["events"])
        m.duplicates.inc(result.duplicates)
        m.copy_fallbacks.inc(result.copy_fallbacks)
        for r in result.rejects:
            m.rejected.labels(r.reason).inc()
        m.gaps.inc(len(result.gaps))
        now = time.time()
        m.receive_lag_seconds.observe_many([now - t for t in batch.received])
        m.lag_seconds.observe_many([now - t for t in result.published])
        t = self.totals
        t.messages += result.messages
        t.telemetry_rows += result.rows["telemetry"]
        t.event_rows += result.rows["events"]
        t.duplicates += result.duplicates
        t.rejected += len(result.rejects)

    def _publish_entrapments(self, result: BatchResult) -> None:
        for e in result.entrapments:
            self.metrics.entrapments.inc()
            payload = orjson.dumps({"kind": "entrapment", "unit_id": e.unit_id, "event_time": e.time.isoformat(),
                                    "seq": e.seq, "alert_id": e.alert_id, "source": "ingest",
                                    "raised_at": datetime.now(UTC).isoformat()})
            self.client.publish(f"alerts/{e.unit_id}", payload, qos=1)
            log.warning("ENTRAPMENT", extra={"unit_id": e.unit_id, "event_time": e.time.isoformat(),
                                             "alert_id": e.alert_id})

    def _parse_loop(self) -> None:
        """Take batches from the inbox, validate them, hand them to the writer (in order)."""
        try:
            while True:
                draining = self._stop.is_set()
                batch = self.inbox.take(BATCH_MAX_MESSAGES, FLUSH_INTERVAL_S, 0.05 if draining else IDLE_TICK_S,
                                        batch_bytes=BATCH_MAX_BYTES)
                if batch:
                    parsed = self._parse_with_retry(batch)
                    if parsed is None:
                        break  # stopping while the database is away: the batch stays unacked
                    self.handoff.put(parsed)
                elif draining:
                    break
                else:
                    self.registry.refresh_if_stale()
        finally:
            self.handoff.put(None)  # tells the writer there is nothing more

    def _parse_with_retry(self, batch: Batch) -> Parsed | None:
        """Parse; while the registry cannot be loaded, wait and retry (rejecting nothing)."""
        attempt = 0
        while True:
            try:
                return self.parser.parse(batch)
            except RegistryUnavailable as exc:
                self.metrics.db_errors.inc()
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.warning("registry unavailable; batch held, nothing rejected or acked",
                            extra={"error": str(exc)[:200], "retry_in_s": delay, "messages": len(batch)})
                attempt += 1
                if self._stop.wait(delay) and attempt > 3:
                    return None

    def _writer_loop(self) -> None:
        last_stats = time.monotonic()
        last_housekeeping = 0.0
        abandoned = False
        while True:
            try:
                parsed = self.handoff.get(timeout=IDLE_TICK_S)
            except queue.Empty:
                parsed = False
            if parsed is None:
                break
            if parsed and not abandoned:
                result = self._write_with_retry(parsed)
                if result is None:  # stopping while the database is away: leave the rest unacked,
                    abandoned = True  # but keep draining the hand-off so the parser can finish
                    continue
                self._publish_entrapments(result)
                self.metrics.acked.inc(self._ack(parsed.msgs))
                self._account(parsed.msgs, result)
            now = time.monotonic()
            if not abandoned and self.consuming and now - last_housekeeping >= IDLE_TICK_S:
                last_housekeeping = now
                try:
                    self.metrics.gaps.inc(len(self.writer.maintain()))
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    self.writer.close()
                    log.warning("housekeeping skipped: database unavailable", extra={"error": str(exc)[:200]})
            if now - last_stats >= STATS_EVERY_S:
                last_stats = now
                log.info("ingest progress", extra={**self.totals.__dict__, "queue": len(self.inbox)})

    # --- broker connection ------------------------------------------------------------------

    def _connect_mqtt(self) -> None:
        """Connect (without a lease paho reconnects by itself after that). Idempotent: with a lease
        it is called after every renewal, and reclaims a session the broker handed to another
        connection only after a pause."""
        with self._mqtt_lock:
            if self._stop.is_set() or self.client._thread is not None:  # stopping, or the network loop runs
                return
            if time.monotonic() - self._taken_over_at < TAKEOVER_BACKOFF_S:
                return
            if self._taken_over_at:
                log.error("reclaiming our session: another client connected with our client id while we held "
                          "the lease (two pairs configured with one --client-id?)",
                          extra={"client_id": self.options.client_id})
            ep = self.settings.mqtt
            self.client.connect_async(ep.host, ep.port, keepalive=KEEPALIVE_S, clean_start=False,
                                      properties=self._connect_properties())
            self.client.loop_start()

    def _disconnect_mqtt(self) -> None:
        """Close the connection and stop paho's loop; the session (and its backlog) stays at the broker."""
        with self._mqtt_lock:
            self.client.disconnect()
            self.client.loop_stop()
            self._taken_over_at = 0.0  # a session taken with the lease is no intruder's; only one taken while held is
        self._connected.clear()
        self.metrics.connected.set(0)

    @property
    def consuming(self) -> bool:
        """False for a standby without the lease: it neither reads the broker nor writes."""
        return self.keeper is None or self.keeper.held.is_set()

    # --- lifecycle --------------------------------------------------------------------------

    def check_broker(self) -> None:
        """With --group: refuse (ConfigurationError) a broker not known to keep shared subscriptions
        across a restart, unless told it is acceptable. See ingest/brokercheck.py."""
        if self.options.group:
            check_group_broker(self.settings.mqtt, self.options.client_id, self.options.group,
                               allow_volatile=self.options.allow_volatile_group)

    def start(self) -> None:
        """Connect (or, with a lease, stand by for it) and start the pipeline threads (returns at once)."""
        self.check_broker()
        if self.settings.metrics_port:
            self._metrics_server, _ = start_http_server(self.settings.metrics_port, registry=self.metrics.registry)
        if not self.options.lease:
            self._connect_mqtt()
        self.registry.load()
        self._parser = threading.Thread(target=self._parse_loop, name="liftwatch-parser", daemon=True)
        self._writer = threading.Thread(target=self._writer_loop, name="liftwatch-writer", daemon=True)
        self._parser.start()
        self._writer.start()
        if self.options.lease:
            self.keeper = LeaseKeeper(Lease(self.settings.database_url, self.options.client_id,
                                            ttl_s=self.settings.ingest_lease_ttl_s),
                                      start_consuming=self._connect_mqtt, stop_consuming=self._disconnect_mqtt,
                                      on_change=lambda held: self.metrics.lease_held.set(int(held)))
            self.keeper.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once connected and subscribed."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Stop taking messages, commit and ack what was taken, disconnect (session kept), and
        with a lease hand it over at once."""
        self._accepting = False
        self._stop.set()
        if self.keeper is not None:
            self.keeper.stop()  # no more renewals or reconnects; the lease is released below
        if getattr(self, "_writer", None) is not None:
            self._parser.join()
            if self._writer.is_alive():
                self._writer.join()
        self._disconnect_mqtt()
        if self.keeper is not None and self.keeper.held.is_set():
            self.keeper.lease.release()  # after the disconnect: two never consume at once
        self.writer.close()
        self.registry.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("ingestor stopped", extra=dict(self.totals.__dict__))

    def run(self) -> None:
        """Start, then block until SIGTERM/SIGINT, then stop cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        while not self._stop.wait(0.5):
            if not (self._writer.is_alive() and self._parser.is_alive()):
                log.error("a pipeline thread died; stopping")
                break
        self.stop()
