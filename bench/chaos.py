"""Chaos run for the ingestor (issue #8): a live QoS 1 stream through broker restarts,
database crashes and kill -9 of the ingestor, then a per-unit, per-seq audit of the table.

Setup: one throwaway PostgreSQL+TimescaleDB cluster (track_commit_timestamp on, a migrated
database, the units registered) and one throwaway Mosquitto 2 broker (persistence on,
max_queued_messages 0). One ingestor runs as a subprocess:
`python -m liftwatch ingest --client-id chaos-1` (plain subscription; `--shared` adds
`--group chaos`), with the per-unit rate limit
raised, the gap settle time at an hour (nothing here is a real gap) and its metrics on a free
port, read just before each kill (how many redeliveries the unique key absorbed).
Before all that, a probe on a separate throwaway broker records whether a persistent
session's plain and shared subscriptions survive a broker restart (Mosquitto 2.0.11 keeps
the plain one and drops the shared one: see docs/reliability.md).

Publishers: one paho MQTT v5 client per unit by default (one device = one connection), QoS 1,
a stable client id, clean_start=False with a session expiry, unlimited in-flight and queue.
A message published while the broker is away, or in flight when it went away, is kept by
paho and (re)sent on reconnect in the same process with the same bytes, so a resend can only
produce a redelivery the ingestor must deduplicate, never a different row. Every message's
MQTTMessageInfo is kept: the publisher side knows exactly which (unit, seq) the broker
acknowledged (a PUBACK with a failure reason code does not count). Each sample is stamped
with the wall clock when it is handed to paho (ms precision), so `commit time - ts` is the
publish->commit lag, outages included.

Stream: every unit sends seq 0, 1, 2, ... one message per tick, all units per tick, paced so
the whole stream takes --duration seconds. While it runs, faults are injected one after the
other at spread-out times (with a seeded jitter):
  ingestor   kill -9 the ingestor, start it again at once (same client id)
  broker     SIGTERM the broker (it saves its persistence file), 1 s down, start it again
  database   pg_ctl stop -m immediate (a crash: recovery on start), a few s down, start again
  overlap    the database crashes, then the ingestor is killed -9 and restarted while the
             database is still down (a host reboot where the ingestor comes up first)
Default schedule: 4 x ingestor, 3 x broker, 2 x database, 1 x overlap (--no-overlap: 3 x
database instead). --quick: one of each of ingestor, broker, database.

End: wait until every publisher has all its PUBACKs, then until the table holds every acked
(unit, seq) and the row count has been stable for a few seconds (or nothing has moved for
--stall seconds), stop the ingestor with SIGTERM, and check per unit by seq:
  lost            acked by the broker, not in `telemetry`
  duplicated      count(*) - count(DISTINCT (unit_id, seq))
  not published   rows whose (unit, seq) this run never handed to a publisher
  ts mismatch     rows whose time differs from the ts that was published for that seq
  rejected        rows in rejected_messages (every message here is valid)
Exit code 1 if any of these is non-zero. Every lost message is attributed to the fault
before its publish time and to the broker's PUBACK reason (0x10 "No matching subscribers"
counts as acknowledged: the device is done with it) or to the ingestor's reject. Also
reported: whether the seq bookkeeping (unit_ingest_state) agrees with the table, ingest_gaps
rows, drain time, publish->commit lag (commit timestamp - ts), time each component took to
serve again.

Output: a table on stdout, progress and fault lines (with times since the stream start) on
stderr, and every number in bench/results/chaos-<UTC timestamp>[-quick].json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
# run as `python bench/chaos.py`, sys.path[0] is bench/; the repository root must come first
if sys.path and Path(sys.path[0] or ".").resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)
elif str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import psycopg  # noqa: E402

from bench.chaoskit.audit import SETTLE_S, Progress, audit, wait_drained  # noqa: E402
from bench.chaoskit.clock import CLOCK, log  # noqa: E402
from bench.chaoskit.faults import Chaos  # noqa: E402
from bench.chaoskit.fleet import Fleet  # noqa: E402
from bench.chaoskit.ingestors import IngestorProc  # noqa: E402
from bench.chaoskit.plan import Plan  # noqa: E402
from bench.chaoskit.probe import probe_broker_restart  # noqa: E402
from bench.chaoskit.report import DB_NAME, explain_lost, print_report, versions  # noqa: E402
from bench.common import REPO, Processes, register_units  # noqa: E402
from liftwatch.db import migrate  # noqa: E402
from liftwatch.throwaway import Mosquitto, PgCluster  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 units x 100 messages over 20 s, one fault of each kind (~45 s in all)")
    ap.add_argument("--units", type=int, help="simulated units (default 200)")
    ap.add_argument("--per-unit", type=int, help="messages per unit (default 500: 100 k in all; quick 100)")
    ap.add_argument("--duration", type=float, help="seconds the paced stream takes (default 100; quick 20)")
    ap.add_argument("--clients", type=int, help="MQTT connections carrying the units (default: one per unit)")
    ap.add_argument("--faults", help="comma-separated fault kinds in order, from ingestor, broker, database, "
                                     "overlap (default ingestor,broker,database x3 with one overlap, then ingestor)")
    ap.add_argument("--no-overlap", action="store_true", help="no overlapping fault: 'overlap' becomes 'database'")
    ap.add_argument("--shared", action="store_true",
                    help="subscribe the ingestor with a shared subscription ($share/chaos/...) as a replica set "
                         "would; Mosquitto 2.0 drops it on restart, so broker faults then lose messages")
    ap.add_argument("--db-down", type=float, help="seconds the database stays down per crash (default 4)")
    ap.add_argument("--broker-down", type=float, help="seconds the broker stays down per restart (default 1)")
    ap.add_argument("--stall", type=float,
                    help="give up draining when the row count has not moved for this long (default 60 s; quick 20)")
    ap.add_argument("--seed", type=int, help="seed of the fault jitter and the unit simulation (default 8)")
    ap.add_argument("--keep", action="store_true", help="keep the ingestor logs (kept anyway on failure)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/chaos-*.json")
    args = ap.parse_args()

    for exe in ("mosquitto",):
        if shutil.which(exe) is None and not Path("/usr/sbin/mosquitto").exists():
            sys.exit(f"missing program: {exe} (run scripts/install-timescaledb.sh)")
    plan = Plan.quick_plan() if args.quick else Plan()
    for name, attr in (("units", "units"), ("per_unit", "per_unit"), ("duration", "duration"),
                       ("clients", "clients"), ("db_down", "db_down_s"), ("broker_down", "broker_down_s"),
                       ("seed", "seed")):
        if getattr(args, name) is not None:
            setattr(plan, attr, getattr(args, name))
    if args.faults:
        plan.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        bad = set(plan.faults) - {"ingestor", "broker", "database", "overlap"}
        if bad:
            ap.error(f"unknown fault kinds {sorted(bad)}")
    if args.no_overlap:
        plan.faults = ["database" if f == "overlap" else f for f in plan.faults]

    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="liftwatch-chaos-"))
    procs = Processes()
    pg = PgCluster(settings={"track_commit_timestamp": "on"})
    mq = Mosquitto()
    fleet: Fleet | None = None
    progress: Progress | None = None
    ing: IngestorProc | None = None
    result: dict = {}
    passed = False
    try:
        log(f"plan: {plan.units} units x {plan.per_unit} = {plan.messages:,} QoS1 messages over "
            f"{plan.duration:.0f} s on {plan.n_clients} connections; faults {','.join(plan.faults)}")
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
        register_units(dsn, fleet.units)
        ing = IngestorProc(procs, root, dsn, mq.url, shared=args.shared)
        ing.start()
        if ing.wait_log("connected to broker", timeout=60) is None:
            raise RuntimeError(f"the ingestor did not connect:\n{ing.tail()}")
        time.sleep(0.5)  # its SUBSCRIBE went out in on_connect
        log(f"servers up (postgres :{pg.port}, mosquitto :{mq.port}); ingestor connected; "
            f"connecting {len(fleet.clients)} publishers")
        fleet.start()

        chaos = Chaos(plan, pg, mq, ing, fleet)
        t0 = CLOCK.restart()
        stream_wall0 = time.time()
        log("stream starts")
        streamer = threading.Thread(target=fleet.stream, name="chaos-stream", daemon=True)
        streamer.start()
        progress = Progress(dsn, fleet, ing)
        progress.start()
        chaos.run(t0)
        streamer.join()
        if fleet.error is not None:
            raise RuntimeError(f"the publisher thread failed: {fleet.error!r}")
        stream_s = fleet.stream_ended - fleet.stream_started
        log(f"stream over: {fleet.published:,} messages in {stream_s:.1f} s "
            f"(pacer at worst {fleet.behind_s:.2f} s behind); waiting for PUBACKs")
        unacked = fleet.wait_acked(timeout=180)
        all_acked_at = time.monotonic()
        log(f"publishers done: {unacked} messages without PUBACK")
        target = fleet.published - unacked
        drain = wait_drained(dsn, target, args.stall or (20.0 if plan.quick else 60.0), timeout=600)
        drained_at = time.monotonic()
        log(f"drain: {'complete' if drain['complete'] else 'INCOMPLETE'} after {drain['waited_s']} s, "
            f"{drain['rows']:,} rows")
        progress.halt.set()
        rc = ing.stop()
        log(f"ingestor stopped with SIGTERM, exit {rc}")

        res = audit(dsn, fleet)
        last_commit = res.pop("last_commit_epoch")
        lost_all, rejected_all = res.pop("_lost_all"), res.pop("_rejected_all")
        # wall clock of the last PUBACK ~ now - (monotonic now - all_acked_at)
        acked_wall = time.time() - (time.monotonic() - all_acked_at)
        faults = chaos.done
        kinds = Counter(f.kind for f in faults)
        logs = ing.log_lines("connected to broker", "disconnected from broker", "batch not committed",
                             "database is back", "registry reload failed", "seq gap recorded", " ERROR ")
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
            "ingestor": {"incarnations": len(ing.logs), "final_exit_code": rc, "log_lines": dict(logs),
                         "counters": ing.counters,
                         "totals": {k: sum(c.get(k, 0) for c in ing.counters)
                                    for k in ("messages", "acked", "duplicates", "rejected", "db_errors")}},
            "drain": {**drain,
                      "after_last_puback_s": round(drained_at - all_acked_at - SETTLE_S, 2)
                      if drain["complete"] else None,
                      "last_commit_after_last_puback_s": round(last_commit - acked_wall, 2) if last_commit else None,
                      "last_commit_after_stream_end_s": round(last_commit - (stream_wall0 + stream_s), 2)
                      if last_commit else None},
            **res,
        }
        result["lost_explained"] = explain_lost(lost_all, faults, stream_wall0,
                                                {(x["unit_id"], x["seq"]) for x in rejected_all})
        failures = {k: result[k] for k in ("lost", "duplicated", "not_published", "ts_mismatch", "rejected")
                    if result[k]}
        if not drain["complete"]:
            failures["drain_incomplete"] = True
        if unacked:
            failures["unacked_at_end"] = unacked
        if res["puback_failures"] or res["not_queued_by_paho"]:
            failures["publisher_side"] = len(res["puback_failures"]) + len(res["not_queued_by_paho"])
        result["failures"] = failures
        passed = not failures
        result["passed"] = passed
        print_report(result)
    finally:
        if progress is not None:
            progress.halt.set()
        if fleet is not None:
            fleet.close()
        procs.kill_all()
        mq.destroy()
        pg.destroy()
        keep = args.keep or not passed
        if keep:
            log(f"ingestor logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if result and not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"chaos-{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if plan.quick else ''}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"results written to {out.relative_to(REPO)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
