"""The anomaly figures of a finished evaluation, recomputed with the current code.

The anomaly features read only complete days of `unit_daily`, which never change once the
day is over, and a kept evaluation database holds every day of the replay. So the anomaly
model can be scored again at the run's own instants, with the run's own truth (rebuilt from
its parameters: the simulator is deterministic), without replaying 60 days: this is how a
revised model is measured on the same data. The alert rules are not re-run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from analytics import anomaly
from bench.common import log
from bench.evalkit import scorers
from bench.evalkit.oracle import anomaly_labels
from simulators.clock import Window
from simulators.fleet import build_fleet
from simulators.stream import FleetConfig, FleetSim

DAY = 86400.0


def rescore(dsn: str, doc: dict[str, Any]) -> dict[str, Any]:
    p = doc["parameters"]
    end = datetime.fromisoformat(p["end"])
    t_end = end.timestamp()
    window = Window(round(t_end - p["days"] * DAY, 3), round(t_end, 3), round(t_end, 3))
    fleet = build_fleet(seed=p["seed"], n_units=p["units"], prefix=p["prefix"], faulty=p["faulty"], today=end.date())
    truth = FleetSim(fleet, FleetConfig(seed=p["seed"], window=window,
                                        comm_loss_per_day=p["comm_loss_per_day"])).units_truth()
    degradations = {u: (datetime.fromisoformat(d["degradation"]["onset"]).timestamp(),
                        datetime.fromisoformat(d["degradation"]["full_at"]).timestamp())
                    for u, d in truth.items() if d["degradation"]}
    instants = [datetime.fromisoformat(x["at"]) for x in doc["replay"]["passes"] if x["day"] >= anomaly.WINDOW_DAYS]
    rows = []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for at in instants:
            agg = anomaly.load_aggregates(conn, at)
            agg = agg[agg["unit_id"].isin(truth)].reset_index(drop=True)  # the fleet, not clones or probes
            positive, dont_care = anomaly_labels(degradations, at.timestamp())
            agg["at"] = at
            agg["label"] = [1 if u in positive else (-1 if u in dont_care else 0) for u in agg["unit_id"]]
            agg["mechanism"] = [(truth[u]["degradation"] or {}).get("mechanism", "") for u in agg["unit_id"]]
            rows.append(agg)
    log(f"rescored the anomaly model at {len(instants)} instants of the run")
    return {"instants": len(instants), "scorers": scorers.compare(rows)}
