"""Device identity: every device against every other device's topics, wildcards and $SYS,
through a real Mosquitto running with the password and ACL files `liftwatch devices` keeps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from acl_matrix import DEVICE_SUBSCRIPTIONS, SERVICES, UNITS, foreign_topics, own_topics
from helpers import register_units
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.throwaway import Mosquitto


class Probe:
    """One MQTT v5 connection that reports the broker's reason codes synchronously."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username:
            self.c.username_pw_set(username, password)
        self.connack: object = None
        self.acks: dict[int, list] = {}
        self._ev = threading.Event()
        self._cond = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_ack
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self._on_ack(c, u, mid, rcs, p)
        self.c.connect_async("127.0.0.1", port)
        self.c.loop_start()
        self._ev.wait(10)

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = rc
        self._ev.set()

    def _on_ack(self, client, userdata, mid, rc, props) -> None:
        with self._cond:
            self.acks[mid] = rc if isinstance(rc, list) else [rc]
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _wait(self, mid: int) -> list:
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self.acks, 10), f"no ack for {mid}"
            return self.acks[mid]

    def publish_allowed(self, topic: str) -> bool:
        return self.publish_many([topic])[topic]

    def publish_many(self, topics: list[str]) -> dict[str, bool]:
        """Publish to each topic (QoS 1), then collect every PUBACK: allowed unless its reason code fails."""
        mids = {topic: self.c.publish(topic, b'{"v":1}', qos=1).mid for topic in topics}
        return {topic: not self._wait(mid)[0].is_failure for topic, mid in mids.items()}

    def subscribe_allowed(self, topic: str) -> bool:
        return not self._wait(self.c.subscribe(topic, qos=1)[1])[0].is_failure

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _devices(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftwatch", "devices", *args], env=env, capture_output=True, text=True)


@pytest.fixture()
def secured(db_url: str, tmp_path: Path):
    register_units(db_url, UNITS)
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url, "LIFTWATCH_BROKER_PASSWD_FILE": str(tmp_path / "passwd"),
           "LIFTWATCH_BROKER_ACL_FILE": str(tmp_path / "acl")}
    secrets = {}
    for name in [*UNITS, *SERVICES]:
        r = _devices(env, "provision", name)
        assert r.returncode == 0, r.stderr
        secrets[name] = re.search(r"password: (\S+)", r.stdout).group(1)
    broker = Mosquitto(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl").start()
    try:
        yield broker, secrets, env
    finally:
        broker.destroy()


def _settle(check, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # and give stragglers the chance to show up


def test_acl_matrix_denies_everything_but_own_topics(secured) -> None:
    """Judged by what is delivered, which is what matters: trusted readers subscribed to
    everything see only each device's own topics; devices subscribed to everything see nothing."""
    broker, secrets, _ = secured
    reader = Probe(broker.port, "ingest", secrets["ingest"])
    dispatcher = Probe(broker.port, "dispatcher", secrets["dispatcher"])
    seen: list[str] = []
    reader.c.on_message = lambda c, u, m: seen.append(m.topic)
    dispatcher.c.on_message = lambda c, u, m: seen.append(m.topic)
    assert reader.subscribe_allowed("lift/#") and dispatcher.subscribe_allowed("alerts/#")
    probes = {u: Probe(broker.port, u, secrets[u]) for u in UNITS}
    received: dict[str, list[str]] = {u: [] for u in UNITS}
    attempts = 0
    try:
        for unit, p in probes.items():  # devices subscribe to everything they can think of
            assert p.connected, p.connack
            p.c.on_message = lambda c, u, m, unit=unit: received[unit].append(m.topic)
            for topic in DEVICE_SUBSCRIPTIONS:
                p.c.subscribe(topic, qos=1)
        own = {t for u in UNITS for t in own_topics(u)}
        for unit, p in probes.items():  # then publish to their own topics and to everyone else's
            foreign = foreign_topics(unit)
            for topic in own_topics(unit) + foreign:
                p.c.publish(topic, unit.encode(), qos=0)
                attempts += topic in foreign
        _settle(lambda: own <= set(seen))
    finally:
        for p in (reader, dispatcher, *probes.values()):
            p.close()
    assert sorted(seen) == sorted(own), "only each device's own topics may get through"  # 15 delivered
    assert attempts == len(UNITS) * (4 * 3 + 4)  # 80 foreign publishes, none delivered
    assert received == {u: [] for u in UNITS}, "a device received traffic"


def test_anonymous_wrong_password_and_revoked_are_refused(secured) -> None:
    broker, secrets, env = secured
    for user, pw in ((None, None), ("DEV-1", "wrong"), ("nobody", "x")):
        p = Probe(broker.port, user, pw)
        assert not p.connected, (user, p.connack)
        p.close()
    ingest = Probe(broker.port, "ingest", secrets["ingest"])
    assert ingest.connected and ingest.subscribe_allowed("$share/ingest/lift/+/telemetry")
    assert not ingest.publish_allowed("lift/DEV-1/telemetry")  # the ingestor cannot speak for a unit
    ingest.close()
    r = _devices(env, "revoke", "DEV-1", "--reload-pid", str(broker.proc.pid))
    assert r.returncode == 0, r.stderr
    import time

    time.sleep(0.5)  # SIGHUP is handled asynchronously
    p = Probe(broker.port, "DEV-1", secrets["DEV-1"])
    assert not p.connected
    p.close()
    p = Probe(broker.port, "DEV-2", secrets["DEV-2"])
    assert p.connected  # the others are unaffected
    p.close()
    listed = _devices(env, "list").stdout
    assert re.search(r"DEV-1\s+device .*revoked", listed) and re.search(r"DEV-2\s+device .*active", listed)


def test_the_ingest_account_may_read_the_broker_version(secured) -> None:
    """`ingest --group` identifies the broker from $SYS/broker/version; the ACL `liftwatch devices`
    writes must let the ingest account read it, or every group would be refused as unidentified."""
    from ingest.brokercheck import identify
    from liftwatch.settings import parse_mqtt_url

    broker, secrets, _ = secured
    found = identify(parse_mqtt_url(f"mqtt://ingest:{secrets['ingest']}@127.0.0.1:{broker.port}"), "acl-check")
    assert found.product == "mosquitto" and found.version
    device = identify(parse_mqtt_url(f"mqtt://DEV-0:{secrets['DEV-0']}@127.0.0.1:{broker.port}"), "acl-check-dev")
    assert device.product == "unknown", "a device may read nothing, $SYS included"
