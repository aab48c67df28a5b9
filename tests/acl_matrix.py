"""The device ACL matrix, one definition for every broker path: what each device and service
account tries, and what must get through. Used by test_device_acl.py (Mosquitto, judged by
delivery) and test_device_hook.py (the HTTP hook EMQX asks, judged by its answers)."""

from __future__ import annotations

UNITS = [f"DEV-{i}" for i in range(5)]
STREAMS = ("telemetry", "event", "status")
SERVICES = ("ingest", "simulator", "dispatcher")


def own_topics(unit: str) -> list[str]:
    return [f"lift/{unit}/{s}" for s in STREAMS]


def foreign_topics(unit: str) -> list[str]:
    """Other units' topics and places outside the unit's namespace: 16 per unit, none allowed."""
    return [f"lift/{o}/{s}" for o in UNITS if o != unit for s in STREAMS] + \
        ["alerts/" + unit, "lift/other", f"lift/{unit}x/telemetry", "lift"]


#: everything a device might subscribe to; a device may read nothing at all
DEVICE_SUBSCRIPTIONS = ["lift/#", "lift/+/telemetry", "#", "$SYS/#", "$share/ingest/lift/+/telemetry", "alerts/#",
                        *[f"lift/{o}/{s}" for o in UNITS for s in STREAMS]]

#: (account, action, topic, allowed): what the service accounts need, and what they must not do
SERVICE_CASES = [
    ("ingest", "subscribe", "lift/#", True),
    ("ingest", "subscribe", "$share/ingest/lift/+/telemetry", True),
    ("ingest", "subscribe", "lift/+/event", True),
    ("ingest", "subscribe", "$SYS/broker/version", True),
    ("ingest", "subscribe", "$SYS/brokers/+/version", True),
    ("ingest", "publish", "alerts/DEV-1", True),
    ("ingest", "publish", "lift/DEV-1/telemetry", False),  # the ingestor cannot speak for a unit
    ("ingest", "subscribe", "#", False),
    ("ingest", "subscribe", "$SYS/#", False),
    ("dispatcher", "subscribe", "alerts/#", True),
    ("dispatcher", "subscribe", "lift/#", False),
    ("dispatcher", "publish", "alerts/DEV-1", False),
    ("simulator", "publish", "lift/DEV-3/telemetry", True),
    ("simulator", "subscribe", "lift/#", False),
]
