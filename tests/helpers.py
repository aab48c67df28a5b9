"""Shared test helpers: register units, publish over real MQTT, wait for rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.contract import Telemetry, encode
from liftwatch.settings import parse_mqtt_url


def register_units(dsn: str, unit_ids: Iterable[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO companies (company_id, name, kind) VALUES ('MC1', 'Maint Co', 'maintenance'),"
                  " ('UU1', 'User Co', 'user_unit') ON CONFLICT DO NOTHING")
        c.execute("INSERT INTO sites (site_id, name, lat, lon) VALUES ('S1', 'Site', 31.2, 121.4) ON CONFLICT DO NOTHING")
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO units (unit_id, site_id, kind, maintenance_company_id, user_unit_id) "
                "VALUES (%s, 'S1', 'traction', 'MC1', 'UU1') ON CONFLICT DO NOTHING",
                [(u,) for u in unit_ids],
            )


def telemetry_messages(unit_id: str, seqs: Iterable[int], *, start: datetime | None = None,
                       step: timedelta = timedelta(milliseconds=50)) -> list[tuple[str, bytes]]:
    """One sample per message; 20 samples/s of device time, the ingestor's default per-unit rate."""
    start = start or datetime.now(UTC) - timedelta(minutes=10)
    return [(f"lift/{unit_id}/telemetry",
             encode(Telemetry(time=start + step * s, unit_id=unit_id, seq=s, mode="normal", floor=s % 20,
                              door_close_ms=3000.0, vibration_mg=10.0)))
            for s in seqs]


class Publisher:
    """A real paho client that publishes QoS 1 and waits until the broker has acked everything."""

    def __init__(self, url: str, client_id: str | None = None) -> None:
        ep = parse_mqtt_url(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self._infos: list[mqtt.MQTTMessageInfo] = []
        self.client.connect(ep.host, ep.port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        n = 0
        for topic, payload in messages:
            self._infos.append(self.client.publish(topic, payload, qos=qos))
            n += 1
        return n

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                left = sum(not i.is_published() for i in self._infos)
                raise TimeoutError(f"{left} publishes not acknowledged by the broker")
        self._infos.clear()

    def close(self) -> None:
        self.wait()
        self.client.disconnect()
        self.client.loop_stop()


def publish(url: str, messages: Iterable[tuple[str, bytes]]) -> int:
    p = Publisher(url)
    try:
        return p.publish(messages)
    finally:
        p.close()


def count(dsn: str, sql: str, params: tuple = ()) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(sql, params).fetchone()[0]


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def wait_stable(value: Callable[[], int], expected: int, timeout: float = 60.0, settle: float = 1.0) -> int:
    """Wait until value() == expected, then make sure it stays there for `settle` seconds."""
    wait_until(lambda: value() >= expected, timeout, what=f"{expected} rows")
    time.sleep(settle)
    return value()


def ingest_subprocess(db_url: str, mqtt_url: str, client_id: str, *extra_env: tuple[str, str],
                      group: str | None = "ingest", lease: bool = False) -> subprocess.Popen:
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url, "LIFTWATCH_MQTT_URL": mqtt_url,
           "LIFTWATCH_METRICS_PORT": "0", **dict(extra_env)}
    # a group of the test's own keeps tests apart on the session's broker, never restarted under it
    args = [*(["--group", group, "--allow-volatile-group"] if group else []), *(["--lease"] if lease else [])]
    return subprocess.Popen([sys.executable, "-m", "liftwatch", "ingest", "--client-id", client_id, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
