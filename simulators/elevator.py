"""A simulated lift (traction or hydraulic): trips driven by traffic, door cycles, faults.

Per trip the lift reports twice: when it departs (door_close_ms of the close just done,
speed, load, ride vibration) and when it stops (leveling error at the landing). Idle, it
reports every minute. Scheduled happenings (visits, fire alarms, outages...) and the faults
a trip can run into switch it into other modes for a while; every such stretch and every
fault lands in the truth.
"""

from __future__ import annotations

import math
from typing import Any, Final

from simulators import faults
from simulators.clock import local_hour
from simulators.degradation import (
    BRAKE_NOISE_GAIN,
    BRAKE_OVERSHOOT_MM,
    BRAKE_OVERTRAVEL_P,
    DOOR_CLOSE_GAIN,
    DOOR_NOISE_GAIN,
    DOOR_OPEN_FAULT_GAIN,
    DOOR_REOPEN_GAIN,
    MOTOR_HEAT_GAIN,
    MOTOR_OFFSET_C,
    SAFETY_IDLE_PER_H,
    SAFETY_TRIP_P,
    VIBRATION_GAIN,
    Mechanism,
)
from simulators.schedule import Scheduled
from simulators.traffic import lobby_share, peak_share, trips_per_hour
from simulators.truth import FaultRecord
from simulators.unit import HEARTBEAT_S, THERMAL_TAU_S, Steps, UnitSim

FLOOR_M: Final = 3.3
ACCEL: Final = 0.8  # m/s^2, comfortable acceleration
INSPECTION_SPEED: Final = 0.3  # m/s, the technician's inspection run
HEAT_PER_TRIP_C: Final = 0.35  # winding heat of an average trip, before distance and load factors
DOOR_NOISE_MS: Final = 70.0

DOOR = Mechanism.DOOR_OPERATOR_WEAR
GUIDE = Mechanism.GUIDE_ROLLER_WEAR
BRAKE = Mechanism.BRAKE_WEAR
MOTOR = Mechanism.MOTOR_OVERHEATING
SAFETY = Mechanism.INTERMITTENT_SAFETY_CIRCUIT


class LiftSim(UnitSim):
    carries_people: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self.spec
        self.top = spec.floors
        self.floor = self.r.randint(1, self.top)
        self.rated_load = spec.rated_load_kg or 1000
        self.lev_sigma = 2.0 if spec.kind == "hydraulic" else 1.3
        self.aborted = False
        t0 = self.ctx.window.history_start
        rate = trips_per_hour(spec.site.pattern, t0) * spec.busy
        self.temp += HEAT_PER_TRIP_C * (1 + 0.1 * self.top / 3) * 0.9 * THERMAL_TAU_S * rate / 3600.0

    # --- signals ----------------------------------------------------------------------------

    def idle_fields(self, **over: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"floor": self.floor, "direction": "none", "moving": False, "door": "closed",
                             "door_zone": True, "passengers": False, "speed_mps": 0.0, "load_pct": 0.0}
        d.update(over)
        return d

    def door_close_ms(self, s: float) -> float:
        noise = self.r.gauss(0.0, DOOR_NOISE_MS * (1 + DOOR_NOISE_GAIN * s))
        return float(round(self.spec.door_close_ms * (1 + DOOR_CLOSE_GAIN * s) + noise))

    def vibration(self, t: float, v: float, load: float) -> float:
        base = self.spec.vibration_mg * (0.75 + 0.35 * v / self.spec.rated_speed_mps) * (1 + 0.001 * load)
        return round(base * self.r.lognormvariate(0.0, 0.12) * (1 + VIBRATION_GAIN * self.sev(GUIDE, t)), 1)

    def leveling(self, t: float, up: bool) -> float:
        s = self.sev(BRAKE, t)
        overshoot = BRAKE_OVERSHOOT_MM * s * (1 if up else -1)
        noise = self.r.gauss(0.0, self.lev_sigma * (1 + BRAKE_NOISE_GAIN * s))
        return round(self.spec.leveling_bias_mm + overshoot + noise, 1)

    def heat(self, t: float, floors_moved: int, load: float) -> None:
        self.cool(t)
        gain = 1 + MOTOR_HEAT_GAIN * self.sev(MOTOR, t)
        self.temp += HEAT_PER_TRIP_C * (1 + 0.1 * floors_moved) * (0.6 + load / 100.0) * gain

    def motor_hot(self, t: float) -> bool:
        self.cool(t)
        return self.temp + MOTOR_OFFSET_C * self.sev(MOTOR, t) > faults.MOTOR_LIMITER_C

    # --- the day ----------------------------------------------------------------------------

    def run(self) -> Steps:
        r, spec = self.r, self.spec
        pattern, busy, end = spec.site.pattern, spec.busy, self.end
        sched, i = self.schedule, 0
        t = self.ctx.window.history_start + r.uniform(0.0, HEARTBEAT_S)
        yield self.sample(t, **self.idle_fields())
        call, call_hour = -math.inf, -1
        while t < end:
            if i < len(sched) and sched[i].start <= t:
                s = sched[i]
                i += 1
                if s.end > t:
                    t = yield from self.scheduled(t, s)
                continue
            next_s = sched[i].start if i < len(sched) else math.inf
            hour = int(t // 3600)
            if call <= t or hour != call_hour:  # the next call is kept until taken or the hourly rate changes
                rate = trips_per_hour(pattern, t) * busy
                call = t + r.expovariate(rate / 3600.0) if rate > 0 else math.inf
                call_hour = hour
            hb = max(t, self.last_t + HEARTBEAT_S)
            idle_breaks = SAFETY_IDLE_PER_H * self.sev(SAFETY, t)
            if idle_breaks > 0:  # a worn contact also opens while the car stands (door locks)
                brk = t + r.expovariate(idle_breaks / 3600.0)
                if brk < min(hb, call, next_s, end):
                    t = yield from self.idle_break(brk)
                    continue
            if hb <= call and hb < next_s:
                t = hb
                yield self.sample(t, **self.idle_fields())
            elif call >= next_s:
                t = next_s
            else:
                t = yield from self.call(call)

    def call(self, t: float) -> Steps:
        """A passenger calls: the car may first run empty to the calling landing."""
        r, top = self.r, self.top
        pattern = self.spec.site.pattern
        if r.random() < lobby_share(pattern, t):
            up_peak = local_hour(t) < 12
            if r.random() < (0.75 if up_peak else 0.25):
                origin, dest = 1, r.randint(2, top)
            else:
                origin, dest = r.randint(2, top), 1
        else:
            origin = r.randint(1, top)
            dest = r.randint(1, top - 1)
            dest += dest >= origin
        if origin != self.floor:
            t = yield from self.move(t, origin, passengers=False, load=0.0, boarding=False)
            if self.aborted:
                return t
        persons = 1 + int(r.expovariate(1.0 / (0.5 + 5.0 * peak_share(pattern, t))))
        load = min(110.0, max(0.0, persons * 75.0 / self.rated_load * 100.0 + r.gauss(0.0, 1.5)))
        if not self.carries_people:  # goods: a tray, a trolley of linen, a box of files
            load = r.uniform(10.0, 90.0)
        return (yield from self.move(t, dest, passengers=self.carries_people, load=round(load, 1), boarding=True))

    def move(self, t: float, dest: int, *, passengers: bool, load: float, boarding: bool,
             speed: float | None = None, quiet: bool = False) -> Steps:
        """One run from the current floor to `dest`, with what can go wrong on the way.

        quiet: no random faults (inspection and fire-service runs are supervised)."""
        r, scale = self.r, 0.0 if quiet else self.scale
        self.aborted = False
        origin = self.floor
        if dest == origin:
            return t
        extra: dict[str, Any] | None = None
        close_ms: float | None = None
        if boarding:
            t += r.uniform(3.0, 8.0) + 0.03 * load
            s_door = self.sev(DOOR, t)
            p_reopen = faults.DOOR_REOPEN_P + DOOR_REOPEN_GAIN * s_door
            reopens = 0
            while reopens < faults.DOOR_CLOSE_FAULT_REOPENS and r.random() < p_reopen:
                reopens += 1
            close_ms = self.door_close_ms(s_door)
            t += reopens * (1.5 + close_ms / 2000.0)
            if reopens >= faults.DOOR_CLOSE_FAULT_REOPENS and not quiet:
                return (yield from self.door_stuck_open(t, passengers, load))
            t += close_ms / 1000.0
            extra = {"door_reopens": reopens} if reopens else None
        if r.random() < faults.DOOR_LOCK_FAULT_PER_TRIP * scale:
            return (yield from self.short_fault(t, "door_lock_fault", r.uniform(5, 120), "random"))
        up = dest > origin
        floors_moved = abs(dest - origin)
        dist = floors_moved * FLOOR_M
        v = min(speed or self.spec.rated_speed_mps, math.sqrt(ACCEL * dist))
        travel = dist / v + v / ACCEL
        self.run_count += 1
        vib = self.vibration(t, v, load)
        yield self.sample(t, floor=origin, direction="up" if up else "down", moving=True, door="closed",
                          door_zone=False, passengers=passengers, speed_mps=round(v * r.gauss(1.0, 0.005), 2),
                          load_pct=load, vibration_mg=vib, door_close_ms=close_ms, extra=extra)
        depart = t
        vib_rec: FaultRecord | None = None
        if vib > faults.ABNORMAL_VIBRATION_MG:
            item, vib_rec = self.raise_fault(t + 1.0, "abnormal_vibration", self.cause(GUIDE, t),
                                             {"vibration_mg": vib})
            yield item
        p_break = faults.SAFETY_BREAK_PER_TRIP * scale + (0.0 if quiet else SAFETY_TRIP_P * self.sev(SAFETY, t))
        if r.random() < p_break:
            frac = r.uniform(0.15, 0.85)
            t_b = t + travel * frac
            if vib_rec is not None:
                yield self.clear_fault(t_b, vib_rec)
                vib_rec = None
            t = yield from self.safety_break(t_b, round(origin + (dest - origin) * frac), passengers, load)
            if self.aborted:
                self.run_hours += (t_b - depart) / 3600.0
                return t
            t_stop = t + travel * (1 - frac) * 1.3 + 2.0
        else:
            t_stop = t + travel
        self.run_hours += (t_stop - depart) / 3600.0
        self.heat(t_stop, floors_moved, load)
        self.floor = dest
        return (yield from self.arrive(t_stop, dest, up, passengers, load, vib_rec, scale))

    def arrive(self, t: float, dest: int, up: bool, passengers: bool, load: float,
               vib_rec: FaultRecord | None, scale: float) -> Steps:
        r = self.r
        lev = self.leveling(t, up)
        outside = abs(lev) > faults.STOP_OUTSIDE_ZONE_MM
        yield self.sample(t, floor=dest, direction="none", moving=False, door="closed" if outside else "opening",
                          door_zone=not outside, passengers=passengers, speed_mps=0.0, load_pct=load,
                          leveling_mm=lev)
        if vib_rec is not None:
            yield self.clear_fault(t, vib_rec)
        if outside:
            item, rec = self.raise_fault(t, "stop_outside_door_zone", self.cause(BRAKE, t), {"leveling_mm": lev})
            yield item
            t += r.uniform(3.0, 10.0)  # re-levelling
            yield self.clear_fault(t, rec)
        if dest in (1, self.top) and scale > 0:
            p = faults.OVERTRAVEL_PER_TERMINAL_STOP * scale + BRAKE_OVERTRAVEL_P * self.sev(BRAKE, t)
            if r.random() < p:
                code = "overtravel_top" if dest == self.top else "overtravel_bottom"
                t = yield from self.mode_fault(t, code, self.cause(BRAKE, t), "stopped", r.uniform(5, 20) * 60,
                                               passengers=False)
                self.aborted = True
                return t
        p_dof = (faults.DOOR_OPEN_FAULT_PER_STOP * scale + DOOR_OPEN_FAULT_GAIN * self.sev(DOOR, t)) if scale else 0.0
        if r.random() < p_dof:
            item, rec = self.raise_fault(t, "door_open_fault", self.cause(DOOR, t), {"floor": dest})
            yield item
            if passengers and r.random() < faults.DOOR_OPEN_FAULT_TRAPS:
                return (yield from self.trapped(t, [rec], door_zone=True, cause=rec.cause))
            t = yield from self.hold(t, t + r.uniform(5, 60), **self.idle_fields(passengers=passengers))
            yield self.clear_fault(t, rec)
        if scale > 0 and self.mode == "normal" and self.motor_hot(t):
            return (yield from self.cooldown(t))
        return t + r.uniform(3.0, 7.0)

    # --- trouble ----------------------------------------------------------------------------

    def door_stuck_open(self, t: float, passengers: bool, load: float) -> Steps:
        item, rec = self.raise_fault(t, "door_close_fault", self.cause(DOOR, t),
                                     {"floor": self.floor, "reopens": faults.DOOR_CLOSE_FAULT_REOPENS})
        yield item
        t = yield from self.hold(t, t + self.r.uniform(20, 120),
                                 **self.idle_fields(door="open", passengers=passengers, load_pct=load))
        yield self.clear_fault(t, rec)
        self.aborted = True
        return t + self.r.uniform(2.0, 5.0)

    def short_fault(self, t: float, code: str, duration: float, cause: str) -> Steps:
        item, rec = self.raise_fault(t, code, cause, {"floor": self.floor})
        yield item
        t = yield from self.hold(t, t + duration, **self.idle_fields())
        yield self.clear_fault(t, rec)
        self.aborted = True
        return t

    def mode_fault(self, t: float, code: str, cause: str, mode: str, duration: float, **fields: Any) -> Steps:
        """A fault that keeps the car in `mode` until someone resets it."""
        item, rec = self.raise_fault(t, code, cause, {"floor": self.floor})
        yield item
        t = yield from self.mode_hold(t, t + duration, mode, code, **fields)
        yield self.clear_fault(t, rec)
        return t

    def mode_hold(self, t: float, until: float, mode: str, reason: str, **fields: Any) -> Steps:
        self.mode = mode
        self.episode(mode, reason, t, until)
        yield self.sample(t, **self.idle_fields(**fields))
        t = yield from self.hold(t, until, **self.idle_fields(**fields))
        self.mode = "normal"
        yield self.sample(until, **self.idle_fields())
        return until

    def safety_break(self, t: float, floor: int, passengers: bool, load: float) -> Steps:
        r = self.r
        cause = self.cause(SAFETY, t)
        hard = r.random() < (faults.SAFETY_HARD_SHARE_RANDOM if cause == "random" else faults.SAFETY_HARD_SHARE_INTERMITTENT)
        floor = min(self.top, max(1, floor))
        item, rec = self.raise_fault(t, "safety_circuit_break", cause, {"floor": floor})
        yield item
        self.floor = floor
        stuck = self.idle_fields(door_zone=False, passengers=passengers, load_pct=load)
        yield self.sample(t, **stuck)
        if hard and passengers:
            return (yield from self.trapped(t, [rec], door_zone=False, cause=cause))
        if hard:
            t = yield from self.mode_hold(t, t + self.rescue_time(), "out_of_service",
                                          "safety circuit open, waiting for a technician", door_zone=False)
            yield self.clear_fault(t, rec)
            self.aborted = True
            return t
        t = yield from self.hold(t, t + min(300.0, max(1.0, r.lognormvariate(math.log(8.0), 0.8))), **stuck)
        yield self.clear_fault(t, rec)
        return t

    def idle_break(self, t: float) -> Steps:
        """The safety chain opens while the car stands: no run possible for a few seconds."""
        item, rec = self.raise_fault(t, "safety_circuit_break", SAFETY.value, {"floor": self.floor, "idle": True})
        yield item
        t = yield from self.hold(t, t + min(120.0, max(1.0, self.r.lognormvariate(math.log(6.0), 0.7))),
                                 **self.idle_fields())
        yield self.clear_fault(t, rec)
        return t

    def trapped(self, t: float, held: list[FaultRecord], *, door_zone: bool, cause: str) -> Steps:
        """Passengers trapped: alarm button, entrapment, rescue, then out of service for a check."""
        r = self.r
        start, rescued = t, t + self.rescue_time()
        self.mode = "stopped"
        fields = self.idle_fields(door_zone=door_zone, passengers=True)
        steps = sorted([(t + faults.ENTRAPMENT_DETECT_S, "entrapment"), (t + r.uniform(15, 120), "alarm_button")])
        recs: list[FaultRecord] = []
        for when_, code in steps:
            t = yield from self.hold(t, when_, **fields)
            item, rec = self.raise_fault(when_, code, cause, {"floor": self.floor})
            yield item
            recs.append(rec)
        t = yield from self.hold(t, rescued, **fields)
        for k, rec in enumerate(sorted(recs, key=lambda x: x.code != "entrapment") + held):
            yield self.clear_fault(rescued + 0.5 * k, rec)
        self.episode("stopped", "entrapment", start, rescued)
        self.mode = "normal"
        t = rescued + 0.5 * (len(recs) + len(held))
        t = yield from self.mode_hold(t, t + r.uniform(*faults.AFTER_RESCUE_OUT_OF_SERVICE_S), "out_of_service",
                                      "check after entrapment")
        self.aborted = True
        return t

    def cooldown(self, t: float) -> Steps:
        item, rec = self.raise_fault(t, "motor_runtime_limiter", self.cause(MOTOR, t),
                                     {"motor_temp_c": round(self.temp + MOTOR_OFFSET_C * self.sev(MOTOR, t), 1)})
        yield item
        self.mode, start = "stopped", t
        limit = t + 4 * 3600
        while t < limit:
            t = max(t, self.last_t) + HEARTBEAT_S
            self.cool(t)
            if self.temp + MOTOR_OFFSET_C * self.sev(MOTOR, t) < faults.MOTOR_RESUME_C:
                break
            yield self.sample(t, **self.idle_fields())
        yield self.clear_fault(t, rec)
        self.mode = "normal"
        self.episode("stopped", "motor_runtime_limiter", start, t)
        self.aborted = True
        return t

    # --- scheduled --------------------------------------------------------------------------

    def scheduled(self, t: float, s: Scheduled) -> Steps:
        r = self.r
        if s.kind == "visit":
            return (yield from self.inspection(t, s))
        if s.kind == "fire_alarm":
            self.mode = "fire_return"
            self.episode("fire_return", "site fire alarm", t, s.end)
            if self.floor != 1:
                t = yield from self.move(t, 1, passengers=False, load=0.0, boarding=False, quiet=True)
            parked = self.idle_fields(door="open")
            yield self.sample(max(t, self.last_t), **parked)
            t = yield from self.hold(t, max(t, s.end), **parked)
            self.mode = "normal"
            yield self.sample(t, **self.idle_fields())
            return t
        if s.kind == "power_failure":
            return (yield from self.mode_fault(t, "power_failure", "random", "emergency_power", s.end - t))
        if s.kind == "outage":
            return (yield from self.mode_hold(t, s.end, "out_of_service", "planned repair"))
        if s.kind == "brake_fault":
            return (yield from self.mode_fault(t, "brake_fault", "random", "out_of_service", s.end - t))
        if s.kind == "alarm_button":
            return (yield from self.short_fault(t, "alarm_button", s.end - t, "random"))
        if s.kind == "floor_position_lost":
            item, rec = self.raise_fault(t, "floor_position_lost", "random", {"floor": self.floor})
            yield item
            t = yield from self.move(t + r.uniform(20, 60), 1, passengers=False, load=0.0, boarding=False,
                                     speed=INSPECTION_SPEED, quiet=True)
            yield self.clear_fault(t, rec)
            return t
        raise ValueError(f"unknown scheduled kind {s.kind!r}")

    def inspection(self, t: float, s: Scheduled) -> Steps:
        """A technician on site: inspection mode, a few slow runs, back to normal on leaving."""
        assert s.visit is not None
        r = self.r
        self.mode = "inspection"
        self.episode("inspection", f"{s.visit.kind} visit {s.visit.visit_id}", t, s.end)
        yield self.sample(t, **self.idle_fields())
        while True:
            nxt = t + r.uniform(240.0, 600.0)
            if nxt >= s.end:
                break
            t = yield from self.hold(t, nxt, **self.idle_fields())
            dest = r.randint(1, self.top - 1)
            dest += dest >= self.floor
            t = yield from self.move(t, dest, passengers=False, load=0.0, boarding=False,
                                     speed=INSPECTION_SPEED, quiet=True)
        t = yield from self.hold(t, max(t, s.end), **self.idle_fields())
        self.mode = "normal"
        yield self.sample(t, **self.idle_fields())
        return t


class DumbwaiterSim(LiftSim):
    """A dumbwaiter (杂物电梯, TSG T5002 Annex C): a small car for goods, loaded from the landing.

    It runs like a lift, but nobody rides it: no passenger flag, so no entrapment."""

    carries_people = False
