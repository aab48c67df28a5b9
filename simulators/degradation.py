"""Degradation mechanisms of faulty units: what wears, which signal moves, and by how much.

Severity rises linearly from 0 at the onset to 1 one `ramp` later (default 14 days) and then
stays there (the unit is as bad as it gets until someone repairs it). Every effect is a
function of severity alone, so a short ramp compresses the same story into a short run.
The table in docs/simulator.md is the contract the analytics are scored against: keep the
two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Mechanism(StrEnum):
    DOOR_OPERATOR_WEAR = "door_operator_wear"
    GUIDE_ROLLER_WEAR = "guide_roller_wear"
    BRAKE_WEAR = "brake_wear"
    MOTOR_OVERHEATING = "motor_overheating"
    INTERMITTENT_SAFETY_CIRCUIT = "intermittent_safety_circuit"


# which mechanisms fit which unit kind (escalators have no car door and no landing to level at)
FOR_KIND: Final = {
    "traction": tuple(Mechanism),
    "hydraulic": tuple(Mechanism),
    "dumbwaiter": tuple(Mechanism),
    "escalator": (Mechanism.GUIDE_ROLLER_WEAR, Mechanism.MOTOR_OVERHEATING, Mechanism.INTERMITTENT_SAFETY_CIRCUIT),
    "moving_walk": (Mechanism.GUIDE_ROLLER_WEAR, Mechanism.MOTOR_OVERHEATING, Mechanism.INTERMITTENT_SAFETY_CIRCUIT),
}

# the signal each mechanism moves, and which way (for the truth file and the analytics)
SIGNAL: Final = {
    Mechanism.DOOR_OPERATOR_WEAR: ("door_close_ms", "up"),
    Mechanism.GUIDE_ROLLER_WEAR: ("vibration_mg", "up"),
    Mechanism.BRAKE_WEAR: ("abs(leveling_mm)", "up"),
    Mechanism.MOTOR_OVERHEATING: ("motor_temp_c", "up"),
    Mechanism.INTERMITTENT_SAFETY_CIRCUIT: ("safety_circuit_break events", "up"),
}

# --- magnitudes at full severity (documented in docs/simulator.md) ------------------------------
DOOR_CLOSE_GAIN = 0.6  # door_close_ms x (1 + 0.6 s): a worn operator belt/roller closes 60 % slower
DOOR_NOISE_GAIN = 1.0  # and its spread doubles
DOOR_REOPEN_GAIN = 0.25  # reopen probability per close: 0.03 healthy -> 0.28
DOOR_OPEN_FAULT_GAIN = 0.004  # door fails to open at a landing, per stop
VIBRATION_GAIN = 2.0  # vibration_mg x (1 + 2 s): flat-spotted rollers triple the ride vibration
BRAKE_OVERSHOOT_MM = 6.0  # the car overshoots the landing by up to 6 mm in its travel direction
BRAKE_NOISE_GAIN = 2.0  # leveling spread x (1 + 2 s)
BRAKE_OVERTRAVEL_P = 0.02  # overtravel per stop at a terminal landing
MOTOR_HEAT_GAIN = 1.5  # heat per trip x (1 + 1.5 s): failing fan or bearing friction
MOTOR_OFFSET_C = 10.0  # and the winding runs 10 degC hotter at rest
SAFETY_TRIP_P = 0.3  # safety-circuit break per trip at full severity (healthy: 1e-5)
SAFETY_IDLE_PER_H = 8.0  # and while standing: the landing-door locks are part of the chain
SAFETY_ESCALATOR_PER_H = 8.0  # escalators: breaks per running hour at full severity


@dataclass(frozen=True, slots=True)
class Degradation:
    mechanism: Mechanism
    onset: float  # epoch s
    ramp: float  # seconds from onset to full severity

    def severity(self, t: float) -> float:
        if t <= self.onset:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return min(1.0, (t - self.onset) / self.ramp)


def severity(deg: Degradation | None, mechanism: Mechanism, t: float) -> float:
    """Severity of `mechanism` on a unit at time t (0 when the unit has another or none)."""
    if deg is None or deg.mechanism is not mechanism:
        return 0.0
    return deg.severity(t)
