"""The fault vocabulary as the simulated controllers use it: source codes and healthy rates.

Rates are for a healthy unit and are multiplied by `--fault-scale`; degradation mechanisms
add their own on top (see degradation.py). Per-trip and per-stop faults happen where a real
controller detects them (during travel, at a landing); per-day faults are scheduled ahead.
Entrapments are not drawn on their own: they follow from a hard stop between floors or a
door that will not open while passengers are inside, as they do in real life.
"""

from __future__ import annotations

from typing import Final

# the number a typical controller or retrofit sensor reports for each code (source_code)
SOURCE_CODES: Final = {
    "safety_circuit_break": "E20", "door_close_fault": "E30", "door_open_fault": "E31",
    "door_lock_fault": "E32", "door_open_while_moving": "E33", "moving_with_door_open": "E34",
    "entrapment": "E35", "stop_outside_door_zone": "E40", "overtravel_top": "E41",
    "overtravel_bottom": "E42", "floor_position_lost": "E43", "unintended_movement": "E44",
    "motor_runtime_limiter": "E50", "overspeed": "E51", "brake_fault": "E52", "prevent_restart": "E53",
    "alarm_button": "A01", "power_failure": "P01", "abnormal_vibration": "S10",
}

# --- healthy lifts, per trip / per stop -----------------------------------------------------
SAFETY_BREAK_PER_TRIP = 1e-5  # safety-circuit break during travel
SAFETY_HARD_SHARE_RANDOM = 0.1  # share of random breaks that need a technician (car stuck)
SAFETY_HARD_SHARE_INTERMITTENT = 0.03  # an intermittent contact mostly recloses by itself
DOOR_REOPEN_P = 0.03  # a close interrupted by a passenger or the light curtain
DOOR_CLOSE_FAULT_REOPENS = 3  # the controller gives up after this many reopens
DOOR_OPEN_FAULT_PER_STOP = 3e-6
DOOR_OPEN_FAULT_TRAPS = 0.3  # share of door-open faults with passengers that trap them
DOOR_LOCK_FAULT_PER_TRIP = 2e-5
OVERTRAVEL_PER_TERMINAL_STOP = 2e-6
STOP_OUTSIDE_ZONE_MM = 20.0  # beyond re-levelling accuracy (GB/T 7588: +-20 mm)
ABNORMAL_VIBRATION_MG = 45.0
MOTOR_LIMITER_C = 90.0  # motor_runtime_limiter trips above this winding temperature
MOTOR_RESUME_C = 70.0  # and lets the car run again below this

# --- per day, scheduled ahead ------------------------------------------------------------------
ALARM_BUTTON_PER_DAY = 0.03  # pressed by mistake or by a curious child
FLOOR_LOST_PER_DAY = 0.003
BRAKE_FAULT_PER_DAY = 0.0008  # needs a technician: hours out of service
OUTAGE_PER_DAY = 1 / 90  # planned repair (parts, modernisation work)
SITE_FIRE_ALARM_PER_DAY = 1 / 120  # fire alarm (test or false alarm): every lift of the site returns
SITE_POWER_FAILURE_PER_DAY = 1 / 150
ESCALATOR_SAFETY_PER_RUNNING_DAY = 0.05  # comb plate, handrail or step-sag switch
ESCALATOR_STOP_BUTTON_PER_RUNNING_DAY = 0.05

# --- how long things take (seconds) ----------------------------------------------------------
RESCUE_MEDIAN_S = 22 * 60  # Shanghai requires rescuers on site within 30 min
RESCUE_SIGMA = 0.35
RESCUE_BOUNDS_S = (6 * 60, 90 * 60)
ENTRAPMENT_DETECT_S = 60  # a stopped car with passengers outside a door zone this long = entrapment
AFTER_RESCUE_OUT_OF_SERVICE_S = (20 * 60, 90 * 60)
