"""A simulated escalator or moving walk: runs on the building's timetable, reports every minute.

No doors, floors or levelling; what wears is the step/roller chain (vibration), the motor
(temperature) and the safety switches (comb plate, handrail, step sag), which stop it until
staff restart it. Load follows the site's traffic profile.
"""

from __future__ import annotations

import math
from typing import Any, Final

from simulators import faults
from simulators.degradation import (
    MOTOR_HEAT_GAIN,
    SAFETY_ESCALATOR_PER_H,
    VIBRATION_GAIN,
    Mechanism,
)
from simulators.schedule import Scheduled
from simulators.traffic import escalator_running, trips_per_hour
from simulators.truth import FaultRecord
from simulators.unit import HEARTBEAT_S, THERMAL_TAU_S, Steps, UnitSim

RUN_HEAT_C: Final = 8.0  # winding above ambient when running empty
LOAD_HEAT_C: Final = 0.25  # and per % of load


class EscalatorSim(UnitSim):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direction = "up" if self.spec.index % 2 == 0 else "down"
        self.running = False
        self.vib_rec: FaultRecord | None = None

    def fields(self, t: float, **over: Any) -> dict[str, Any]:
        if not self.running:
            d: dict[str, Any] = {"moving": False, "speed_mps": 0.0, "direction": "none", "load_pct": 0.0}
        else:
            load = min(100.0, max(0.0, trips_per_hour(self.spec.site.pattern, t) * self.spec.busy * 1.5
                                  + self.r.gauss(0.0, 3.0)))
            vib = (self.spec.vibration_mg + 3.0) * (1 + 0.002 * load) * self.r.lognormvariate(0.0, 0.1)
            vib *= 1 + VIBRATION_GAIN * self.sev(Mechanism.GUIDE_ROLLER_WEAR, t)
            d = {"moving": True, "speed_mps": round(self.spec.rated_speed_mps * self.r.gauss(1.0, 0.004), 3),
                 "direction": self.direction, "load_pct": round(load, 1), "vibration_mg": round(vib, 1)}
        d.update(over)
        return d

    def warm(self, t: float, load: float) -> None:
        """Approach the running temperature (the base class only knows cooling)."""
        self.cool(t)
        if self.running:
            gain = 1 + MOTOR_HEAT_GAIN * self.sev(Mechanism.MOTOR_OVERHEATING, t)
            target = self.ambient(t) + (RUN_HEAT_C + LOAD_HEAT_C * load) * gain
            self.temp = target + (self.temp - target) * math.exp(-HEARTBEAT_S / THERMAL_TAU_S)

    def report(self, t: float, **over: Any) -> Steps:
        f = self.fields(t, **over)
        self.warm(t, f["load_pct"])
        yield self.sample(t, **f)
        vib = f.get("vibration_mg")
        if vib is not None and vib > faults.ABNORMAL_VIBRATION_MG and self.vib_rec is None:
            item, self.vib_rec = self.raise_fault(t, "abnormal_vibration",
                                                  self.cause(Mechanism.GUIDE_ROLLER_WEAR, t), {"vibration_mg": vib})
            yield item
        elif self.vib_rec is not None and (vib is None or vib < faults.ABNORMAL_VIBRATION_MG * 0.9):
            yield self.clear_fault(t, self.vib_rec)
            self.vib_rec = None

    def run(self) -> Steps:
        r, end, pattern = self.r, self.end, self.spec.site.pattern
        sched, i = self.schedule, 0
        t = self.ctx.window.history_start + r.uniform(0.0, HEARTBEAT_S)
        while t < end:
            if i < len(sched) and sched[i].start <= t:
                s = sched[i]
                i += 1
                if s.end > t:
                    t = yield from self.scheduled(t, s)
                continue
            should_run = escalator_running(pattern, t)
            if should_run and not self.running:
                self.run_count += 1
            self.running = should_run
            yield from self.report(t)
            if self.running:
                self.run_hours += HEARTBEAT_S / 3600.0
                per_h = (faults.ESCALATOR_SAFETY_PER_RUNNING_DAY / 24 * self.scale
                         + SAFETY_ESCALATOR_PER_H * self.sev(Mechanism.INTERMITTENT_SAFETY_CIRCUIT, t))
                if r.random() < per_h * HEARTBEAT_S / 3600.0:
                    t = yield from self.stop(t + r.uniform(1, HEARTBEAT_S - 1), "safety_circuit_break",
                                             self.cause(Mechanism.INTERMITTENT_SAFETY_CIRCUIT, t))
                    continue
                if r.random() < faults.ESCALATOR_STOP_BUTTON_PER_RUNNING_DAY / 24 * self.scale * HEARTBEAT_S / 3600:
                    t = yield from self.stop(t + r.uniform(1, HEARTBEAT_S - 1), "alarm_button", "random")
                    continue
            t += HEARTBEAT_S

    def stop(self, t: float, code: str, cause: str) -> Steps:
        """A safety switch or the stop button: stopped until staff (or a technician) restart it."""
        r = self.r
        self.running = False
        item, rec = self.raise_fault(t, code, cause)
        yield item
        hard = r.random() < 0.05
        restart = t + (self.rescue_time() * 2 if hard else r.uniform(2, 15) * 60)
        mode = "out_of_service" if hard else "stopped"
        self.episode(mode, code, t, restart)
        nxt = t
        while True:
            yield from self.report(nxt, mode=mode)
            nxt += HEARTBEAT_S
            if nxt >= restart:
                break
        yield self.clear_fault(restart, rec)
        return restart

    def scheduled(self, t: float, s: Scheduled) -> Steps:
        mode = {"visit": "inspection", "outage": "out_of_service", "fire_alarm": "stopped",
                "power_failure": "emergency_power", "brake_fault": "out_of_service"}.get(s.kind)
        if mode is None:  # alarm_button and anything lift-only: a short stop
            return (yield from self.stop(t, "alarm_button", "random"))
        rec = None
        if s.kind in ("power_failure", "brake_fault"):
            item, rec = self.raise_fault(t, s.kind, "random")
            yield item
        reason = f"{s.visit.kind} visit {s.visit.visit_id}" if s.visit else s.kind.replace("_", " ")
        self.episode(mode, reason, t, s.end)
        self.running = False
        while t < s.end:
            yield from self.report(t, mode=mode)
            t += HEARTBEAT_S
        if rec is not None:
            yield self.clear_fault(s.end, rec)
        return s.end
