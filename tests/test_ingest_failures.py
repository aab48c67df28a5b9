"""The ingestor under failure: database down, broker restarted, rows the database refuses."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import (
    Publisher,
    count,
    publish,
    register_units,
    telemetry_messages,
    wait_stable,
    wait_until,
)

from ingest.service import IngestOptions, Ingestor
from liftwatch import db as dbmod
from liftwatch.settings import Settings
from liftwatch.throwaway import Mosquitto, PgCluster, free_port


def _ingestor(db_url: str, mqtt_url: str, client_id: str, group: str | None, **kw) -> Ingestor:
    settings = Settings(database_url=db_url, mqtt_url=mqtt_url, metrics_port=kw.pop("metrics_port", 0), **kw)
    ing = Ingestor(settings, IngestOptions(group, client_id, allow_volatile_group=True))
    ing.start()
    assert ing.wait_ready(15)
    return ing


@pytest.fixture()
def own_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster().init().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def _rows(dsn: str) -> int:
    try:
        return count(dsn, "SELECT count(*) FROM telemetry")
    except psycopg.OperationalError:
        return -1


def test_database_down_mid_stream_loses_nothing(own_cluster: PgCluster, mqtt_url: str) -> None:
    dsn = own_cluster.dsn("liftwatch")
    dbmod.migrate(dsn)
    units = [f"EL-DB{i}" for i in range(5)]
    register_units(dsn, units)
    ing = _ingestor(dsn, mqtt_url, f"t-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}")
    pub = Publisher(mqtt_url)
    try:
        def stream() -> None:  # 10,000 messages over ~4 s, so the outage lands mid-stream
            for chunk in range(20):
                for u in units:
                    pub.publish(telemetry_messages(u, range(chunk * 100, chunk * 100 + 100)))
                time.sleep(0.2)

        publisher = threading.Thread(target=stream)
        publisher.start()
        wait_until(lambda: _rows(dsn) >= 1000, 30, what="rows before the outage")
        own_cluster.stop("immediate")
        time.sleep(3)
        down_errors = ing.metrics.db_errors._value.get()
        own_cluster.start()
        publisher.join()
        pub.wait()
        assert wait_stable(lambda: _rows(dsn), 10_000, timeout=90, settle=1.5) == 10_000
    finally:
        ing.stop()
        pub.close()
    assert down_errors >= 1, "the outage was not noticed by the writer"
    assert count(dsn, "SELECT count(DISTINCT (unit_id, seq)) FROM telemetry") == 10_000
    assert count(dsn, "SELECT count(*) FROM rejected_messages") == 0


def test_broker_restart_mid_drain_loses_nothing(db_url: str, own_broker: Mosquitto) -> None:
    units = [f"EL-BR{i}" for i in range(4)]
    register_units(db_url, units)
    # a plain subscription: Mosquitto 2.0 does not restore shared ones after a restart (docs/ingest.md)
    cid, group = f"t-{uuid.uuid4().hex[:8]}", None
    _ingestor(db_url, own_broker.url, cid, group).stop()  # leaves a persistent session behind
    publish(own_broker.url, [m for u in units for m in telemetry_messages(u, range(5000))])
    ing = _ingestor(db_url, own_broker.url, cid, group)
    try:
        wait_until(lambda: _rows(db_url) >= 2000, 60, interval=0.01, what="some rows before the restart")
        # counted before the restart begins: stopping and starting the broker takes long enough
        # (seconds on a loaded machine) for the ingestor to write everything it already holds,
        # and what it held unacknowledged is exactly what the broker must redeliver
        at_restart = _rows(db_url)
        own_broker.restart()
        assert wait_stable(lambda: _rows(db_url), 20_000, timeout=90, settle=1.5) == 20_000
    finally:
        ing.stop()
    assert at_restart < 20_000, "the restart came too late to test anything"
    assert count(db_url, "SELECT count(DISTINCT (unit_id, seq)) FROM telemetry") == 20_000
    # the broker redelivers what was in flight (DUP): none of it may be refused (rate_limited did)
    assert count(db_url, "SELECT count(*) FROM rejected_messages") == 0


def test_row_refused_by_database_is_rejected_alone(db_url: str, mqtt_url: str) -> None:
    """A constraint the validator does not know about: the batch is split, only the bad message is rejected."""
    register_units(db_url, ["EL-P"])
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("ALTER TABLE telemetry ADD CONSTRAINT no_floor_13 CHECK (floor IS DISTINCT FROM 13)")
    ing = _ingestor(db_url, mqtt_url, f"t-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}")
    try:
        publish(mqtt_url, telemetry_messages("EL-P", range(100)))  # floor = seq % 20
        wait_until(lambda: ing.totals.messages == 100, 30)
    finally:
        ing.stop()
    assert _rows(db_url) == 95
    with psycopg.connect(db_url) as c:
        rejects = c.execute("SELECT reason, detail FROM rejected_messages").fetchall()
    assert len(rejects) == 5
    assert all(r[0] == "schema" and "no_floor_13" in r[1] for r in rejects), rejects


def test_metrics_endpoint_counts(db_url: str, mqtt_url: str) -> None:
    register_units(db_url, ["EL-M"])
    port = free_port()
    ing = _ingestor(db_url, mqtt_url, f"t-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}", metrics_port=port)
    try:
        publish(mqtt_url, telemetry_messages("EL-M", range(30)) + [("lift/EL-M/telemetry", b"garbage")])
        wait_until(lambda: ing.totals.messages == 31, 30)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        ing.stop()
    assert 'liftwatch_ingest_rows_written_total{table="telemetry"} 30.0' in text
    assert 'liftwatch_ingest_rejected_total{reason="invalid_json"} 1.0' in text
    assert "liftwatch_ingest_messages_received_total 31.0" in text
    assert "liftwatch_ingest_publish_to_commit_seconds_count 30.0" in text
    assert "liftwatch_ingest_receive_to_commit_seconds_count 31.0" in text
    assert "liftwatch_ingest_queue_depth" in text


def test_ingestor_started_while_database_is_down_rejects_nothing(own_cluster: PgCluster, mqtt_url: str) -> None:
    """The registry cannot be read: messages are held, not rejected as unknown_unit (chaos finding)."""
    dsn = own_cluster.dsn("liftwatch")
    dbmod.migrate(dsn)
    register_units(dsn, ["EL-DD"])
    own_cluster.stop("immediate")
    ing = _ingestor(dsn, mqtt_url, f"t-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}")
    try:
        publish(mqtt_url, telemetry_messages("EL-DD", range(500)))
        time.sleep(2)
        assert ing.metrics.db_errors._value.get() >= 1  # it noticed, and waited
        own_cluster.start()
        assert wait_stable(lambda: _rows(dsn), 500, timeout=60, settle=1.0) == 500
    finally:
        ing.stop()
    assert count(dsn, "SELECT count(*) FROM rejected_messages") == 0


def test_broker_restart_then_devices_publish_before_the_ingestor_is_back(db_url: str, own_broker: Mosquitto) -> None:
    """Plain (single-replica) subscription: messages published after a broker restart, before
    the ingestor has reconnected, wait in its persistent session. With a shared subscription
    Mosquitto 2.0 drops them (found by `make chaos`; not asserted here because whether the
    devices or the ingestor reconnect first is a matter of timing)."""
    register_units(db_url, ["EL-BW"])
    settings = Settings(database_url=db_url, mqtt_url=own_broker.url, metrics_port=0)
    ing = Ingestor(settings, IngestOptions(None, f"t-{uuid.uuid4().hex[:8]}"))
    ing.start()
    assert ing.wait_ready(15)
    try:
        publish(own_broker.url, telemetry_messages("EL-BW", range(100)))
        wait_until(lambda: _rows(db_url) == 100, 30)
        own_broker.restart()  # paho waits at least 1 s before reconnecting: devices are back first
        publish(own_broker.url, telemetry_messages("EL-BW", range(100, 2100)))
        assert wait_stable(lambda: _rows(db_url), 2100, timeout=20, settle=1.5) == 2100
    finally:
        ing.stop()
