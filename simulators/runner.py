"""`liftwatch simulate fleet` as a function: register, backfill, publish live, write the truth.

The CLI is a thin wrapper around `run_fleet`; tests call either. Counts in the summary are
what the simulator handed to the broker and acknowledged (or wrote by COPY), so a test can
compare them with the rows the ingestor stored.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

from liftwatch.settings import Settings
from simulators.clock import LOCAL_TZ, Window, iso, plan_window
from simulators.fleet import Fleet, build_fleet
from simulators.messages import MessageCounts, MessageMaker
from simulators.progress import Progress
from simulators.stream import DEFAULT_RAMP_S, FleetConfig, FleetSim
from simulators.truth import Truth, write_truth
from simulators.unit import Item
from simulators.visits import read_plan

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 120.0  # how long to wait at the end for the broker to acknowledge everything


@dataclass
class FleetOptions:
    units: int = 100
    duration_s: float = 3600.0
    speedup: float = 1.0  # 0 = as fast as possible
    seed: int = 1
    faulty: float = 0.1
    bad_fraction: float = 0.0
    samples_per_message: int = 1
    history_s: float = 0.0
    start: datetime | None = None
    prefix: str = "SIM"
    visits_file: Path | None = None
    degradation_ramp_s: float = DEFAULT_RAMP_S
    fault_scale: float = 1.0
    truth_path: Path | None = None
    register: bool = True
    dry_run: bool = False  # generate and count only: no database, no broker
    client_id: str | None = None
    progress: bool = True


@dataclass
class FleetSummary:
    window: Window
    units: int
    degraded: dict[str, int]
    registered_units: int = 0
    history_telemetry_rows: int = 0
    history_event_rows: int = 0
    history_seconds: float = 0.0
    live: MessageCounts = field(default_factory=MessageCounts)
    status_messages: int = 0
    live_seconds: float = 0.0
    acked: bool = True
    interrupted: bool = False
    faults: int = 0
    visits: dict[str, int] = field(default_factory=dict)

    @property
    def live_messages(self) -> int:
        c = self.live
        return c.telemetry_messages + c.event_messages + c.bad_messages

    def as_json(self) -> dict[str, Any]:
        live = asdict(self.live)
        live["bad_by_reason"] = dict(self.live.bad_by_reason)
        return {
            "units": self.units, "registered_units": self.registered_units, "degraded": self.degraded,
            "history": {"telemetry_rows": self.history_telemetry_rows, "event_rows": self.history_event_rows,
                        "seconds": round(self.history_seconds, 3)},
            "live": {**live, "status_messages": self.status_messages, "seconds": round(self.live_seconds, 3),
                     "all_acknowledged": self.acked, "interrupted": self.interrupted},
            "faults": self.faults, "visits": self.visits,
        }

    def lines(self) -> list[str]:
        w, c = self.window, self.live
        hist_rows = self.history_telemetry_rows + self.history_event_rows
        out = [
            f"window: history {iso(w.history_start)} .. live {iso(w.live_start)} .. end {iso(w.end)}",
            f"units: {self.units} ({self.registered_units} newly registered), degraded: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.degraded.items())) or "none"),
        ]
        if hist_rows:
            out.append(f"history (COPY): {self.history_telemetry_rows:,} telemetry rows, {self.history_event_rows:,} "
                       f"event rows in {self.history_seconds:.1f} s ({hist_rows / max(self.history_seconds, 1e-9):,.0f} rows/s)")
        out += [
            f"live (MQTT QoS 1): {c.telemetry_messages:,} telemetry messages ({c.telemetry_rows:,} rows), "
            f"{c.event_messages:,} events, {c.bad_messages:,} bad, {self.status_messages:,} status "
            f"in {self.live_seconds:.1f} s ({self.live_messages / max(self.live_seconds, 1e-9):,.0f} msg/s)",
        ]
        if c.bad_messages:
            out.append("bad by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(c.bad_by_reason.items())))
        out.append(f"faults injected: {self.faults}; visits: "
                   + (", ".join(f"{k} {v}" for k, v in sorted(self.visits.items())) or "none"))
        if not self.acked:
            out.append("WARNING: the broker did not acknowledge every message before the timeout")
        if self.interrupted:
            out.append("interrupted: the counts cover what was published before Ctrl-C")
        return out


def default_client_id() -> str:
    return f"liftwatch-sim-{socket.gethostname()}-{os.getpid()}"[:64]


def run_fleet(opts: FleetOptions, settings: Settings, *, now: datetime | None = None) -> FleetSummary:
    now = now or datetime.now(UTC)
    window = plan_window(now=now, duration_s=opts.duration_s, speedup=opts.speedup,
                         history_s=opts.history_s, start=opts.start)
    fleet = build_fleet(seed=opts.seed, n_units=opts.units, prefix=opts.prefix, faulty=opts.faulty,
                        today=now.astimezone(LOCAL_TZ).date())
    visits = read_plan(opts.visits_file) if opts.visits_file else None
    truth = Truth()
    degraded: dict[str, int] = {}
    for u in fleet.units:
        if u.mechanism:
            degraded[u.mechanism.value] = degraded.get(u.mechanism.value, 0) + 1
    summary = FleetSummary(window, len(fleet.units), degraded)
    conn = None
    if not opts.dry_run and (opts.register or opts.history_s > 0):
        from liftwatch import db as dbmod
        from simulators.registration import next_seqs, register

        conn = dbmod.connect(settings.database_url, autocommit=True, application_name="liftwatch-simulate")
    try:
        seq_start: dict[str, int] = {}
        if conn is not None:
            if opts.register:
                summary.registered_units = register(conn, fleet).units
            seq_start = next_seqs(conn, [u.unit_id for u in fleet.units])
        sim = FleetSim(fleet, FleetConfig(seed=opts.seed, window=window, fault_scale=opts.fault_scale,
                                          degradation_ramp_s=opts.degradation_ramp_s, visits=visits,
                                          seq_start=seq_start), truth)
        items = sim.items()
        if opts.history_s > 0:
            items = _history(opts, conn, items, window, summary)
        if opts.duration_s > 0:
            _live(opts, settings, fleet, items, window, truth, summary)
    finally:
        if conn is not None:
            conn.close()
    summary.faults = len(truth.faults)
    for v in sim.visits:
        summary.visits[v.case] = summary.visits.get(v.case, 0) + 1
    if opts.truth_path:
        write_truth(opts.truth_path, _truth_doc(opts, sim, truth, summary))
    return summary


def _history(opts: FleetOptions, conn: Any, items: Any, window: Window, summary: FleetSummary) -> Any:
    """Backfill [history_start, live_start); return the remaining items (live part)."""
    from simulators.backfill import backfill

    bar = Progress("history", start=window.history_start, end=window.live_start, enabled=opts.progress)
    t0 = time.monotonic()
    boundary: Item | None = None
    if conn is None:  # dry run: generate and count
        tel = ev = 0
        for item in items:
            if item[0] >= window.live_start:
                boundary = item
                break
            if item[4] == "T":
                tel += 1
            else:
                ev += 1
            if (tel + ev) % 10_000 == 0:
                bar.update(item[0], tel + ev, "rows")
        summary.history_telemetry_rows, summary.history_event_rows = tel, ev
    else:
        counts, boundary = backfill(conn, items, until=window.live_start,
                                    progress=lambda t, n: bar.update(t, n, "rows", force=True))
        summary.history_telemetry_rows, summary.history_event_rows = counts.telemetry_rows, counts.event_rows
    bar.done()
    summary.history_seconds = time.monotonic() - t0
    return chain([boundary], items) if boundary is not None else items


def _live(opts: FleetOptions, settings: Settings, fleet: Fleet, items: Any, window: Window, truth: Truth,
          summary: FleetSummary) -> None:
    from simulators.publisher import FleetPublisher, Pacer

    maker = MessageMaker(seed=opts.seed, window=window, unit_ids=[u.unit_id for u in fleet.units], truth=truth,
                         samples_per_message=opts.samples_per_message, bad_fraction=opts.bad_fraction)
    counts = summary.live
    pub = None
    if not opts.dry_run:
        pub = FleetPublisher(settings.mqtt, opts.client_id or default_client_id())
        pub.connect()
        summary.status_messages += pub.statuses((u.unit_id for u in fleet.units), b"online")
    bar = Progress("live", start=window.live_start, end=window.end, enabled=opts.progress)
    pacer = Pacer(window.live_start, 0.0 if opts.dry_run else opts.speedup)
    t0 = time.monotonic()
    sim_t = window.live_start

    def tick() -> None:
        bar.update(sim_t, summary.live_messages, extra=f"unacked {pub.sent - pub.acked:,}" if pub else "")

    try:
        for msg in chain(maker.messages(items), maker.flush()):
            sim_t = max(sim_t, msg.t)
            pacer.wait_for(msg.t, tick)
            if pub is not None:
                pub.publish(msg.topic, msg.payload)
            counts.add(msg)
            tick()
    except KeyboardInterrupt:
        summary.interrupted = True
        for msg in maker.flush():  # what is batched already belongs to the stream: send it
            if pub is not None:
                pub.publish(msg.topic, msg.payload)
            counts.add(msg)
    finally:
        if pub is not None:
            summary.status_messages += pub.statuses((u.unit_id for u in fleet.units), b"offline")
            summary.acked = pub.wait_acked(ACK_TIMEOUT_S, tick)
            pub.close()
        bar.update(window.end if not summary.interrupted else sim_t, summary.live_messages, force=True)
        bar.done()
        summary.live_seconds = time.monotonic() - t0


def _truth_doc(opts: FleetOptions, sim: FleetSim, truth: Truth, summary: FleetSummary) -> dict[str, Any]:
    w = sim.config.window
    return {
        "version": 1,
        "generated_by": "liftwatch simulate fleet",
        "parameters": {
            "seed": opts.seed, "units": opts.units, "prefix": opts.prefix, "faulty": opts.faulty,
            "bad_fraction": opts.bad_fraction, "samples_per_message": opts.samples_per_message,
            "speedup": opts.speedup, "degradation_ramp_s": opts.degradation_ramp_s,
            "fault_scale": opts.fault_scale, "visits_file": str(opts.visits_file) if opts.visits_file else None,
            "history_start": iso(w.history_start), "live_start": iso(w.live_start), "end": iso(w.end),
        },
        "counts": summary.as_json(),
        "units": sim.units_truth(),
        "faults": [f.to_json() for f in truth.faults],
        "episodes": [e.to_json() for e in truth.episodes],
        "visits": [v.to_json() for v in sim.visits],
        "bad_messages": [b.to_json() for b in truth.bad],
    }
