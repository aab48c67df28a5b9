"""Replay a simulated fleet's history step by step, as production would have lived it.

For each step (default 20 h, so pass instants drift through the hours of the day): COPY the
step's telemetry and events (the simulator's backfill, the ingestor's rows), record the
visits whose times have come through the real maintenance code, run one real analytics
pass at the step's end (rollups, retention, every rule, anomaly, risk), then compare the
open alerts with the oracle. Nothing is ever in the database ahead of the pass's `now`,
so every rule sees exactly what it would have seen live.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import dict_row

from analytics import anomaly
from analytics.run import PassOptions, run_pass
from bench.common import log
from bench.evalkit.oracle import RULE_KINDS, Oracle, Params, VisitT, anomaly_labels
from bench.evalkit.recorder import Recorder
from maintenance import checklist as checklists
from maintenance.schedule import schedule
from simulators.backfill import backfill
from simulators.clock import Window
from simulators.fleet import build_fleet
from simulators.registration import register
from simulators.stream import FleetConfig, FleetSim

DAY = 86400.0
EXAMPLES = 5  # misses and false alarms kept per kind for the report


@dataclass
class ReplayConfig:
    units: int = 2000
    days: float = 60.0
    seed: int = 7
    faulty: float = 0.1
    comm_loss_per_day: float = 0.02
    step_h: float = 20.0
    retention_days: float = 32.0
    prefix: str = "EV"


# the rules that read maintenance records: scored per unit kind too (each kind has its own annex)
MAINTENANCE_RULES = ("maintenance_overdue", "maintenance_due_soon", "countersign_missing", "unverified_visit")


@dataclass
class KindScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dont_care: int = 0
    false_pairs: set = field(default_factory=set)  # distinct (unit) falsely alerted
    missed_pairs: set = field(default_factory=set)
    examples_fp: list = field(default_factory=list)
    examples_fn: list = field(default_factory=list)

    def add(self, t: datetime, actual: set[str], positive: set[str], dont_care: set[str]) -> None:
        self.tp += len(actual & positive)
        fp, fn = actual - positive - dont_care, positive - actual
        self.fp += len(fp)
        self.fn += len(fn)
        self.dont_care += len(dont_care)
        self.false_pairs |= fp
        self.missed_pairs |= fn
        for u in sorted(fp)[: max(0, EXAMPLES - len(self.examples_fp))]:
            self.examples_fp.append({"at": t.isoformat(), "unit_id": u})
        for u in sorted(fn)[: max(0, EXAMPLES - len(self.examples_fn))]:
            self.examples_fn.append({"at": t.isoformat(), "unit_id": u})

    def as_json(self) -> dict[str, Any]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        return {"alert_instants": {"tp": self.tp, "fp": self.fp, "fn": self.fn, "dont_care": self.dont_care},
                "precision": p, "recall": r, "distinct_false_units": len(self.false_pairs),
                "distinct_missed_units": len(self.missed_pairs),
                "examples_false": self.examples_fp, "examples_missed": self.examples_fn}


@dataclass
class ReplayResult:
    window: Window
    scores: dict[str, KindScore]
    by_unit_kind: dict[str, dict[str, KindScore]]  # maintenance rules per unit kind (every annex scored alone)
    anomaly_rows: list[pd.DataFrame]  # per scored instant: aggregates + label, for the scorer comparison
    passes: list[dict[str, Any]]
    rows: Counter
    recorder: dict[str, int]
    ledger: dict[str, Any]
    seconds: dict[str, float]
    fleet_summary: dict[str, Any]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def replay(dsn: str, cfg: ReplayConfig, end: datetime) -> ReplayResult:
    t_end = end.timestamp()
    window = Window(round(t_end - cfg.days * DAY, 3), round(t_end, 3), round(t_end, 3))
    fleet = build_fleet(seed=cfg.seed, n_units=cfg.units, prefix=cfg.prefix, faulty=cfg.faulty,
                        today=end.date())
    sim = FleetSim(fleet, FleetConfig(seed=cfg.seed, window=window, comm_loss_per_day=cfg.comm_loss_per_day))
    units_truth = sim.units_truth()
    seconds: Counter = Counter()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn, \
            psycopg.connect(dsn, autocommit=True) as copy_conn:  # tuple rows, as the simulator expects
        register(copy_conn, fleet)
        schedule(conn)  # the four statutory plans of every unit with a checklist (and their first orders)
        conn.execute("UPDATE maintenance_plans SET created_at = %s", (_dt(window.history_start),))
        recorder = Recorder(conn, seed=cfg.seed, visits=sim.visits, units={u.unit_id: u for u in fleet.units})
        planned_kinds = set(checklists.checklist_ids_by_unit_kind())
        intervals = {k: v for cid in set(checklists.checklist_ids_by_unit_kind().values())
                     for k, v in checklists.get(cid).interval_days.items()}  # the same 15/90/180/365 in every annex
        oracle = Oracle(params=Params(intervals=dict(intervals)), plan_start=window.history_start, units=units_truth,
                        planned_kinds=planned_kinds,
                        visits=[VisitT(v.unit_id, v.visit_id, v.kind, v.case, v.start, v.end) for v in sim.visits],
                        losses=[(c.unit_id, c.start, c.end) for c in sim.truth.comm_losses])
        degradations = {u: (datetime.fromisoformat(d["degradation"]["onset"]).timestamp(),
                            datetime.fromisoformat(d["degradation"]["full_at"]).timestamp())
                        for u, d in units_truth.items() if d["degradation"]}
        scores = {k: KindScore() for k in (*RULE_KINDS, "anomaly_prone")}
        unit_kind = {u.unit_id: u.kind for u in fleet.units}
        by_unit_kind = {rule: {k: KindScore() for k in sorted(set(unit_kind.values()))} for rule in MAINTENANCE_RULES}
        opts = PassOptions(retention=timedelta(days=cfg.retention_days))
        streams = sim.streams()
        rows: Counter = Counter()
        anomaly_rows: list[pd.DataFrame] = []
        passes: list[dict[str, Any]] = []
        step = cfg.step_h * 3600
        t = window.history_start
        n_steps = int(-(-(window.end - window.history_start) // step))
        for k in range(1, n_steps + 1):
            t = min(window.history_start + k * step, window.end)
            c0 = time.perf_counter()
            counts, streams = backfill(copy_conn, streams, until=t)
            rows["telemetry"] += counts.telemetry_rows
            rows["events"] += counts.event_rows
            c1 = time.perf_counter()
            recorder.advance(_dt(t))
            c2 = time.perf_counter()
            result = run_pass(dsn, opts, now=_dt(t))
            c3 = time.perf_counter()
            seconds["backfill"] += c1 - c0
            seconds["visits"] += c2 - c1
            seconds["passes"] += c3 - c2
            actual: dict[str, set[str]] = defaultdict(set)
            for r in conn.execute("SELECT unit_id, kind FROM alerts WHERE status = 'open'"):
                actual[r["kind"]].add(r["unit_id"])
            expected = oracle.expected(
                t, [(f.unit_id, f.code, f.raised_at) for f in sim.truth.faults],
                [(e.unit_id, e.start, e.end) for e in sim.truth.episodes if e.mode == "inspection"])
            at = _dt(t)
            for kind in RULE_KINDS:
                scores[kind].add(at, actual[kind], expected.positive[kind], expected.dont_care[kind])
            for rule, per_kind in by_unit_kind.items():
                for uk, score in per_kind.items():
                    mine = {u for u, k in unit_kind.items() if k == uk}
                    score.add(at, actual[rule] & mine, expected.positive[rule] & mine, expected.dont_care[rule] & mine)
            day = (t - window.history_start) / DAY
            if day >= anomaly.WINDOW_DAYS:
                positive, dont_care = anomaly_labels(degradations, t)
                scores["anomaly_prone"].add(at, actual["anomaly_prone"], positive, dont_care)
                agg = anomaly.load_aggregates(conn, at)
                if not agg.empty:
                    agg["at"] = at
                    agg["label"] = [1 if u in positive else (-1 if u in dont_care else 0) for u in agg["unit_id"]]
                    agg["mechanism"] = [(units_truth[u]["degradation"] or {}).get("mechanism", "") for u in agg["unit_id"]]
                    anomaly_rows.append(agg)
            passes.append({"at": at.isoformat(), "day": round(day, 2), "pass_s": round(c3 - c2, 2),
                           "rows": counts.rows, "opened": result["alerts_opened"], "resolved": result["alerts_resolved"],
                           "open": result["open_alerts"]})
            fp = sum(s.fp for s in scores.values())
            fn = sum(s.fn for s in scores.values())
            log(f"replay step {k}/{n_steps} (day {day:.1f}): {counts.rows:,} rows in {c1 - c0:.0f} s, visits "
                f"{c2 - c1:.1f} s, pass {c3 - c2:.1f} s; open alerts {result['open_alerts']}; "
                f"false alerts so far {fp}, missed {fn}")
        from maintenance import ledger

        c0 = time.perf_counter()
        report = ledger.verify(conn)
        seconds["ledger_verify"] = time.perf_counter() - c0
        ledger_json = {"ok": report.ok, "entries": report.entries, "first_bad_seq": report.first_bad_seq,
                       "problems": report.problems[:5]}
    fleet_summary = {
        "units": cfg.units, "kinds": dict(Counter(u.kind for u in fleet.units)),
        "degraded": dict(Counter(d["degradation"]["mechanism"] for d in units_truth.values() if d["degradation"])),
        "visits": dict(Counter(v.case for v in sim.visits)),
        "comm_losses": len(sim.truth.comm_losses), "faults": len(sim.truth.faults),
        "entrapments": sum(f.code == "entrapment" for f in sim.truth.faults),
    }
    return ReplayResult(window, scores, by_unit_kind, anomaly_rows, passes, rows, vars(recorder.counts), ledger_json,
                        dict(seconds), fleet_summary)
