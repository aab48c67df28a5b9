"""What a chaos run does: units, messages, pacing and the fault schedule."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Plan:
    units: int = 200
    per_unit: int = 500  # messages per unit: 100 k in all
    duration: float = 100.0  # seconds the stream takes (paced)
    faults: list[str] = field(default_factory=lambda: ["ingestor", "broker", "database", "ingestor", "broker",
                                                        "database", "ingestor", "broker", "overlap", "ingestor"])
    clients: int = 0  # MQTT connections for the units; 0 = one per unit
    broker_down_s: float = 1.0
    db_down_s: float = 4.0
    seed: int = 8
    quick: bool = False
    topology: str = "single"  # single | standby | dual | shared (bench/chaoskit/ingestors.py)
    replicas: int = 1
    side_units: int = 20  # units whose events, bad messages and seq holes take the other write paths
    samples: int = 1  # samples per message (a JSON array when more than one), seq and ts per sample

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(per_unit=100, duration=20.0, faults=["ingestor", "broker", "database"], quick=True,
                   side_units=5)

    @property
    def messages(self) -> int:
        return self.units * self.per_unit

    @property
    def n_clients(self) -> int:
        return self.clients or self.units
