"""Chaos run for the ingestor (issues #8, #17): a live QoS 1 stream through broker restarts,
database crashes and kill -9 of an ingestor, then a per-unit, per-seq audit of the table.

Setup: one throwaway PostgreSQL+TimescaleDB cluster (track_commit_timestamp on, a migrated
database, the units registered) and one throwaway Mosquitto 2 broker (persistence on,
max_queued_messages 0). The ingestors run as subprocesses (`python -m liftwatch ingest`) in
one of four topologies (--topology, --replicas; bench/chaoskit/ingestors.py):
  single   one replica, plain persistent subscription (the default)
  standby  two replicas, one client id, --lease: the lease holder consumes (default with 2)
  dual     two replicas, each its own client id and plain subscription: both write everything
  shared   replicas in one --group (--shared: one replica so)
with the per-unit rate limit raised, production's gap settle time (30 s), and metrics on a
free port, read with the CPU time just before each kill (how many redeliveries the unique key
absorbed). A kill -9 hits a standby pair's lease holder, otherwise the replicas in turn.
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
  ingestor   kill -9 an ingestor, start it again at once (as a restart policy would)
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
  gaps            seq holes recorded on the stream's units and never filled
Side units (--side-units) send an entrapment raised/cleared pair with a seq hole between and
one bad message each: their event, alert, published-alert, reject and gap counts must equal
what was acknowledged, once each (two writers could double them).
Exit code 1 if any of these is off. Every lost message is attributed to the fault
before its publish time and to the broker's PUBACK reason (0x10 "No matching subscribers"
counts as acknowledged: the device is done with it) or to the ingestor's reject. Also
reported: whether the seq bookkeeping (unit_ingest_state) agrees with the table, ingest_gaps
rows, drain time, publish->commit lag (commit timestamp - ts), time each component took to
serve again.

Also measured: CPU seconds of the ingestors, PostgreSQL and the broker, and for each fault the
worst publish->commit lag of what was published in the 3 s after it (the failover gap).

Output: a table on stdout, progress and fault lines (with times since the stream start) on
stderr, and every number in bench/results/chaos-<UTC>[-<topology><replicas>][-quick].json.
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
import shutil  # noqa: E402
from datetime import datetime  # noqa: E402

from bench.chaoskit.clock import log  # noqa: E402
from bench.chaoskit.ingestors import TOPOLOGIES  # noqa: E402
from bench.chaoskit.plan import Plan  # noqa: E402
from bench.chaoskit.report import print_report  # noqa: E402
from bench.chaoskit.run import run  # noqa: E402
from bench.common import REPO  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 units x 100 messages over 20 s, one fault of each kind (~80 s in all)")
    ap.add_argument("--units", type=int, help="simulated units (default 200)")
    ap.add_argument("--per-unit", type=int, help="messages per unit (default 500: 100 k in all; quick 100)")
    ap.add_argument("--duration", type=float, help="seconds the paced stream takes (default 100; quick 20)")
    ap.add_argument("--clients", type=int, help="MQTT connections carrying the units (default: one per unit)")
    ap.add_argument("--side-units", type=int, help="units sending events, a bad message and a seq hole (default 20)")
    ap.add_argument("--faults", help="comma-separated fault kinds in order, from ingestor, broker, database, "
                                     "overlap (default ingestor,broker,database x3 with one overlap, then ingestor); "
                                     "'none' for a run without faults")
    ap.add_argument("--no-overlap", action="store_true", help="no overlapping fault: 'overlap' becomes 'database'")
    ap.add_argument("--replicas", type=int, help="ingestor replicas (default 1; 2 for standby and dual)")
    ap.add_argument("--topology", choices=TOPOLOGIES,
                    help="single (one plain subscriber, the default with one replica), standby (--lease pair on one "
                         "client id, the default with two), dual (each replica its own plain subscription), "
                         "shared (one --group)")
    ap.add_argument("--shared", action="store_true", help="same as --topology shared")
    ap.add_argument("--db-down", type=float, help="seconds the database stays down per crash (default 4)")
    ap.add_argument("--broker-down", type=float, help="seconds the broker stays down per restart (default 1)")
    ap.add_argument("--stall", type=float,
                    help="give up draining when the row count has not moved for this long (default 60 s; quick 20)")
    ap.add_argument("--seed", type=int, help="seed of the fault jitter and the unit simulation (default 8)")
    ap.add_argument("--samples", type=int, help="samples per message, sent as one JSON array (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the ingestor logs (kept anyway on failure)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/chaos-*.json")
    args = ap.parse_args()

    for exe in ("mosquitto",):
        if shutil.which(exe) is None and not Path("/usr/sbin/mosquitto").exists():
            sys.exit(f"missing program: {exe} (run scripts/install-timescaledb.sh)")
    plan = Plan.quick_plan() if args.quick else Plan()
    for name, attr in (("units", "units"), ("per_unit", "per_unit"), ("duration", "duration"),
                       ("clients", "clients"), ("db_down", "db_down_s"), ("broker_down", "broker_down_s"),
                       ("seed", "seed"), ("side_units", "side_units"), ("samples", "samples")):
        if getattr(args, name) is not None:
            setattr(plan, attr, getattr(args, name))
    if args.faults:
        plan.faults = [f.strip() for f in args.faults.split(",") if f.strip() and f.strip() != "none"]
        bad = set(plan.faults) - {"ingestor", "broker", "database", "overlap"}
        if bad:
            ap.error(f"unknown fault kinds {sorted(bad)}")
    if args.no_overlap:
        plan.faults = ["database" if f == "overlap" else f for f in plan.faults]
    plan.replicas = args.replicas or 1
    plan.topology = "shared" if args.shared else args.topology or ("standby" if plan.replicas == 2 else "single")
    if plan.topology in ("standby", "dual") and plan.replicas != 2:
        ap.error(f"--topology {plan.topology} runs two replicas (--replicas 2)")
    if plan.topology == "single" and plan.replicas != 1:
        ap.error("--topology single runs one replica")

    result = run(plan, stall=args.stall, keep=args.keep)
    if not result:
        return 1
    print_report(result)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        tag = "" if plan.topology == "single" else f"-{plan.topology}{plan.replicas}"
        started = datetime.fromisoformat(result["started"])
        out = RESULTS_DIR / f"chaos-{started.strftime('%Y%m%dT%H%M%SZ')}{tag}{'-quick' if plan.quick else ''}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"results written to {out.relative_to(REPO)}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
