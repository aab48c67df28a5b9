"""Before an ingestor joins a shared-subscription group: does the broker keep the group across a restart?

A shared subscription the broker forgets on restart loses data: until the replicas have
reconnected and subscribed again, a device that is back first gets PUBACK "No matching
subscribers" (a success code, so it never resends) and the message is gone. `make chaos`
measured it on Mosquitto 2.0.11 (docs/reliability.md). So `liftwatch ingest --group` first
identifies the broker from its retained $SYS topics, on a short connection of its own:

* Mosquitto publishes `$SYS/broker/version` ("mosquitto version 2.0.11"). No Mosquitto
  release is known here to restore shared subscriptions: refused.
* EMQX publishes `$SYS/brokers/<node>/version` and `$SYS/brokers` (its running nodes), all
  retained. A group lives as long as one member is connected to a running node, and a node
  restart only drops the members connected to that node; a single node's restart drops the
  whole group (regular sessions live in the node's memory). So EMQX is accepted with two or
  more running nodes and refused with one (docs/deploy.md).
* Anything else, or no answer (an ACL that hides $SYS from the ingest account), is refused:
  the ingestor cannot know, and guessing wrong loses messages silently.

`--allow-volatile-group` skips the check: for a broker verified by other means
(`bench/chaos.py --shared` against it), or where the loss is accepted (tests, benchmarks).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.errors import ConfigurationError
from liftwatch.settings import MqttEndpoint

log = logging.getLogger(__name__)

IDENTIFY_TIMEOUT_S = 3.0  # retained $SYS messages arrive right after SUBACK; this is generous
GRACE_S = 0.3  # after the first version message, for EMQX's node list to arrive as well
SYS_TOPICS = ("$SYS/broker/version", "$SYS/brokers/+/version", "$SYS/brokers")
DOCS = "docs/deploy.md (scale-out) and docs/reliability.md (the measured loss)"
PATIENCE_S = 60.0  # how long to wait for an unreachable broker to answer the startup check


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    product: str  # mosquitto | emqx | unknown
    version: str | None = None
    nodes: tuple[str, ...] = ()  # EMQX: the running nodes

    def __str__(self) -> str:
        if self.product == "unknown":
            return "an unidentified broker"
        nodes = f", {len(self.nodes)} running node(s)" if self.product == "emqx" else ""
        return f"{self.product} {self.version or '(version unknown)'}{nodes}"


def identify_from(messages: dict[str, bytes]) -> BrokerIdentity:
    """The broker, from the retained $SYS messages it sent (topic -> payload)."""
    text = {t: p.decode("utf-8", "replace").strip() for t, p in messages.items()}
    if "$SYS/broker/version" in text and text["$SYS/broker/version"].lower().startswith("mosquitto"):
        return BrokerIdentity("mosquitto", text["$SYS/broker/version"].split()[-1])
    versions = [v for t, v in text.items() if t.startswith("$SYS/brokers/") and t.endswith("/version")]
    if versions:
        nodes = tuple(n for n in text.get("$SYS/brokers", "").split(",") if n)
        if not nodes:  # no node list: count the nodes that announced a version
            nodes = tuple(t.split("/")[2] for t in text if t.startswith("$SYS/brokers/") and t.endswith("/version"))
        return BrokerIdentity("emqx", versions[0], nodes)
    return BrokerIdentity("unknown")


def verdict(broker: BrokerIdentity) -> str | None:
    """None if a shared group is safe on this broker, else why not (for the refusal message)."""
    if broker.product == "emqx" and len(broker.nodes) >= 2:
        return None
    if broker.product == "mosquitto":
        why = (f"Mosquitto {broker.version} does not keep shared subscriptions across a restart: until the "
               "replicas have subscribed again, devices that reconnect first are answered 'No matching "
               "subscribers' and their messages are dropped (measured by make chaos)")
    elif broker.product == "emqx":
        why = (f"EMQX {broker.version} runs as a single node: its sessions live in memory, so a restart drops "
               "the shared subscription group (and the members' queued messages) until the replicas return")
    else:
        why = ("the broker could not be identified (no retained $SYS/broker/version or $SYS/brokers/+/version "
               f"within {IDENTIFY_TIMEOUT_S:.0f} s; does the ingest account's ACL allow reading them?), so "
               "there is no knowing whether it keeps shared subscriptions across a restart")
    return (f"refusing to join shared-subscription group: {why}. Use one ingestor without --group, or the "
            "active/standby pair (--lease, as docker-compose.yml runs it), or an EMQX cluster of two or more "
            f"nodes; see {DOCS}. If your broker keeps shared subscriptions (check with bench/chaos.py --shared) "
            "or losing those messages is acceptable, start with --allow-volatile-group.")


def identify(endpoint: MqttEndpoint, client_id: str, timeout: float = IDENTIFY_TIMEOUT_S) -> BrokerIdentity:
    """Connect with a clean, short-lived session, read the retained $SYS topics, disconnect.
    Raises OSError if the broker cannot be reached, PermissionError if it refuses the login."""
    got: dict[str, bytes] = {}
    first = threading.Event()
    connected = threading.Event()
    refused: list[str] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-check"[:64], protocol=mqtt.MQTTv5)
    if endpoint.username:
        c.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        c.tls_set()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        else:
            client.subscribe([(t, 0) for t in SYS_TOPICS])
        connected.set()

    def on_message(client, userdata, msg) -> None:
        got[msg.topic] = msg.payload
        if msg.topic.endswith("/version"):
            first.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect(endpoint.host, endpoint.port, keepalive=30, clean_start=True)
    c.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            raise PermissionError(f"the broker refused the connection: {refused[0] if refused else 'no CONNACK'}")
        if first.wait(timeout):
            time.sleep(GRACE_S)  # EMQX: the node list may follow the first version message
    finally:
        c.disconnect()
        c.loop_stop()
    return identify_from(dict(got))


def check_group_broker(endpoint: MqttEndpoint, client_id: str, group: str, *, allow_volatile: bool) -> None:
    """Raise ConfigurationError unless the broker keeps the shared group across restarts (or the
    caller accepts that it may not); wait up to PATIENCE_S for a broker that is not up yet."""
    if allow_volatile:
        log.warning("--allow-volatile-group: not checking that the broker keeps the shared subscription "
                    "across a restart (messages published while the group is gone are lost)", extra={"group": group})
        return
    deadline, delay = time.monotonic() + PATIENCE_S, 1.0
    while True:
        try:
            broker = identify(endpoint, client_id)
            break
        except PermissionError as exc:  # an OSError too: before the retry below
            raise ConfigurationError(f"the shared-subscription check could not log in: {exc}") from exc
        except OSError as exc:
            if time.monotonic() + delay > deadline:
                raise ConfigurationError(f"cannot reach the broker to check that it keeps shared "
                                         f"subscriptions across a restart: {exc}") from exc
            log.warning("broker not reachable for the shared-subscription check; retrying",
                        extra={"error": str(exc)[:200], "retry_in_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    why = verdict(broker)
    if why:
        raise ConfigurationError(why)
    log.info("broker keeps shared subscriptions across node restarts", extra={"broker": str(broker), "group": group})
