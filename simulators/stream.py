"""The pure core: a fleet's samples and events in simulated-time order.

`FleetSim.items()` merges every unit's own time-ordered stream into one, cut at the window's
end, so no good sample is ever stamped after the moment the run reaches it. Nothing here
touches a network, a database or the wall clock: the same config gives the same items,
which is what the determinism test hashes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import takewhile

from simulators.clock import Window, iso
from simulators.commloss import drop_lost, plan_losses
from simulators.degradation import SIGNAL, Degradation
from simulators.elevator import DumbwaiterSim, LiftSim
from simulators.escalator import EscalatorSim
from simulators.fleet import Fleet, UnitSpec
from simulators.schedule import schedule_for
from simulators.truth import Truth
from simulators.unit import Item, SimContext, UnitSim
from simulators.visits import Visit, plan_visits

DEFAULT_RAMP_S = 14 * 86400.0


@dataclass
class FleetConfig:
    seed: int
    window: Window
    fault_scale: float = 1.0
    degradation_ramp_s: float = DEFAULT_RAMP_S
    visits: list[Visit] | None = None  # None: the seed's own plan (visits.plan_visits)
    comm_loss_per_day: float = 0.0  # terminal outages per unit and day (simulators/commloss.py)
    seq_start: Mapping[str, int] = field(default_factory=dict)  # resume after what the database has
    counters_start: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # run_count, run_hours likewise


class FleetSim:
    """Builds one simulator per unit and merges their streams."""

    def __init__(self, fleet: Fleet, config: FleetConfig, truth: Truth | None = None) -> None:
        self.fleet = fleet
        self.config = config
        self.truth = truth if truth is not None else Truth()
        w = config.window
        visits = config.visits
        if visits is None:
            visits = plan_visits(fleet, seed=config.seed, start=w.history_start, end=w.end)
        ids = {u.unit_id for u in fleet.units}
        self.visits = [v for v in visits if v.unit_id in ids and w.history_start <= v.start < w.end]
        by_unit: dict[str, list[Visit]] = {}
        for v in self.visits:
            by_unit.setdefault(v.unit_id, []).append(v)
        ctx = SimContext(config.seed, w, self.truth, config.fault_scale)
        self.degradations: dict[str, Degradation] = {}
        self.units: list[UnitSim] = []
        self.losses: dict[str, list] = {}
        for spec in fleet.units:
            losses = plan_losses(config.seed, spec.index, spec.unit_id, w.history_start, w.end,
                                 config.comm_loss_per_day)
            if losses:
                self.losses[spec.unit_id] = losses
                self.truth.comm_losses.extend(losses)
            deg = self._degradation(spec)
            if deg is not None:
                self.degradations[spec.unit_id] = deg
            sched = schedule_for(spec, seed=config.seed, window=w, visits=by_unit.get(spec.unit_id, []),
                                 fault_scale=config.fault_scale)
            cls = {"traction": LiftSim, "hydraulic": LiftSim, "dumbwaiter": DumbwaiterSim}.get(spec.kind, EscalatorSim)
            self.units.append(cls(spec, ctx, degradation=deg, schedule=sched,
                                  seq_start=config.seq_start.get(spec.unit_id, 0),
                                  counters=config.counters_start.get(spec.unit_id)))

    def _degradation(self, spec: UnitSpec) -> Degradation | None:
        if spec.mechanism is None:
            return None
        w = self.config.window
        onset = round(w.history_start + spec.onset_frac * w.span, 3)
        return Degradation(spec.mechanism, onset, self.config.degradation_ramp_s)

    def streams(self) -> list[Iterator[Item]]:
        """Each unit's own items, in its time order, cut at the window's end."""
        end = self.config.window.end
        return [drop_lost(takewhile(lambda it: it[0] < end, u.run()), self.losses.get(u.uid, []))
                for u in self.units]

    def items(self) -> Iterator[Item]:
        """Every sample and event of the window, ordered by (time, unit, seq)."""
        return merge(self.streams())

    def next_seqs(self) -> dict[str, int]:
        """Each unit's next unused seq (after the items consumed so far)."""
        return {u.uid: u.seq for u in self.units}

    def units_truth(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ramp = self.config.degradation_ramp_s
        for spec in self.fleet.units:
            deg = self.degradations.get(spec.unit_id)
            out[spec.unit_id] = {
                "kind": spec.kind, "site_id": spec.site.site_id, "pattern": spec.site.pattern,
                "floors": spec.floors, "maintenance_company_id": spec.site.maintenance_company_id,
                "user_unit_id": spec.site.user_unit_id,
                "last_inspection_on": spec.last_inspection_on.isoformat(),
                "next_inspection_due": spec.next_inspection_due.isoformat(),
                "degradation": None if deg is None else {
                    "mechanism": deg.mechanism.value, "onset": iso(deg.onset), "full_at": iso(deg.onset + ramp),
                    "signal": SIGNAL[deg.mechanism][0], "direction": SIGNAL[deg.mechanism][1],
                },
            }
        return out


def merge(streams: list[Iterator[Item]]) -> Iterator[Item]:
    """One time-ordered stream; ties broken by unit index and seq, so the order is total."""
    return heapq.merge(*streams)
