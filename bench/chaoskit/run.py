"""One chaos run: servers, publishers, the ingestors of the chosen topology, the faults, the
drain and the audit. Returns every number as a dict (bench/chaos.py prints and saves it)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.chaoskit.audit import SETTLE_S, Progress, audit, wait_drained
from bench.chaoskit.clock import CLOCK, log
from bench.chaoskit.cpu import ServerCpu
from bench.chaoskit.faults import Chaos
from bench.chaoskit.fleet import Fleet
from bench.chaoskit.ingestors import GAP_SETTLE_S, Replicas
from bench.chaoskit.plan import Plan
from bench.chaoskit.probe import probe_broker_restart
from bench.chaoskit.report import DB_NAME, explain_lost, versions
from bench.chaoskit.side import SideStream, wait_settled
from bench.common import Processes, register_units
from liftwatch.db import migrate
from liftwatch.throwaway import Mosquitto, PgCluster

LOG_NEEDLES = ("connected to broker", "disconnected from broker", "batch not committed", "database is back",
               "registry reload failed", "seq gap recorded", "ingest lease acquired", "stopped consuming",
               " ERROR ")


def run(plan: Plan, *, stall: float | None, keep: bool) -> dict:
    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="liftwatch-chaos-"))
    procs = Processes()
    pg = PgCluster(settings={"track_commit_timestamp": "on"})
    mq = Mosquitto()
    fleet: Fleet | None = None
    side: SideStream | None = None
    progress: Progress | None = None
    result: dict = {}
    passed = False
    try:
        log(f"plan: {plan.units} units x {plan.per_unit} = {plan.messages:,} QoS1 messages of {plan.samples} "
            f"sample(s) over "
            f"{plan.duration:.0f} s on {plan.n_clients} connections, {plan.side_units} side units; "
            f"{plan.replicas} ingestor(s), topology {plan.topology}; faults {','.join(plan.faults)}")
        broker_probe = probe_broker_restart()
        log("probe: a message published after a broker restart, before its subscriber is back: "
            + "; ".join(f"{k} subscription -> PUBACK '{v['puback']}', delivered {v['delivered']}"
                        for k, v in broker_probe.items()))
        pg.init().start()
        mq.start()
        dsn = pg.dsn(DB_NAME)
        with psycopg.connect(pg.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB_NAME}")
        migrate(dsn)
        fleet = Fleet(plan, mq.port)
        side = SideStream(plan.side_units, mq.port)
        register_units(dsn, fleet.units + side.units)
        ing = Replicas(procs, root, dsn, mq.url, plan.topology, plan.replicas)
        ing.start()
        if ing.wait_count("connected to broker", ing.consumers, timeout=60) is None:
            raise RuntimeError(f"the ingestors did not connect:\n{ing.tail()}")
        time.sleep(0.5)  # their SUBSCRIBE went out in on_connect
        log(f"servers up (postgres :{pg.port}, mosquitto :{mq.port}); ingestors connected; "
            f"connecting {len(fleet.clients)} publishers")
        fleet.start()
        side.start()

        cpu = ServerCpu(pg, mq)
        chaos = Chaos(plan, pg, mq, ing, fleet, cpu)
        t0 = CLOCK.restart()
        stream_wall0 = time.time()
        cpu.begin("postgres")
        cpu.begin("broker")
        log("stream starts")
        streamer = threading.Thread(target=fleet.stream, name="chaos-stream", daemon=True)
        streamer.start()
        side_thread = threading.Thread(target=side.run, args=(t0, plan.duration), name="chaos-side", daemon=True)
        side_thread.start()
        progress = Progress(dsn, fleet, ing)
        progress.start()
        chaos.run(t0)
        streamer.join()
        side_thread.join()
        for thread_error in (fleet.error, side.error):
            if thread_error is not None:
                raise RuntimeError(f"a publisher thread failed: {thread_error!r}")
        stream_s = fleet.stream_ended - fleet.stream_started
        log(f"stream over: {fleet.published:,} messages in {stream_s:.1f} s "
            f"(pacer at worst {fleet.behind_s:.2f} s behind); waiting for PUBACKs")
        unacked = fleet.wait_acked(timeout=180)
        all_acked_at = time.monotonic()
        log(f"publishers done: {unacked} messages without PUBACK")
        target = fleet.published * plan.samples - unacked  # in samples, as the audit counts
        drain = wait_drained(dsn, target, stall or (20.0 if plan.quick else 60.0), timeout=600)
        drained_at = time.monotonic()
        log(f"drain: {'complete' if drain['complete'] else 'INCOMPLETE'} after {drain['waited_s']} s, "
            f"{drain['rows']:,} rows")
        side_wait = wait_settled(side, dsn, GAP_SETTLE_S + 3, timeout=GAP_SETTLE_S + 60)
        log(f"side units: seq holes recorded as gaps after {side_wait} s more")
        cpu.end("postgres")
        cpu.end("broker")
        progress.halt.set()
        rcs = ing.stop()
        log(f"ingestors stopped with SIGTERM, exit {rcs}")

        faults = chaos.done
        res = audit(dsn, fleet, side.units, [stream_wall0 + f.at_s for f in faults])
        with psycopg.connect(dsn, autocommit=True) as c:
            side_res = side.audit(c)
        last_commit = res.pop("last_commit_epoch")
        lost_all, rejected_all = res.pop("_lost_all"), res.pop("_rejected_all")
        for f, lag in zip(faults, res.pop("max_lag_after_fault_s"), strict=True):
            f.extra["max_lag_of_next_3s_s"] = lag
        # wall clock of the last PUBACK ~ now - (monotonic now - all_acked_at)
        acked_wall = time.time() - (time.monotonic() - all_acked_at)
        kinds = Counter(f.kind for f in faults)
        counters = ing.counters()
        result = {
            "started": started.isoformat(),
            "quick": plan.quick,
            "plan": asdict(plan),
            "versions": versions(pg),
            "broker_probe": broker_probe,
            "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]},
            "stream": {"messages": fleet.published, "units": plan.units, "connections": len(fleet.clients),
                       "seconds": round(stream_s, 2), "offered_msg_s": round(fleet.published / stream_s, 1),
                       "pacer_behind_max_s": round(fleet.behind_s, 2),
                       "publisher_connects": sum(c.connects for c in fleet.clients),
                       "publisher_sessions_resumed": sum(c.sessions_resumed for c in fleet.clients),
                       "publisher_disconnects": sum(c.disconnects for c in fleet.clients),
                       "unacked_at_end": unacked},
            "faults": [asdict(f) for f in faults],
            "faults_by_kind": {
                "ingestor_kill9": kinds["ingestor"] + kinds["overlap"],
                "broker_restart": kinds["broker"],
                "database_immediate_stop": kinds["database"] + kinds["overlap"],
                "overlapping (ingestor restarted while the database was down)": kinds["overlap"],
            },
            "ingestor": {"topology": plan.topology, "replicas": plan.replicas, "incarnations": len(ing.logs()),
                         "final_exit_codes": rcs, "log_lines": dict(ing.log_lines(*LOG_NEEDLES)),
                         "counters": counters,
                         "totals": {k: sum(c.get(k) or 0 for c in counters)
                                    for k in ("messages", "acked", "duplicates", "rejected", "entrapment_alerts",
                                              "db_errors", "cpu_s")}},
            "cpu_s": {"ingestors": round(sum(c.get("cpu_s") or 0 for c in counters), 2), **cpu.seconds()},
            "side": side_res,
            "drain": {**drain,
                      "after_last_puback_s": round(drained_at - all_acked_at - SETTLE_S, 2)
                      if drain["complete"] else None,
                      "last_commit_after_last_puback_s": round(last_commit - acked_wall, 2) if last_commit else None,
                      "last_commit_after_stream_end_s": round(last_commit - (stream_wall0 + stream_s), 2)
                      if last_commit else None,
                      "side_gaps_settled_after_s": side_wait},
            **res,
        }
        result["lost_explained"] = explain_lost(lost_all, faults, stream_wall0,
                                                {(x["unit_id"], x["seq"]) for x in rejected_all})
        failures = {k: result[k] for k in ("lost", "duplicated", "not_published", "ts_mismatch", "rejected",
                                           "ingest_gaps_unfilled")
                    if result[k]}
        if side_res["mismatch"]:
            failures["side"] = side_res["mismatch"]
        if not drain["complete"]:
            failures["drain_incomplete"] = True
        if unacked:
            failures["unacked_at_end"] = unacked
        if res["puback_failures"] or res["not_queued_by_paho"]:
            failures["publisher_side"] = len(res["puback_failures"]) + len(res["not_queued_by_paho"])
        result["failures"] = failures
        passed = not failures
        result["passed"] = passed
    finally:
        if progress is not None:
            progress.halt.set()
        for closer in (fleet, side):
            if closer is not None:
                closer.close()
        procs.kill_all()
        mq.destroy()
        pg.destroy()
        if keep or not passed:
            log(f"ingestor logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result
