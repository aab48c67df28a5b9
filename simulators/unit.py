"""What every simulated unit shares: its seq counter, sample and event emission, holds in a
mode, and the motor's thermal model.

A unit is a generator of `Item`s — (t, unit index, seq, unit id, kind, data) — in its own time
order; `stream.FleetSim` merges the units. Sub-steps are generators too and hand the new
time back through `return`, so a step reads `t = yield from self._hold(t, until, ...)`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from simulators import faults, seeds
from simulators.clock import Window, local_hour_float
from simulators.degradation import MOTOR_OFFSET_C, Degradation, Mechanism, severity
from simulators.fleet import UnitSpec
from simulators.schedule import Scheduled
from simulators.truth import FaultRecord, Truth

# (t, unit index, seq, unit id, "T" | "E", data): data is the telemetry fields (a dict) or
# (code, state, source_code, detail). Plain tuples: the merge and the hot path stay cheap;
# records.py turns them into contract objects (backfill) or payloads (MQTT).
Item = tuple[float, int, int, str, str, Any]
Steps = Iterator[Item]

HEARTBEAT_S: Final = 60.0  # an idle unit still reports once a minute (offline detection)
THERMAL_TAU_S: Final = 1800.0  # motor winding time constant
AMBIENT_STEP_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class SimContext:
    seed: int
    window: Window
    truth: Truth
    fault_scale: float = 1.0


class UnitSim:
    """Base of LiftSim and EscalatorSim."""

    def __init__(self, spec: UnitSpec, ctx: SimContext, *, degradation: Degradation | None,
                 schedule: list[Scheduled], seq_start: int = 0, counters: tuple[int, float] | None = None) -> None:
        self.spec = spec
        self.ctx = ctx
        self.uid = spec.unit_id
        self.idx = spec.index
        self.r: random.Random = seeds.rng(ctx.seed, "dynamics", spec.index)
        self.deg = degradation
        self.schedule = schedule
        self.seq = seq_start
        self.end = ctx.window.end
        self.scale = ctx.fault_scale
        self.last_t = ctx.window.history_start
        age_days = max(1.0, (ctx.window.history_start / 86400.0) - (spec.installed_on.toordinal() - 719163))
        self.run_count = int(age_days * self.r.uniform(150, 450) * spec.busy)
        self.run_hours = round(self.run_count * self.r.uniform(12, 25) / 3600.0, 3)
        if counters is not None:  # continue what the database already has (the draws above keep the stream)
            self.run_count, self.run_hours = counters
        self.mode = "normal"
        self._amb_step, self._amb = -1, 0.0
        self.temp = self.ambient(ctx.window.history_start)
        self.temp_t = ctx.window.history_start

    # --- emission -----------------------------------------------------------------------------

    def sample(self, t: float, **fields: Any) -> Item:
        """A telemetry sample at t with the unit's running counters; fields override."""
        t = round(t, 3)
        seq = self.seq
        self.seq += 1
        self.last_t = t
        if "mode" not in fields:
            fields["mode"] = self.mode
        fields["run_count"] = self.run_count
        fields["run_hours"] = round(self.run_hours, 3)
        fields["motor_temp_c"] = self.motor_reading(t)
        return (t, self.idx, seq, self.uid, "T", fields)

    def event(self, t: float, code: str, state: str, detail: dict[str, Any] | None = None) -> Item:
        t = round(t, 3)
        seq = self.seq
        self.seq += 1
        return (t, self.idx, seq, self.uid, "E", (code, state, faults.SOURCE_CODES[code], detail))

    def raise_fault(self, t: float, code: str, cause: str = "random",
                    detail: dict[str, Any] | None = None) -> tuple[Item, FaultRecord]:
        item = self.event(t, code, "raised", detail)
        return item, self.ctx.truth.raise_fault(self.uid, code, cause, item[0], item[2], detail)

    def clear_fault(self, t: float, rec: FaultRecord) -> Item:
        item = self.event(t, rec.code, "cleared")
        rec.cleared_at, rec.cleared_seq = item[0], item[2]
        return item

    def hold(self, t: float, until: float, **fields: Any) -> Iterator[Item]:
        """Stay put until `until`, reporting every HEARTBEAT_S; returns `until`."""
        nxt = max(t, self.last_t) + HEARTBEAT_S
        while nxt < until:
            yield self.sample(nxt, **fields)
            nxt += HEARTBEAT_S
        return until

    def episode(self, mode: str, reason: str, start: float, end: float) -> None:
        self.ctx.truth.episode(self.uid, mode, reason, round(start, 3), round(end, 3))

    def sev(self, mechanism: Mechanism, t: float) -> float:
        if self.deg is None:  # the common case, on the hot path
            return 0.0
        return severity(self.deg, mechanism, t)

    def cause(self, mechanism: Mechanism, t: float) -> str:
        """Who gets the blame in the truth file: the mechanism once it is active, else chance."""
        return mechanism.value if self.sev(mechanism, t) > 0 else "random"

    def rescue_time(self) -> float:
        lo, hi = faults.RESCUE_BOUNDS_S
        return min(hi, max(lo, self.r.lognormvariate(math.log(faults.RESCUE_MEDIAN_S), faults.RESCUE_SIGMA)))

    # --- motor temperature --------------------------------------------------------------------

    def ambient(self, t: float) -> float:
        """Machine-room air: 24 degC, +-4 over the day (warmest at 15:00), per-unit offset.

        Evaluated per 5-minute step (it moves < 0.1 degC in that time) to keep sin() off the hot path."""
        step = int(t // AMBIENT_STEP_S)
        if step != self._amb_step:
            base = 28.0 if self.spec.kind == "hydraulic" else 24.0  # oil and pump room
            hour = local_hour_float(step * AMBIENT_STEP_S)
            self._amb = base + self.spec.ambient_offset_c + 4.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)
            self._amb_step = step
        return self._amb

    def cool(self, t: float) -> None:
        """Relax the winding towards ambient up to t."""
        if t > self.temp_t:
            amb = self.ambient(t)
            self.temp = amb + (self.temp - amb) * math.exp(-(t - self.temp_t) / THERMAL_TAU_S)
            self.temp_t = t

    def motor_reading(self, t: float) -> float:
        self.cool(t)
        offset = MOTOR_OFFSET_C * self.sev(Mechanism.MOTOR_OVERHEATING, t)
        return round(self.temp + offset + self.r.gauss(0.0, 0.3), 1)

    def run(self) -> Steps:  # pragma: no cover - abstract
        raise NotImplementedError
