"""History and live part for a set of units: the whole fleet in-process, or one worker's share.

Units are independent (each has its own seeded streams, site events are seeded per site), so
any split of the fleet produces, unit for unit, exactly the same samples, events and bad
messages; only the interleaving across units differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from liftwatch.settings import parse_mqtt_url
from simulators.clock import Window
from simulators.fleet import Fleet
from simulators.messages import MessageCounts, MessageMaker
from simulators.stream import FleetConfig, FleetSim, merge
from simulators.truth import BadRecord, CommLoss, Episode, FaultRecord, Truth
from simulators.unit import Item
from simulators.visits import Visit

ACK_TIMEOUT_S = 120.0  # how long to wait at the end for the broker to acknowledge everything
HISTORY, LIVE, DONE = 0, 1, 2

# (phase, fraction done, rows or messages so far, simulated time, force): how a shard reports progress
Report = Callable[[int, float, int, float, bool], None]


@dataclass
class ShardJob:
    """Everything a shard needs; picklable, so a worker process can be handed one."""

    fleet: Fleet
    full_unit_ids: list[str]  # the whole fleet (bad messages may name any unit)
    config: FleetConfig
    database_url: str | None  # None: dry run (count only)
    mqtt_url: str | None  # None: dry run
    client_id: str
    speedup: float
    samples_per_message: int
    bad_fraction: float
    history: bool
    live: bool
    live_not_before: float = 0.0  # epoch s: first live publish (lets the ingestor learn new units)


@dataclass
class ShardResult:
    history_telemetry_rows: int = 0
    history_event_rows: int = 0
    history_seconds: float = 0.0
    live: MessageCounts = field(default_factory=MessageCounts)
    status_messages: int = 0
    live_seconds: float = 0.0
    acked: bool = True
    interrupted: bool = False
    faults: list[FaultRecord] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    comm_losses: list[CommLoss] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    units: dict[str, dict] = field(default_factory=dict)


def run_shard(job: ShardJob, report: Report, *, before_live: Callable[[], None] | None = None) -> ShardResult:
    """Backfill, then publish live; `before_live` lets workers start their live parts together."""
    truth = Truth()
    sim = FleetSim(job.fleet, job.config, truth)
    result = ShardResult(visits=sim.visits, units=sim.units_truth())
    window = job.config.window
    if job.history:
        items = _history(job, sim.streams(), window, result, report)
    else:
        items = sim.items()
    if before_live:
        before_live()
    if job.live:
        _live(job, items, truth, result, report)
    report(DONE, 1.0, 0, window.end, True)
    result.faults, result.episodes, result.bad = truth.faults, truth.episodes, truth.bad
    result.comm_losses = truth.comm_losses
    return result


def _history(job: ShardJob, streams: list[Iterator[Item]], window: Window, result: ShardResult,
             report: Report) -> Iterator[Item]:
    """Backfill [history_start, live_start) unit by unit; return the live part, merged in time order."""
    from simulators.backfill import backfill

    conn = None
    if job.database_url is not None:
        from liftwatch import db as dbmod

        conn = dbmod.connect(job.database_url, autocommit=True, application_name="liftwatch-simulate")
    n = max(1, len(streams))
    t0 = time.monotonic()
    try:
        counts, rest = backfill(conn, streams, until=window.live_start,
                                progress=lambda done, rows: report(HISTORY, done / n, rows, window.live_start, False))
    finally:
        if conn is not None:
            conn.close()
    report(HISTORY, 1.0, counts.rows, window.live_start, True)
    result.history_telemetry_rows, result.history_event_rows = counts.telemetry_rows, counts.event_rows
    result.history_seconds = time.monotonic() - t0
    return merge(rest)


def _live(job: ShardJob, items: Iterator[Item], truth: Truth, result: ShardResult, report: Report) -> None:
    from simulators.publisher import FleetPublisher, Pacer

    window = job.config.window
    maker = MessageMaker(seed=job.config.seed, window=window, unit_ids=job.full_unit_ids, truth=truth,
                         samples_per_message=job.samples_per_message, bad_fraction=job.bad_fraction)
    counts = result.live
    unit_ids = [u.unit_id for u in job.fleet.units]
    pub: Any = None
    if job.mqtt_url is not None:
        time.sleep(max(0.0, job.live_not_before - time.time()))
        pub = FleetPublisher(parse_mqtt_url(job.mqtt_url), job.client_id)
        pub.connect()
        result.status_messages += pub.statuses(unit_ids, b"online")
    pacer = Pacer(window.live_start, job.speedup if pub is not None else 0.0,
                  idle=pub.service if pub is not None else time.sleep)
    span = max(window.duration, 1e-9)
    t0 = time.monotonic()
    sim_t = window.live_start
    sent = 0

    def tick(force: bool = False) -> None:
        report(LIVE, (sim_t - window.live_start) / span, sent, sim_t, force)

    try:
        for msg in chain(maker.messages(items), maker.flush()):
            sim_t = max(sim_t, msg.t)
            pacer.wait_for(msg.t, tick)
            if pub is not None:
                pub.publish(msg.topic, msg.payload)
            counts.add(msg)
            sent += 1
            if sent % 256 == 0:
                tick()
    except KeyboardInterrupt:
        result.interrupted = True
        for msg in maker.flush():  # what is batched already belongs to the stream: send it
            if pub is not None:
                pub.publish(msg.topic, msg.payload)
            counts.add(msg)
            sent += 1
    finally:
        if pub is not None:
            result.status_messages += pub.statuses(unit_ids, b"offline")
            result.acked = pub.wait_acked(ACK_TIMEOUT_S, tick)
            pub.close()
        if not result.interrupted:
            sim_t = window.end
        tick(force=True)
        result.live_seconds = time.monotonic() - t0
