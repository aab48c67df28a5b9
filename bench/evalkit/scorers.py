"""anomaly_prone scorers compared on the simulator's truth, instant by instant.

Input: the per-unit window aggregates the analytics load at each scored instant (SQL over
unit_daily), labelled from the truth (1 degraded, 0 healthy, -1 don't care: early in its
ramp). Each scorer is run exactly as analytics.anomaly runs it; precision, recall and
precision@k (k = the number of degraded units assessed) are summed over instants.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from analytics import anomaly


def score_instant(agg: pd.DataFrame, scorer: str) -> dict[str, Any]:
    features = anomaly.features_from_aggregates(agg.drop(columns=["at", "label", "mechanism"]))
    z = anomaly.robust_z(features)
    scored = anomaly.SCORERS[scorer](z)
    label = agg["label"].to_numpy()
    flagged = scored.flagged.to_numpy()
    pos, neg = label == 1, label == 0
    k = int(pos.sum())
    top = scored.scores.rank(ascending=False, method="first").to_numpy() <= k
    missed = agg.loc[pos & ~flagged, "mechanism"]
    return {"tp": int((flagged & pos).sum()), "fp": int((flagged & neg).sum()), "fn": int((~flagged & pos).sum()),
            "k": k, "hits_at_k": int((top & pos).sum()), "missed_by_mechanism": Counter(missed),
            "false_units": set(agg.loc[flagged & neg, "unit_id"])}


def compare(instants: list[pd.DataFrame], scorers: tuple[str, ...] = tuple(anomaly.SCORERS)) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in scorers:
        tot: Counter = Counter()
        missed: Counter = Counter()
        false_units: set[str] = set()
        last: dict[str, Any] = {}
        for agg in instants:
            r = score_instant(agg, name)
            tot.update({k: r[k] for k in ("tp", "fp", "fn", "k", "hits_at_k")})
            missed.update(r["missed_by_mechanism"])
            false_units |= r["false_units"]
            last = r
        tp, fp, fn = tot["tp"], tot["fp"], tot["fn"]
        out[name] = {
            "instants": len(instants),
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "precision_at_k": tot["hits_at_k"] / tot["k"] if tot["k"] else None,
            "unit_instants": {"tp": tp, "fp": fp, "fn": fn},
            "missed_by_mechanism": dict(missed), "distinct_false_units": len(false_units),
            "last_instant": {k: last.get(k) for k in ("tp", "fp", "fn", "k", "hits_at_k")},
        }
    return out
