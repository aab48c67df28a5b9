"""`liftwatch ingest --group` refuses a broker that forgets shared subscriptions on restart
(Mosquitto), and one it cannot identify, unless told it is acceptable. Against real brokers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import count, publish, register_units, telemetry_messages, wait_stable

from ingest.brokercheck import BrokerIdentity, identify, identify_from, verdict
from ingest.service import IngestOptions, Ingestor
from liftwatch.errors import ConfigurationError
from liftwatch.settings import Settings, parse_mqtt_url
from liftwatch.throwaway import Mosquitto


def _mosquitto_version() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    out = subprocess.run([exe, "-h"], capture_output=True, text=True).stdout
    return re.search(r"mosquitto version (\S+)", out).group(1)


def test_ingest_group_on_mosquitto_refuses_to_start_and_says_why(db_url: str, mqtt_url: str) -> None:
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url, "LIFTWATCH_MQTT_URL": mqtt_url,
           "LIFTWATCH_METRICS_PORT": "0"}
    env.pop("LIFTWATCH_INGEST_ALLOW_VOLATILE_GROUP", None)
    r = subprocess.run([sys.executable, "-m", "liftwatch", "ingest", "--group", "g1", "--client-id",
                        f"t-{uuid.uuid4().hex[:8]}"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    assert f"Mosquitto {_mosquitto_version()} does not keep shared subscriptions across a restart" in err
    assert "No matching subscribers" in err and "docs/deploy.md" in err and "--allow-volatile-group" in err
    assert "--lease" in err, "the refusal must say what to run instead"


def test_ingest_group_runs_when_told_the_loss_is_acceptable(db_url: str, mqtt_url: str) -> None:
    register_units(db_url, ["EL-BC"])
    ing = Ingestor(Settings(database_url=db_url, mqtt_url=mqtt_url, metrics_port=0),
                   IngestOptions(f"g{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}", allow_volatile_group=True))
    ing.start()
    try:
        assert ing.wait_ready(15)
        publish(mqtt_url, telemetry_messages("EL-BC", range(50)))
        assert wait_stable(lambda: count(db_url, "SELECT count(*) FROM telemetry"), 50, timeout=30) == 50
    finally:
        ing.stop()


def test_without_group_there_is_no_check(db_url: str, mqtt_url: str) -> None:
    ing = Ingestor(Settings(database_url=db_url, mqtt_url=mqtt_url, metrics_port=0),
                   IngestOptions(None, f"t-{uuid.uuid4().hex[:8]}"))
    ing.check_broker()  # nothing to check: returns without asking the broker


def test_identify_reads_the_retained_version_of_mosquitto(mqtt_url: str) -> None:
    broker = identify(parse_mqtt_url(mqtt_url), f"t-{uuid.uuid4().hex[:8]}")
    assert broker == BrokerIdentity("mosquitto", _mosquitto_version())


def test_a_broker_that_hides_its_version_is_refused(db_url: str, tmp_path: Path) -> None:
    """Mosquitto behind an ACL that does not let the ingest account read $SYS/broker/version:
    unidentified, so refused (the check must not pass by default where it cannot see)."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    subprocess.run([shutil.which("mosquitto_passwd"), "-c", "-b", str(passwd), "ingest", "pw-for-this-test"],
                   check=True, capture_output=True)
    acl.write_text("user ingest\ntopic read lift/#\n")
    b = Mosquitto(password_file=passwd, acl_file=acl).start()
    try:
        url = f"mqtt://ingest:pw-for-this-test@127.0.0.1:{b.port}"
        assert identify(parse_mqtt_url(url), "t-hidden", timeout=1.0) == BrokerIdentity("unknown")
        ing = Ingestor(Settings(database_url=db_url, mqtt_url=url, metrics_port=0), IngestOptions("g", "t-hidden"))
        with pytest.raises(ConfigurationError, match="could not be identified.*ACL"):
            ing.check_broker()
        wrong = f"mqtt://ingest:wrong@127.0.0.1:{b.port}"
        with pytest.raises(ConfigurationError, match="could not log in"):
            Ingestor(Settings(database_url=db_url, mqtt_url=wrong, metrics_port=0),
                     IngestOptions("g", "t-wrong")).check_broker()
    finally:
        b.destroy()


@pytest.mark.parametrize(("messages", "expected", "accepted"), [
    ({"$SYS/broker/version": b"mosquitto version 2.0.18"}, BrokerIdentity("mosquitto", "2.0.18"), False),
    ({"$SYS/brokers/emqx@n1/version": b"5.8.9", "$SYS/brokers": b"emqx@n1"},
     BrokerIdentity("emqx", "5.8.9", ("emqx@n1",)), False),
    ({"$SYS/brokers/emqx@n1/version": b"5.8.9", "$SYS/brokers/emqx@n2/version": b"5.8.9",
      "$SYS/brokers": b"emqx@n1,emqx@n2,emqx@n3"}, BrokerIdentity("emqx", "5.8.9", ("emqx@n1", "emqx@n2", "emqx@n3")),
     True),
    ({"$SYS/brokers/emqx@n1/version": b"5.8.9", "$SYS/brokers/emqx@n2/version": b"5.8.9"},
     BrokerIdentity("emqx", "5.8.9", ("emqx@n1", "emqx@n2")), True),
    ({}, BrokerIdentity("unknown"), False),
    ({"$SYS/broker/version": b"HiveMQ 4"}, BrokerIdentity("unknown"), False),
])
def test_verdict_by_broker(messages: dict[str, bytes], expected: BrokerIdentity, accepted: bool) -> None:
    """The decision on what the broker announced (EMQX's topics as its source publishes them,
    retained: $SYS/brokers/<node>/version and $SYS/brokers with the running nodes)."""
    broker = identify_from(messages)
    assert broker == expected
    assert (verdict(broker) is None) == accepted
