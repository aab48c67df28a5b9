"""Active/standby ingestors (--lease): one consumes, the other takes over; never both, nothing lost.

Each test has its own broker: a plain subscription sees every unit's messages, and a pair's
persistent session must not collect other tests' traffic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import Publisher, count, register_units, telemetry_messages, wait_stable, wait_until

from ingest.lease import RESTART_GRACE_S, Lease
from ingest.service import IngestOptions, Ingestor
from liftwatch import db as dbmod
from liftwatch.errors import ConfigurationError
from liftwatch.settings import Settings
from liftwatch.throwaway import Mosquitto, PgCluster

LEASE_TTL_S = 4.0  # the tests' time-to-live (production: 10 s), so that waiting for it stays short


def _rows(dsn: str) -> int:
    try:
        return count(dsn, "SELECT count(*) FROM telemetry")
    except psycopg.OperationalError:
        return -1


def _lease(dsn: str, name: str) -> tuple[str, int] | None:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT holder, handovers FROM ingest_leases WHERE name = %s", (name,)).fetchone()


def _pair(dsn: str, url: str, client_id: str, ttl_s: float = LEASE_TTL_S) -> list[Ingestor]:
    settings = Settings(database_url=dsn, mqtt_url=url, metrics_port=0, gap_settle_s=2, ingest_lease_ttl_s=ttl_s)
    pair = [Ingestor(settings, IngestOptions(None, client_id, lease=True)) for _ in range(2)]
    for ing in pair:
        ing.start()
    wait_until(lambda: sum(i.consuming for i in pair) == 1, 15, what="one replica holding the lease")
    active = next(i for i in pair if i.consuming)
    assert active.wait_ready(15), "the holder did not connect and subscribe"
    return pair


class Replica:
    """`liftwatch ingest --lease` as a subprocess (so it can be killed -9), logging to a file."""

    def __init__(self, dsn: str, url: str, client_id: str, log: Path, ttl_s: float = LEASE_TTL_S) -> None:
        self.log = log
        env = {**os.environ, "LIFTWATCH_DATABASE_URL": dsn, "LIFTWATCH_MQTT_URL": url, "LIFTWATCH_METRICS_PORT": "0",
               "LIFTWATCH_GAP_SETTLE_S": "2", "LIFTWATCH_INGEST_LEASE_TTL_S": str(ttl_s), "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "liftwatch", "ingest", "--client-id", client_id,
                                          "--lease"], env=env, stdout=fh, stderr=subprocess.STDOUT)

    def says(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture()
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        r.end()


def test_only_the_holder_consumes(db_url: str, own_broker: Mosquitto) -> None:
    units = [f"EL-L{i}" for i in range(4)]
    register_units(db_url, units)
    cid = f"pair-{uuid.uuid4().hex[:6]}"
    pair = _pair(db_url, own_broker.url, cid)
    try:
        active, standby = sorted(pair, key=lambda i: not i.consuming)
        msgs = [m for u in units for m in telemetry_messages(u, range(1000))]
        pub = Publisher(own_broker.url)
        pub.publish(msgs)
        pub.close()
        assert wait_stable(lambda: _rows(db_url), 4000, timeout=60) == 4000
        assert active.totals.messages == 4000 and standby.totals.messages == 0
        assert not standby.client.is_connected(), "the standby must not hold a broker connection"
        holder, handovers = _lease(db_url, cid)
        assert holder == active.keeper.lease.holder and handovers == 0
    finally:
        for ing in pair:
            ing.stop()


def test_broker_restart_the_holder_reconnects_and_loses_nothing(db_url: str, own_broker: Mosquitto) -> None:
    """With a lease paho does not reconnect by itself; the keeper does, after renewing. Messages
    published before it is back wait in the pair's persistent session (a plain subscription)."""
    register_units(db_url, ["EL-LB"])
    cid = f"pair-{uuid.uuid4().hex[:6]}"
    pair = _pair(db_url, own_broker.url, cid)
    active, standby = sorted(pair, key=lambda i: not i.consuming)
    try:
        pub = Publisher(own_broker.url)
        pub.publish(telemetry_messages("EL-LB", range(1000)))
        pub.close()
        wait_until(lambda: _rows(db_url) == 1000, 30, what="the first 1000 rows")
        own_broker.restart()
        pub = Publisher(own_broker.url)  # devices are back before the ingestor
        pub.publish(telemetry_messages("EL-LB", range(1000, 3000)))
        pub.close()
        assert wait_stable(lambda: _rows(db_url), 3000, timeout=60) == 3000
        assert active.consuming and standby.totals.messages == 0
    finally:
        for ing in pair:
            ing.stop()


def test_sigterm_hands_the_lease_over_at_once(db_url: str, own_broker: Mosquitto) -> None:
    register_units(db_url, ["EL-LS"])
    cid = f"pair-{uuid.uuid4().hex[:6]}"
    pair = _pair(db_url, own_broker.url, cid)
    active, standby = sorted(pair, key=lambda i: not i.consuming)
    try:
        active.stop()  # releases after disconnecting
        t0 = time.monotonic()
        wait_until(lambda: standby.consuming, LEASE_TTL_S, interval=0.05, what="the standby taking over")
        handover_s = time.monotonic() - t0
        assert standby.wait_ready(15)
        pub = Publisher(own_broker.url)
        pub.publish(telemetry_messages("EL-LS", range(500)))
        pub.close()
        assert wait_stable(lambda: _rows(db_url), 500, timeout=30) == 500
    finally:
        standby.stop()
    assert handover_s < 2.0, f"a released lease must pass over at the next poll, took {handover_s:.2f} s"
    assert _lease(db_url, cid)[1] == 1


def test_kill_9_of_the_holder_mid_stream_loses_nothing(db_url: str, own_broker: Mosquitto, tmp_path: Path,
                                                       replicas: list[Replica]) -> None:
    """The standby takes over at its next poll (the holder's lease connection died with it, so
    no waiting for the time-to-live), and gets the session's backlog: exactly N rows."""
    units = [f"EL-LK{i}" for i in range(10)]
    register_units(db_url, units)
    cid = f"pair-{uuid.uuid4().hex[:6]}"
    for n in range(2):
        replicas.append(Replica(db_url, own_broker.url, cid, tmp_path / f"replica-{n}.log"))
    wait_until(lambda: sum(r.says("ingest lease acquired") for r in replicas) == 1, 30, what="a holder")
    wait_until(lambda: sum(r.says("connected to broker") for r in replicas) == 1, 30, what="the holder connected")
    holder = next(r for r in replicas if r.says("ingest lease acquired"))
    other = next(r for r in replicas if r is not holder)
    wait_until(lambda: other.says("standing by"), 10, what="the other replica standing by")
    assert not other.says("connected to broker")
    pub = Publisher(own_broker.url)
    try:
        for u in units:
            pub.publish(telemetry_messages(u, range(2000)))
        wait_until(lambda: _rows(db_url) >= 3000, 60, interval=0.02, what="some rows before the kill")
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(10)
        killed_at, t0 = _rows(db_url), time.monotonic()
        wait_until(lambda: other.says("ingest lease acquired"), LEASE_TTL_S * 2, interval=0.05, what="takeover")
        takeover_s = time.monotonic() - t0
        pub.wait()
        total = wait_stable(lambda: _rows(db_url), 20_000, timeout=120, settle=2.0)
    finally:
        pub.close()
    assert killed_at < 20_000, "the kill came too late to test anything"
    assert takeover_s < 2.0, f"took {takeover_s:.1f} s: the dead holder's connection was not noticed"
    assert total == 20_000
    assert count(db_url, "SELECT count(DISTINCT (unit_id, seq)) FROM telemetry") == 20_000
    assert count(db_url, "SELECT count(*) FROM rejected_messages") == 0
    time.sleep(3)  # past the gap settle time: the handover left no hole
    assert count(db_url, "SELECT count(*) FROM ingest_gaps") == 0
    assert _lease(db_url, cid)[1] == 1


def test_a_hung_holder_is_replaced_after_the_ttl_and_does_not_come_back(
        db_url: str, own_broker: Mosquitto, tmp_path: Path, replicas: list[Replica]) -> None:
    """SIGSTOP: the holder's connections stay open but it renews nothing. The standby takes the
    expired lease and the session (the broker drops the frozen connection); thawed, the old
    holder finds the lease gone and stands by instead of fighting for the client id."""
    register_units(db_url, ["EL-LH"])
    cid = f"pair-{uuid.uuid4().hex[:6]}"
    for n in range(2):
        replicas.append(Replica(db_url, own_broker.url, cid, tmp_path / f"replica-{n}.log"))
    wait_until(lambda: sum(r.says("connected to broker") for r in replicas) == 1, 30, what="the holder connected")
    holder = next(r for r in replicas if r.says("ingest lease acquired"))
    other = next(r for r in replicas if r is not holder)
    pub = Publisher(own_broker.url)
    try:
        pub.publish(telemetry_messages("EL-LH", range(0, 1000)))
        pub.wait()
        wait_until(lambda: _rows(db_url) == 1000, 30, what="the first 1000 rows")
        holder.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        pub.publish(telemetry_messages("EL-LH", range(1000, 3000)))
        wait_until(lambda: other.says("ingest lease acquired"), LEASE_TTL_S * 3, what="takeover of the expired lease")
        takeover_s = time.monotonic() - t0
        pub.wait()
        assert wait_stable(lambda: _rows(db_url), 3000, timeout=60) == 3000
        holder.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: holder.says("standing by"), 20, what="the thawed holder standing by")
        pub.publish(telemetry_messages("EL-LH", range(3000, 4000)))
        pub.wait()
        assert wait_stable(lambda: _rows(db_url), 4000, timeout=60, settle=3.0) == 4000
    finally:
        if holder.proc.poll() is None:
            holder.proc.send_signal(signal.SIGCONT)
        pub.close()
    assert LEASE_TTL_S - 1 <= takeover_s <= LEASE_TTL_S * 2.5, takeover_s
    assert count(db_url, "SELECT count(DISTINCT (unit_id, seq)) FROM telemetry") == 4000
    assert other.says("connected to broker") >= 1
    assert holder.says("connected to broker") == 1, "the old holder reconnected: the two fought for the session"
    assert _lease(db_url, cid)[1] == 1


def test_database_restart_keeps_the_holder(own_broker: Mosquitto) -> None:
    """Every connection ends with a database restart, the holder's lease connection too: that must
    not count as a dead holder, or each restart would fail over for nothing."""
    cluster = PgCluster().init().start()
    try:
        dsn = cluster.dsn("liftwatch")
        dbmod.migrate(dsn)
        register_units(dsn, ["EL-LD"])
        cid = f"pair-{uuid.uuid4().hex[:6]}"
        pair = _pair(dsn, own_broker.url, cid, ttl_s=10.0)  # production's: the outage must not outlast it
        active, standby = sorted(pair, key=lambda i: not i.consuming)
        try:
            cluster.stop("immediate")
            time.sleep(2)
            cluster.start()
            wait_until(lambda: _rows(dsn) == 0, 30, what="the database back")
            time.sleep(RESTART_GRACE_S + 1)  # the standby polls all along, past the restart grace
            pub = Publisher(own_broker.url)
            pub.publish(telemetry_messages("EL-LD", range(500)))
            pub.close()
            assert wait_stable(lambda: _rows(dsn), 500, timeout=60) == 500
            assert active.consuming and not standby.consuming
            assert standby.totals.messages == 0
            assert _lease(dsn, cid) == (active.keeper.lease.holder, 0)
        finally:
            for ing in pair:
                ing.stop()
    finally:
        cluster.destroy()


def test_holder_killed_while_the_database_is_down_is_replaced_soon_after_it_is_back(
        own_broker: Mosquitto, tmp_path: Path, replicas: list[Replica]) -> None:
    """The dead holder's connection went away with the database, so the fast path cannot tell; not
    having renewed RESTART_GRACE_S after the restart gives it away, well before the time-to-live."""
    cluster = PgCluster().init().start()
    try:
        dsn = cluster.dsn("liftwatch")
        dbmod.migrate(dsn)
        register_units(dsn, ["EL-LO"])
        cid = f"pair-{uuid.uuid4().hex[:6]}"
        for n in range(2):  # a long time-to-live, so that only the restart grace can explain a quick takeover
            replicas.append(Replica(dsn, own_broker.url, cid, tmp_path / f"replica-{n}.log", ttl_s=30.0))
        wait_until(lambda: sum(r.says("connected to broker") for r in replicas) == 1, 30, what="the holder")
        holder = next(r for r in replicas if r.says("ingest lease acquired"))
        other = next(r for r in replicas if r is not holder)
        cluster.stop("immediate")
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(10)
        pub = Publisher(own_broker.url)
        pub.publish(telemetry_messages("EL-LO", range(300)))  # waits in the pair's session
        cluster.start()
        t0 = time.monotonic()
        wait_until(lambda: other.says("ingest lease acquired"), 30, interval=0.05, what="takeover")
        takeover_s = time.monotonic() - t0
        pub.close()
        assert wait_stable(lambda: _rows(dsn), 300, timeout=60) == 300
    finally:
        for r in replicas:
            r.end()
        cluster.destroy()
    assert takeover_s < RESTART_GRACE_S + 3, f"{takeover_s:.1f} s after the database was back"


def test_lease_and_group_exclude_each_other(db_url: str) -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        Ingestor(Settings(database_url=db_url, metrics_port=0), IngestOptions("g", "c", lease=True))


def test_lease_statement_semantics(db_url: str) -> None:
    """The SQL alone: a live holder keeps it, a second claimant waits, a dead holder's lease passes."""
    a, b = Lease(db_url, "L1", holder="a"), Lease(db_url, "L1", holder="b")
    try:
        assert a.acquire() and a.acquire()
        assert not b.acquire()
        assert b.current_holder() == "a"
        a.close()  # the holder's connection goes away: its backend ends
        wait_until(lambda: b.acquire(), 5, interval=0.05, what="b taking a dead holder's lease")
        assert not a.acquire()
        b.release()
        assert a.acquire()
    finally:
        a.close()
        b.close()
    assert _lease(db_url, "L1") == ("a", 2)
