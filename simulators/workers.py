"""`--workers N`: the fleet split into N processes, each running its share end to end.

Python generates one stream on one core; the simulator's cost is generating samples, so
a big backfill or a fast live run scales only with processes. Each worker gets every Nth
unit, its own database connection (COPY) and its own MQTT client (`<client id>-<k>`); they
wait for each other after the history so their live parts run side by side. Shared memory
carries progress numbers to the parent, a queue carries each worker's result (counts and
truth) back. A worker that fails stops the run with its traceback.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from dataclasses import replace
from typing import Any

from simulators.fleet import Fleet
from simulators.shard import DONE, HISTORY, LIVE, Report, ShardJob, ShardResult, run_shard

SLOTS = 6  # per worker: phase, history fraction, history rows, live fraction, live messages, simulated time
POLL_S = 0.25
BARRIER_TIMEOUT_S = 24 * 3600.0  # a huge backfill may take long; a dead sibling breaks the barrier at once


def _worker(job: ShardJob, k: int, shared: Any, barrier: Any, results: Any) -> None:
    base = k * SLOTS

    def report(phase: int, fraction: float, count: int, sim_t: float, force: bool) -> None:
        shared[base] = phase
        if phase == HISTORY:
            shared[base + 1], shared[base + 2] = fraction, count
        elif phase == LIVE:
            shared[base + 3], shared[base + 4], shared[base + 5] = fraction, count, sim_t

    try:
        results.put((k, "ok", run_shard(job, report, before_live=lambda: barrier.wait(BARRIER_TIMEOUT_S))))
    except BaseException:  # noqa: B036 - the parent must hear about every way a worker ends
        barrier.abort()
        results.put((k, "error", traceback.format_exc()))


def split(job: ShardJob, n: int) -> list[ShardJob]:
    f = job.fleet
    return [replace(job, fleet=Fleet(f.prefix, f.units[k::n], f.sites, f.companies), client_id=f"{job.client_id}-{k}")
            for k in range(n)]


def run_workers(job: ShardJob, n: int, report: Report) -> list[ShardResult]:
    ctx = mp.get_context("spawn")  # no fork: the parent may hold sockets and threads
    shared = ctx.Array("d", n * SLOTS, lock=False)
    barrier = ctx.Barrier(n)
    results: Any = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(sub, k, shared, barrier, results), name=f"liftwatch-sim-{k}")
             for k, sub in enumerate(split(job, n))]
    for p in procs:
        p.start()
    got: dict[int, ShardResult] = {}
    interrupted = False
    try:
        while len(got) < n:
            try:
                k, status, payload = results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [p for i, p in enumerate(procs) if i not in got and p.exitcode is not None]
                if dead:
                    raise RuntimeError(f"simulator worker {dead[0].name} exited with {dead[0].exitcode} "
                                       "without a result") from None
            except KeyboardInterrupt:
                interrupted = True  # the workers got Ctrl-C too: they stop publishing and report back
                continue
            else:
                if status == "error":
                    raise RuntimeError(f"simulator worker {k} failed:\n{payload}")
                got[k] = payload
            _aggregate(shared, n, report)
    finally:
        for p in procs:
            if p.is_alive() and len(got) < n:
                p.terminate()
            p.join(10)
    if interrupted:
        for r in got.values():
            r.interrupted = True
    return [got[k] for k in range(n)]


def _aggregate(shared: Any, n: int, report: Report) -> None:
    phases = [int(shared[k * SLOTS]) for k in range(n)]
    if any(p == HISTORY for p in phases):
        frac = sum(shared[k * SLOTS + 1] for k in range(n)) / n
        report(HISTORY, frac, int(sum(shared[k * SLOTS + 2] for k in range(n))), 0.0, False)
    elif any(p == LIVE for p in phases) or all(p == DONE for p in phases):
        live = [k for k in range(n) if phases[k] in (LIVE, DONE)]
        frac = min(shared[k * SLOTS + 3] for k in live) if live else 0.0
        sim_t = min(shared[k * SLOTS + 5] for k in live) if live else 0.0
        report(LIVE, frac, int(sum(shared[k * SLOTS + 4] for k in range(n))), sim_t, False)
