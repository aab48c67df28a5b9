"""Analytics scored against the simulator's ground truth (a report, not a test).

A fleet (default 2,000 units, 60 days) is replayed step by step into a throwaway
TimescaleDB: the step's telemetry and events by COPY, the visits whose time has come through
the real maintenance code (Ed25519 signatures, ledger), then one real analytics pass at the
step's end. After every pass the open alerts are compared with what an oracle derives from
the truth alone. Then: the two anomaly scorers side by side on the same instants; the
entrapment alert delay through the real broker and ingestor under load; anomaly features
via the SQL rollups against the same features computed in pandas from raw rows; and the
steady-state pass at 10,000 against 20,000 units.

    .venv/bin/python bench/analytics_eval.py                 # the full run (about 2 hours here)
    .venv/bin/python bench/analytics_eval.py --units 200     # a quick look (minutes)

Results go to bench/results/analytics-eval-<time>.json and a table on stdout; progress to
stderr. docs/analytics.md explains the method and carries the latest figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402

from bench.common import log  # noqa: E402
from bench.evalkit import scorers, speed  # noqa: E402
from bench.evalkit.live import LiveConfig, run_live  # noqa: E402
from bench.evalkit.replay import ReplayConfig, replay  # noqa: E402
from bench.evalkit.rescore import rescore  # noqa: E402
from liftwatch.db import migrate  # noqa: E402
from liftwatch.throwaway import PgCluster  # noqa: E402

PHASES = ("replay", "scorers", "features", "scale", "live")  # replay is needed by all others
PG_SETTINGS = {  # a bigger cluster than the tests' defaults: the full run holds ~130 M raw rows
    "shared_buffers": "2GB", "work_mem": "64MB", "maintenance_work_mem": "512MB", "max_wal_size": "8GB",
    "checkpoint_timeout": "30min", "synchronous_commit": "off",
}
TARGETS = {  # issue #6
    "maintenance_overdue": ("recall 1.0, 0 false alerts", 1.0, 0),
    "countersign_missing": ("recall 1.0, 0 false alerts", 1.0, 0),
    "unverified_visit": ("recall 1.0, 0 false alerts", 1.0, 0),
}


def _code_version() -> str:
    try:
        return subprocess.run(["git", "-C", str(_REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def print_report(doc: dict[str, Any]) -> None:
    rp = doc.get("replay")
    if rp:
        print(f"\nAlerts against the truth: {rp['fleet']['units']} units, {rp['days']} days, "
              f"{len(rp['passes'])} passes (one per {rp['step_h']} h)")
        print(f"{'kind':<22} {'precision':>9} {'recall':>7} {'TP':>7} {'FP':>5} {'FN':>5} {'false units':>11}")
        for kind, s in rp["scores"].items():
            a = s["alert_instants"]
            print(f"{kind:<22} {_fmt(s['precision']):>9} {_fmt(s['recall']):>7} {a['tp']:>7} {a['fp']:>5} {a['fn']:>5} "
                  f"{s['distinct_false_units']:>11}")
        for rule, per in rp.get("by_unit_kind", {}).items():
            print(f"  {rule} by unit kind: " + "; ".join(
                f"{uk} P {_fmt(s['precision'])} R {_fmt(s['recall'])} "
                f"(TP {s['alert_instants']['tp']}, FP {s['alert_instants']['fp']}, FN {s['alert_instants']['fn']})"
                for uk, s in per.items()))
    sc = doc.get("scorers")
    if sc:
        print("\nanomaly_prone scorers on the same instants")
        print(f"{'scorer':<18} {'precision':>9} {'recall':>7} {'prec@k':>7}  missed by mechanism")
        for name, s in sc.items():
            print(f"{name:<18} {_fmt(s['precision']):>9} {_fmt(s['recall']):>7} {_fmt(s['precision_at_k']):>7}  "
                  f"{s['missed_by_mechanism']}")


def _print_speed(doc: dict[str, Any]) -> None:
    f = doc.get("features")
    if f:
        worst = max(f["agreement"].items(), key=lambda kv: kv[1]["max_diff_in_spreads"])
        print(f"\nanomaly features, {f['units']} units x {f['window_days']} days ({f['raw_rows']:,} raw rows): "
              f"SQL rollups {min(f['sql_rollups_s']) * 1000:.0f} ms, pandas from raw {min(f['pandas_raw_s']):.1f} s, "
              f"ratio {f['ratio']:.0f}x; largest disagreement {worst[0]} {worst[1]['max_diff_in_spreads']:.1e} of its spread")
    sc = doc.get("scale")
    if sc and "ratio" in sc:
        sizes = " vs ".join(f"{v['units']:,} units {v['median_s']:.1f} s (first of the hour {v['sweep_median_s']:.1f} s)"
                            for v in sc["sizes"].values())
        print(f"steady-state pass: {sizes}: {sc['ratio']:.2f}x ({sc['sweep_ratio']:.2f}x) for {sc['units_ratio']:.1f}x "
              "the units")
    lv = doc.get("live")
    if lv:
        a, m = lv["delay_to_alert_row_s"], lv["delay_to_mqtt_alert_s"]
        print(f"entrapment ({lv['probes']} probes under {lv['fleet']['msg_per_s']} msg/s): alert row p50 "
              f"{_fmt(a['p50'])} s p99 {_fmt(a['p99'])} s max {_fmt(a['max'])} s; alerts/<unit> p99 {_fmt(m['p99'])} s; "
              f"resolved with duration {lv['resolved_with_duration']}/{lv['probes']}, breaches "
              f"{lv['breaches_flagged']}/{lv['breach_probes']}; fleet's own {lv['natural_alerted']}/"
              f"{lv['natural_entrapments']}; problems {len(lv['problems'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/analytics_eval.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=2000, help="fleet size (default 2000)")
    ap.add_argument("--days", type=float, default=60.0, help="history replayed (default 60)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--faulty", type=float, default=0.1, help="share of units with a degradation (default 0.1)")
    ap.add_argument("--comm-loss-per-day", type=float, default=0.02,
                    help="terminal outages per unit and day (default 0.02)")
    ap.add_argument("--step-hours", type=float, default=20.0, help="time between analytics passes (default 20)")
    ap.add_argument("--features-units", type=int, default=200,
                    help="units in the SQL-vs-pandas feature comparison (default 200)")
    ap.add_argument("--scale-sizes", default="10000,20000", help="fleet sizes of the pass scaling (default 10000,20000)")
    ap.add_argument("--probes", type=int, default=200, help="entrapment probes in the live phase (default 200)")
    ap.add_argument("--live-seconds", type=float, default=240.0, help="length of the live phase (default 240)")
    ap.add_argument("--live-speedup", type=float, default=60.0,
                    help="the fleet's speed-up during the live phase: its load on the ingestor (default 60)")
    ap.add_argument("--only", help=f"comma-separated phases besides replay: {','.join(PHASES[1:])}")
    ap.add_argument("--rescore", type=Path, metavar="RESULTS_JSON",
                    help="instead of a run: recompute the anomaly figures of that finished run on its kept database "
                         "(--dsn) at its own instants with the current code, and add them to the file")
    ap.add_argument("--dsn", help="with --rescore: the kept evaluation database")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway cluster (its path and DSN are printed)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/analytics-eval-*.json")
    args = ap.parse_args(argv)
    if args.rescore:
        if not args.dsn:
            ap.error("--rescore needs --dsn (the kept database of that run; it printed it)")
        doc = json.loads(args.rescore.read_text())
        doc["rescored"] = {"at": datetime.now(UTC).isoformat(), "code_version": _code_version(),
                           **rescore(args.dsn, doc)}
        args.rescore.write_text(json.dumps(doc, indent=2, default=str))
        print_report({"scorers": doc["rescored"]["scorers"]})
        log(f"added 'rescored' to {args.rescore}")
        return 0
    phases = ["replay", *args.only.split(",")] if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")

    started = datetime.now(UTC)
    end = started.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=7)  # mid-hour, mid-step
    cfg = ReplayConfig(units=args.units, days=args.days, seed=args.seed, faulty=args.faulty,
                       comm_loss_per_day=args.comm_loss_per_day, step_h=args.step_hours)
    doc: dict[str, Any] = {"started_at": started.isoformat(), "code_version": _code_version(),
                           "parameters": {**vars(cfg), "end": end.isoformat()}}
    pg = PgCluster(settings=PG_SETTINGS)
    pg.init().start()
    dsn = pg.dsn("liftwatch_eval")
    log(f"throwaway TimescaleDB at {dsn} ({pg.root})")
    try:
        migrate(dsn)
        t0 = time.perf_counter()
        result = replay(dsn, cfg, end)
        doc["replay"] = {
            "days": cfg.days, "step_h": cfg.step_h, "fleet": result.fleet_summary, "rows": dict(result.rows),
            "visits_recorded": result.recorder, "ledger": result.ledger, "seconds": result.seconds,
            "wall_s": round(time.perf_counter() - t0, 1), "passes": result.passes,
            "scores": {k: s.as_json() for k, s in result.scores.items()},
            "by_unit_kind": {rule: {uk: s.as_json() for uk, s in per.items()} for rule, per in result.by_unit_kind.items()},
        }
        if result.anomaly_rows:
            features = pd.concat(result.anomaly_rows, ignore_index=True)
            out = pg.root / "anomaly-aggregates.csv.gz"
            features.to_csv(out, index=False)
            log(f"per-instant aggregates with labels: {out}")
            if "scorers" in phases:
                doc["scorers"] = scorers.compare(result.anomaly_rows)
        if "features" in phases:
            doc["features"] = speed.features_speed(dsn, end, units=args.features_units)
        if "scale" in phases:
            sizes = tuple(int(x) for x in args.scale_sizes.split(","))
            doc["scale"] = speed.pass_scaling(dsn, end, sizes=sizes)
        if "live" in phases:
            doc["live"] = run_live(dsn, LiveConfig(probes=args.probes, seconds=args.live_seconds,
                                                   speedup=args.live_speedup, seed=cfg.seed, prefix=cfg.prefix,
                                                   units=cfg.units), pg.root)
    finally:
        if args.keep:
            log(f"kept: {pg.root} (DSN {dsn}); stop it with pg_ctl -D {pg.datadir} stop")
        else:
            pg.destroy()
    doc["finished_at"] = datetime.now(UTC).isoformat()
    print_report(doc)
    _print_speed(doc)
    if not args.no_save:
        path = _REPO / "bench" / "results" / f"analytics-eval-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(doc, indent=2, default=str))
        log(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
