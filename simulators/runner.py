"""`liftwatch simulate fleet` as a function: register, backfill, publish live, write the truth.

The CLI is a thin wrapper around `run_fleet`; tests call either. Counts in the summary are
what the simulator handed to the broker and had acknowledged (or wrote by COPY), so a test
can compare them with the rows the ingestor stored.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liftwatch.settings import Settings
from simulators.clock import LOCAL_TZ, Window, iso, plan_window
from simulators.fleet import build_fleet
from simulators.messages import MessageCounts
from simulators.progress import Progress, sim_clock
from simulators.shard import DONE, HISTORY, ShardJob, ShardResult, run_shard
from simulators.stream import DEFAULT_RAMP_S, FleetConfig
from simulators.truth import write_truth
from simulators.visits import read_plan

# The ingestor reloads its registry on a message from an unknown unit at most every 2 s
# (ingest MISS_REFRESH_MIN_S): units registered just now are only published to after this.
REGISTRY_SETTLE_S = 2.5


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
    comm_loss_per_day: float = 0.0  # terminal outages per unit and day (0: terminals never drop)
    truth_path: Path | None = None
    register: bool = True
    dry_run: bool = False  # generate and count only: no database, no broker
    client_id: str | None = None
    progress: bool = True
    workers: int = 1  # processes, each running every Nth unit end to end


@dataclass
class FleetSummary:
    window: Window
    units: int
    degraded: dict[str, int]
    workers: int = 1
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

    def add(self, r: ShardResult) -> None:
        self.history_telemetry_rows += r.history_telemetry_rows
        self.history_event_rows += r.history_event_rows
        self.history_seconds = max(self.history_seconds, r.history_seconds)
        c, o = self.live, r.live
        c.telemetry_messages += o.telemetry_messages
        c.telemetry_rows += o.telemetry_rows
        c.event_messages += o.event_messages
        c.event_rows += o.event_rows
        c.bad_messages += o.bad_messages
        c.bad_by_reason.update(o.bad_by_reason)
        self.status_messages += r.status_messages
        self.live_seconds = max(self.live_seconds, r.live_seconds)
        self.acked = self.acked and r.acked
        self.interrupted = self.interrupted or r.interrupted
        self.faults += len(r.faults)
        for v in r.visits:
            self.visits[v.case] = self.visits.get(v.case, 0) + 1

    def as_json(self) -> dict[str, Any]:
        live = asdict(self.live)
        live["bad_by_reason"] = dict(self.live.bad_by_reason)
        return {
            "units": self.units, "registered_units": self.registered_units, "degraded": self.degraded,
            "workers": self.workers,
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
            f"units: {self.units} ({self.registered_units} newly registered, {self.workers} worker(s)), degraded: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.degraded.items())) or "none"),
        ]
        if hist_rows:
            out.append(f"history (COPY): {self.history_telemetry_rows:,} telemetry rows, {self.history_event_rows:,} "
                       f"event rows in {self.history_seconds:.1f} s ({hist_rows / max(self.history_seconds, 1e-9):,.0f} rows/s)")
        out.append(f"live (MQTT QoS 1): {c.telemetry_messages:,} telemetry messages ({c.telemetry_rows:,} rows), "
                   f"{c.event_messages:,} events, {c.bad_messages:,} bad, {self.status_messages:,} status "
                   f"in {self.live_seconds:.1f} s ({self.live_messages / max(self.live_seconds, 1e-9):,.0f} msg/s)")
        if c.bad_messages:
            out.append("bad by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(c.bad_by_reason.items())))
        out.append(f"faults injected: {self.faults}; visits: "
                   + (", ".join(f"{k} {v}" for k, v in sorted(self.visits.items())) or "none"))
        if not self.acked:
            out.append("WARNING: the broker did not acknowledge every message before the timeout")
        if self.interrupted:
            out.append("interrupted: the counts cover what was published before Ctrl-C")
        return out


class Reporter:
    """Turns (phase, fraction, count, simulated time) into the progress line."""

    def __init__(self, enabled: bool, units: int) -> None:
        self.enabled = enabled
        self.units = units
        self.phase: int | None = None
        self.bar: Progress | None = None

    def __call__(self, phase: int, fraction: float, count: int, sim_t: float, force: bool = False) -> None:
        if phase != self.phase:
            if self.bar is not None:
                self.bar.done()
            self.phase = phase
            self.bar = None if phase == DONE else Progress("history" if phase == HISTORY else "live",
                                                            enabled=self.enabled)
        if self.bar is None:
            return
        if phase == HISTORY:
            self.bar.update(fraction, count, "rows", f"units {round(fraction * self.units):,}/{self.units:,}",
                            force=force)
        else:
            self.bar.update(fraction, count, "msgs", sim_clock(sim_t), force=force)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.done()


def default_client_id() -> str:
    return f"liftwatch-sim-{socket.gethostname()}-{os.getpid()}"[:60]


def run_fleet(opts: FleetOptions, settings: Settings, *, now: datetime | None = None) -> FleetSummary:
    now = now or datetime.now(UTC)
    window = plan_window(now=now, duration_s=opts.duration_s, speedup=opts.speedup,
                         history_s=opts.history_s, start=opts.start)
    fleet = build_fleet(seed=opts.seed, n_units=opts.units, prefix=opts.prefix, faulty=opts.faulty,
                        today=now.astimezone(LOCAL_TZ).date())
    unit_ids = [u.unit_id for u in fleet.units]
    degraded: dict[str, int] = {}
    for u in fleet.units:
        if u.mechanism:
            degraded[u.mechanism.value] = degraded.get(u.mechanism.value, 0) + 1
    workers = max(1, min(opts.workers, len(fleet.units)))
    summary = FleetSummary(window, len(fleet.units), degraded, workers=workers)
    seq_start: dict[str, int] = {}
    counters: dict[str, tuple[int, float]] = {}
    live_not_before = 0.0
    if not opts.dry_run and (opts.register or opts.history_s > 0):
        from liftwatch import db as dbmod
        from simulators.registration import last_counters, next_seqs, register

        with dbmod.connect(settings.database_url, autocommit=True, application_name="liftwatch-simulate") as conn:
            if opts.register:
                summary.registered_units = register(conn, fleet).units
                if summary.registered_units:
                    live_not_before = time.time() + REGISTRY_SETTLE_S
            seq_start = next_seqs(conn, unit_ids)
            counters = last_counters(conn, unit_ids)
    config = FleetConfig(seed=opts.seed, window=window, fault_scale=opts.fault_scale,
                         degradation_ramp_s=opts.degradation_ramp_s,
                         visits=read_plan(opts.visits_file) if opts.visits_file else None, seq_start=seq_start,
                         counters_start=counters,
                         comm_loss_per_day=opts.comm_loss_per_day)
    job = ShardJob(fleet=fleet, full_unit_ids=unit_ids, config=config,
                   database_url=None if opts.dry_run else settings.database_url,
                   mqtt_url=None if opts.dry_run else settings.mqtt_url,
                   client_id=opts.client_id or default_client_id(), speedup=opts.speedup,
                   samples_per_message=opts.samples_per_message, bad_fraction=opts.bad_fraction,
                   history=opts.history_s > 0, live=opts.duration_s > 0, live_not_before=live_not_before)
    reporter = Reporter(opts.progress, len(fleet.units))
    try:
        if workers == 1:
            results = [run_shard(job, reporter)]
        else:
            from simulators.workers import run_workers

            results = run_workers(job, workers, reporter)
    finally:
        reporter.close()
    for r in results:
        summary.add(r)
    if opts.truth_path:
        write_truth(opts.truth_path, _truth_doc(opts, window, results, summary))
    return summary


def _truth_doc(opts: FleetOptions, w: Window, results: list[ShardResult], summary: FleetSummary) -> dict[str, Any]:
    units: dict[str, dict] = {}
    for r in results:
        units.update(r.units)
    faults = sorted((f for r in results for f in r.faults), key=lambda f: (f.raised_at, f.unit_id, f.raised_seq))
    episodes = sorted((e for r in results for e in r.episodes), key=lambda e: (e.start, e.unit_id))
    bad = sorted((b for r in results for b in r.bad), key=lambda b: (b.published_at, b.topic, b.payload_sha256))
    visits = sorted((v for r in results for v in r.visits), key=lambda v: (v.start, v.unit_id))
    losses = sorted((c for r in results for c in r.comm_losses), key=lambda c: (c.start, c.unit_id))
    return {
        "version": 1,
        "generated_by": "liftwatch simulate fleet",
        "parameters": {
            "seed": opts.seed, "units": opts.units, "prefix": opts.prefix, "faulty": opts.faulty,
            "bad_fraction": opts.bad_fraction, "samples_per_message": opts.samples_per_message,
            "speedup": opts.speedup, "degradation_ramp_s": opts.degradation_ramp_s,
            "fault_scale": opts.fault_scale, "comm_loss_per_day": opts.comm_loss_per_day,
            "visits_file": str(opts.visits_file) if opts.visits_file else None,
            "history_start": iso(w.history_start), "live_start": iso(w.live_start), "end": iso(w.end),
        },
        "counts": summary.as_json(),
        "units": dict(sorted(units.items())),
        "faults": [f.to_json() for f in faults],
        "episodes": [e.to_json() for e in episodes],
        "visits": [v.to_json() for v in visits],
        "bad_messages": [b.to_json() for b in bad],
        "comm_losses": [c.to_json() for c in losses],
    }
